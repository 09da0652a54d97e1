"""FlashSim inside the analysis: Gen collections → reco ``Jet``/``Muon`` in coffea NanoEvents.

``FlashSim(jets=..., muons=...).inject(events, folds=N)`` returns events whose ``Jet`` and
``Muon`` are FlashSim collections with full NanoAOD behaviour (four-vector sums,
``delta_r``, ``nearest``, ``matched_gen``), per chunk:

1. For each object spec: Gen objects → conditioning matrix and noise keys, computed **once**
   on the original events (columnar, :class:`flashsim_coffea.objects.ObjectSpec`).
2. With ``folds = N`` every event appears N times (event-major: e0f0, e0f1, …) with a
   ``fold`` field 0..N−1 and its original ``run, luminosityBlock, event``. The conditioning
   rows are gathered (not recomputed) for the repeated events, and the fold is part of the
   noise key: fold k of an object is the same whatever the chunking or executor.
3. The flow samples the targets (:meth:`FlowModel.sample`), ``spec.rebuild`` turns them into
   NanoAOD fields (pt = ptRatio·pt_gen …, discrete snapping, NanoAOD precision).
4. Acceptance and efficiency: muons are simulated only for status-1 Gen muons with |η| < 2.4
   and pT > 3 GeV (the muon-system acceptance); each (Gen object, fold) is reconstructed with
   the probability of the model's efficiency map (``efficiency.json`` beside the card,
   :mod:`flashsim_coffea.efficiency`, keyed draw); after sampling NanoAOD's reco threshold
   ``Jet pt > 15 GeV``. Objects are sorted by pT per event.
5. Cross-references: ``genJetIdx``/``genPartIdx`` point into the event's GenJet/GenPart, with
   the global ``genJetIdxG``/``genPartIdxG`` that coffea's ``matched_gen`` uses. Index fields
   pointing *into* the replaced collections (Jet_muonIdx*, Muon_jetIdx, …) are not produced:
   match with ΔR instead.

Models load lazily on the worker from a module-level cache keyed on path + checksum
(:func:`flashsim_coffea.flows.sampler.load_model`); a :class:`FlashSim` carries only paths,
so it pickles small into every coffea task. torch uses one thread per worker.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np

from .errors import MissingBranchesError, UserError
from .objects.gen import has_branch
from .sampling_precision import check_precision

#: NanoAOD reco threshold applied after sampling, per reco collection: field, minimum
RECO_THRESHOLD = {"Jet": ("pt", 15.0)}
#: Gen acceptance before sampling, per reco collection: max |eta|, min pt of the Gen object
GEN_ACCEPTANCE = {"Muon": (2.4, 3.0)}
MUON_MASS = 0.1056583745
_EFFICIENCY: dict[str, object] = {}


def _efficiency_map(model):
    """The model's efficiency map (``efficiency.json`` beside its card), cached per path; None if absent."""
    from .efficiency import EfficiencyMap

    key = str(model.path)
    if key not in _EFFICIENCY:
        _EFFICIENCY[key] = EfficiencyMap.load(model.path) if model.path is not None else None
    return _EFFICIENCY[key]


@dataclass(frozen=True)
class _Entry:
    spec_name: str
    model_path: str


def _resolve(model: str | Path | None, default: str) -> str:
    from .flows.sampler import shipped_model_path

    if model is None or model == "default":
        return str(shipped_model_path(default))
    return str(Path(model))


class FlashSim:
    """On-the-fly FlashSim of reco Jets and Muons (see module docstring).

    jets, muons: model directories (card.json + model.safetensors), ``"default"`` for the
    shipped models, or ``False`` to keep the file's own collection. threads: torch CPU
    threads per worker. device: ``"cpu"`` (default) or ``"cuda"`` to sample the flows on a GPU
    (each worker process then uses that GPU). precision: ``"float32"`` (default) or
    ``"bfloat16"``: the flows' conditioner products in bfloat16, ~1.1–1.2x faster on CPUs with AMX
    (a slightly different, separately validated model; see :mod:`.flows.fast_inverse`).
    """

    def __init__(self, jets: str | Path | None | bool = "default", muons: str | Path | None | bool = "default", threads: int = 1,
                 device: str = "cpu", precision: str = "float32"):
        self.entries: list[_Entry] = []
        if jets is not False:
            self.entries.append(_Entry("jets", _resolve(jets, "jets")))
        if muons is not False:
            self.entries.append(_Entry("muons", _resolve(muons, "muons")))
        self.threads = threads
        self.device = device
        self.precision = check_precision(precision)  # fail here, not on every worker
        self.last_info: dict[str, dict] = {}

    def __repr__(self) -> str:
        return f"FlashSim({', '.join(f'{e.spec_name}={e.model_path!r}' for e in self.entries)})"

    # -- models (lazy, cached per process) ---------------------------------------------------
    def _model(self, entry: _Entry):
        import torch

        from .flows.sampler import load_model

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        return load_model(entry.model_path, entry.spec_name, self.device, self.precision)

    def required_branches(self) -> list[str]:
        out: set[str] = set()
        for e in self.entries:
            out.update(self._model(e).spec.gen_branches())
        return sorted(out)

    def check(self, events, filename: str = "<events>") -> None:
        """Raise :class:`MissingBranchesError` naming the Gen branches ``events`` lacks."""
        missing = [b for b in self.required_branches() if not has_branch(events, b)]
        if missing:
            raise MissingBranchesError(filename, missing, "run FlashSim (it simulates reco objects from Gen collections)")

    # -- injection ---------------------------------------------------------------------------
    def inject(self, events, folds: int = 1):
        """Events with FlashSim ``Jet``/``Muon``; with ``folds`` > 1 each event repeated ``folds`` times."""
        return next(self.inject_batches(events, folds, max_events=None))[0]

    def inject_batches(self, events, folds: int = 1, max_events: int | None = None):
        """Yield ``(events_with_flashsim, (first_fold, stop_fold))`` for consecutive fold ranges.

        The conditioning is computed once; each batch repeats every event for the folds
        ``first_fold … stop_fold − 1`` (event-major), with at most ``max_events`` events per
        batch (at least one fold; ``None``: all folds at once). Fold k of an object gets the
        same reco values whichever batch it is in, so an analysis can bound its memory at large
        ``folds`` by looping over batches (all folds of an event must still reach a
        :class:`~flashsim_coffea.hists.FoldHist` in one fill: collect, then fill).
        """
        if int(folds) != folds or folds < 1:
            raise UserError(f"folds must be a positive integer, got {folds}")
        folds = int(folds)
        filename = str(getattr(events, "metadata", {}).get("filename", "<events>")) if hasattr(events, "metadata") else "<events>"
        self.check(events, filename)
        n = len(events)
        step = folds if max_events is None else max(1, min(folds, int(max_events) // max(n, 1)))
        prepared = [(self._model(e), e.spec_name) for e in self.entries]
        prepared = [(model, name, self._prepare(model, events)) for model, name in prepared]
        for first in range(0, folds, step):
            stop = min(folds, first + step)
            ev_index = np.repeat(np.arange(n), stop - first)
            ev_fold = np.tile(np.arange(first, stop, dtype=np.int64), n)
            out = events[ev_index] if folds > 1 else events
            if folds > 1:
                out = ak.with_field(out, ev_fold, "fold")
            self.last_info = {}
            for model, name, prep in prepared:
                reco, info = self._simulate(model, prep, events, ev_index, ev_fold, out)
                out = ak.with_field(out, reco, model.spec.reco)
                self.last_info[name] = info
            yield out, (first, stop)

    @staticmethod
    def _prepare(model, events) -> dict:
        """Per chunk and spec, shared by all folds: Gen objects, acceptance, conditioning, keys."""
        spec = model.spec
        ctx = spec.context(events)
        objs = ctx.objects()
        accept = GEN_ACCEPTANCE.get(spec.reco)
        if accept is not None:
            max_eta, min_pt = accept
            keep = (abs(objs.eta) < max_eta) & (objs.pt > min_pt)
        else:
            keep = ak.ones_like(objs.pt, dtype=bool)
        counts = ak.to_numpy(ak.num(objs, axis=1))
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        local = ak.local_index(objs, axis=1)
        return {
            "cond": spec.conditioning_matrix(ctx),
            "keys": spec.noise_keys(ctx),
            "flat_keep": ak.to_numpy(ak.flatten(keep, axis=1)),
            "row_of": (local + offsets)[keep],  # accepted rows of the flat object table, jagged per event
            "gen": {f: ak.to_numpy(ak.flatten(objs[f], axis=1)) for f in ak.fields(objs)},
            # first index of each event's objects in the *stored* Gen collection (global index)
            "src_offsets": np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(events[spec.simulated.prefix], axis=1)))[:-1]]),
        }

    def _simulate(self, model, prep: dict, events, ev_index: np.ndarray, ev_fold: np.ndarray, out):
        spec = model.spec
        cond, keys, flat_keep, row_of = prep["cond"], prep["keys"], prep["flat_keep"], prep["row_of"]
        # rows of the flat object table for the (possibly repeated) events, event-major
        rows_j = row_of[ev_index] if len(ev_index) != len(events) else row_of
        out_counts = ak.to_numpy(ak.num(rows_j, axis=1))
        rows = ak.to_numpy(ak.flatten(rows_j, axis=1)).astype(np.int64)
        fold = np.repeat(ev_fold, out_counts)
        row_keys = {k: v[rows] for k, v in keys.items()}
        eff = _efficiency_map(model)
        if eff is not None:  # reconstruction efficiency, drawn per (object, fold)
            ok = eff.keep(prep["gen"]["pt"][rows], prep["gen"]["eta"][rows], model.seed, row_keys, fold)
            out_counts = ak.to_numpy(ak.sum(ak.unflatten(ok, out_counts), axis=1)).astype(np.int64)
            rows, fold = rows[ok], fold[ok]
            row_keys = {k: v[ok] for k, v in row_keys.items()}

        gen = {f: v[rows] for f, v in prep["gen"].items()}
        with warnings.catch_warnings():
            # redraws outside the training support are routine: counted in info, not warned per chunk
            warnings.simplefilter("ignore", UserWarning)
            targets, info = model.sample(cond[rows], row_keys, fold=fold, return_info=True)
        if info["n_nonfinite_cond"] or info["n_fallback"]:
            warnings.warn(
                f"flashsim {spec.name}: {info['n_nonfinite_cond']} Gen objects with non-finite conditioning "
                f"(simulated at the training mean), {info['n_fallback']} samples fell back to the mode after "
                f"{info['n_redrawn']} redraws",
                stacklevel=3,
            )
        fields = spec.rebuild(targets, gen)
        fields[spec.match] = row_keys["object"].astype(np.int32)
        if spec.reco == "Muon":
            fields.setdefault("mass", np.full(len(rows), MUON_MASS, dtype=np.float32))
        fields.setdefault("charge", np.zeros(len(rows), dtype=np.int32))
        for f in ("partonFlavour", "hadronFlavour"):
            if spec.reco == "Jet" and f in gen:
                fields.setdefault(f, gen[f].astype(np.int32))
        info["n_gen_outside_acceptance"] = int((~flat_keep).sum())
        info["n_not_reconstructed"] = int((~ok).sum()) if eff is not None else 0

        reco = ak.zip({k: ak.unflatten(v, out_counts) for k, v in fields.items()}, depth_limit=2)
        thr = RECO_THRESHOLD.get(spec.reco)
        if thr is not None:
            reco = reco[reco[thr[0]] > thr[1]]
        reco = reco[ak.argsort(reco.pt, axis=1, ascending=False)]

        # global index for matched_gen: coffea resolves it in the Gen collection of the
        # *originally constructed* events (``_events()``), so offsets are those of the
        # original events, taken per repeated event
        reco = ak.with_field(reco, reco[spec.match] + prep["src_offsets"][ev_index], f"{spec.match}G")
        behavior = getattr(out, "behavior", None)
        reco = ak.with_name(reco, spec.reco, behavior=behavior)
        return reco, info
