"""FlashSim inside the analysis: Gen collections → reco ``Jet``/``Muon`` in coffea NanoEvents.

Three levels, one mechanism:

* ``FlashSim().inject(events, folds=N)`` — events whose ``Jet`` and ``Muon`` are FlashSim
  collections with full NanoAOD behaviour (four-vector sums, ``delta_r``, ``nearest``,
  ``matched_gen``); with N > 1 each event appears N times (event-major) with a ``fold`` field.
* ``FlashSim().inject_batches(events, folds, max_events)`` — the same in consecutive fold
  ranges (:func:`flashsim_coffea.folds.fold_batches`) so memory stays bounded at large N;
  yields :class:`InjectedBatch` (events, and the :class:`~flashsim_coffea.folds.FoldBatch`
  saying which (event, fold) pair each row is).
* ``chunk = FlashSim().prepare(events)`` then ``chunk.simulate("Muon", batch)`` — one reco
  collection for any subset of (event, fold) pairs: an analysis simulates muons, selects, and
  simulates jets only for the pairs that passed::

      chunk = FlashSim().prepare(events)                  # conditioning once per chunk
      for batch in fold_batches(len(events), folds=5):
          muons = chunk.simulate("Muon", batch)          # one list per (event, fold) pair
          dimuon = dimuon_mask(muons)
          jets = chunk.simulate("Jet", batch.subset(dimuon))

  The noise is keyed on (run, luminosityBlock, event, Gen object, fold), so a pair gets the
  same objects whether it is simulated alone, in a subset or with everything.

Per chunk and collection (:meth:`FlashSim.prepare`):

1. Gen objects of the spec's simulated collection → conditioning matrix and noise keys,
   computed **once** (columnar, :class:`flashsim_coffea.objects.ObjectSpec`).
2. The spec's :class:`~flashsim_coffea.objects.rules.RecoRules` decide what is simulated:
   the Gen acceptance (muons: |η| < 2.4, pT > 3 GeV; jets: |η| < 5); Gen objects with a
   non-finite conditioning value or Gen kinematics are **not simulated** (dropped, counted in
   ``n_gen_nonfinite``: a FlashSim object with pT = inf must never reach a selection).
3. Per (object, fold): the reconstruction efficiency of the model's map (``efficiency.json``,
   :mod:`flashsim_coffea.efficiency`, keyed draw), the flow sample
   (:meth:`FlowModel.sample`; conditioning outside the training range is clamped, counted in
   ``n_out_of_range_cond``), ``spec.rebuild`` (pt = ptRatio·pt_gen …, snapping,
   NanoAOD precision), the rules' reco threshold (jets pT > 15 GeV), constant mass and Gen-copied
   fields; objects sorted by pT per event.
4. Cross-references: ``genJetIdx``/``genPartIdx`` point into the event's GenJet/GenPart, with
   the global ``genJetIdxG``/``genPartIdxG`` that coffea's ``matched_gen`` uses — offsets of
   the chunk coffea built (:func:`~flashsim_coffea.nanoaod.links.chunk_rows`), so they are right
   on skimmed, sliced or folded events too. :meth:`PreparedChunk.inject` (and so ``inject``)
   adds NanoAOD's links between the FlashSim collections (``Jet.muonIdx1/2``, ``Jet.nMuons``,
   ``Muon.jetIdx``, and ``Jet.electronIdx1/2``, ``Jet.nElectrons`` where the events have
   electrons) and recomputes every link of the other collections into them
   (``Electron.jetIdx``, ``FatJet.muonIdx3SJ``, …) within ΔR < 0.4 (0.8 for FatJet): numbered
   links the k-th target in the cone in pT order, others the closest, else −1; their global
   ``…G`` are removed (:mod:`flashsim_coffea.nanoaod.links`).
5. Folds: ``inject(events, folds=N)`` divides the absolute weights (``genWeight`` …,
   :func:`~flashsim_coffea.folds.fold_weight`) by N, so Σ weights of the folded events is the
   input's — the convention of ``flashsim simulate --folds N``.

Counts (:data:`INFO_COUNTS`, per (object, fold) pair) are summed in ``PreparedChunk.info`` —
the processor stores them in its output, and ``flashsim run`` and the demo report their sums
over the run (:func:`describe_counts`); a ``PreparedChunk`` never warns per chunk, ``inject``
warns once per call when objects were dropped, clamped or set to the mode. Models load lazily on the worker from a module-level
cache keyed on path + checksum (:func:`flashsim_coffea.flows.sampler.load_model`); a
:class:`FlashSim` carries only paths, so it pickles small into every coffea task.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from .errors import MissingBranchesError, UserError
from .folds import FoldBatch, check_folds, fold_batches, fold_weight
from .nanoaod.conventions import EVENT_ID, FOLD_SCALED_WEIGHTS, RECO_LINK_FIELDS
from .nanoaod.links import chunk_rows, event_ids, global_offsets, original_chunk, relink
from .nanoaod.pairs import count_per_event
from .objects import event_conditioning
from .objects.gen import branch, has_branch, jagged_records
from .sampling_precision import check_precision

__all__ = ["FlashSim", "PreparedChunk", "InjectedBatch", "INFO_COUNTS", "INFO_LABELS", "describe_counts"]

#: counts reported per collection, over simulated (Gen object, fold) pairs; ``n_unmatched``: objects
#: without a Gen counterpart drawn by a count model (pile-up jets), also counted in the later steps
INFO_COUNTS = ("n_gen", "n_gen_outside_acceptance", "n_gen_nonfinite", "n_gen_below_min_pt", "n_unmatched",
               "n_not_reconstructed",
               "n_out_of_range_cond", "n_redrawn", "n_fallback", "n_below_threshold", "n_reco")

#: what each count means, for reports (:func:`describe_counts`)
INFO_LABELS = {
    "n_gen": "Gen objects",
    "n_gen_outside_acceptance": "outside the acceptance (not simulated)",
    "n_gen_nonfinite": "with non-finite Gen inputs (dropped)",
    "n_gen_below_min_pt": "unable to pass the analysis' pT cut (not simulated)",
    "n_unmatched": "without Gen counterpart (pile-up)",
    "n_not_reconstructed": "not reconstructed (efficiency)",
    "n_out_of_range_cond": "conditioning outside the training range (clamped)",
    "n_redrawn": "samples redrawn",
    "n_fallback": "samples set to the mode after redraws",
    "n_below_threshold": "below the reco threshold",
    "n_reco": "reco objects",
}


def describe_counts(counts: dict[str, dict[str, int]]) -> list[str]:
    """One line per collection of FlashSim's counts (summed ``PreparedChunk.info``, over
    (object, fold) pairs): Gen objects, reco objects and every other non-zero count."""
    lines = []
    for reco, c in counts.items():
        parts = [f"{v:,} {INFO_LABELS.get(k, k)}" for k, v in c.items() if v and k not in ("n_gen", "n_reco")]
        lines.append(f"{reco}: {c.get('n_gen', 0):,} Gen objects × folds → {c.get('n_reco', 0):,} reco objects"
                     + (f"; {', '.join(parts)}" if parts else ""))
    return lines


_EFFICIENCY: dict[str, object] = {}
_COUNT: dict[str, object] = {}


def _efficiency_map(model):
    """The model's efficiency map (``efficiency.json`` beside its card), cached per path; None if absent."""
    from .efficiency import EfficiencyMap

    key = str(model.path)
    if key not in _EFFICIENCY:
        _EFFICIENCY[key] = EfficiencyMap.load(model.path) if model.path is not None else None
        if _EFFICIENCY[key] is None and model.path is not None:
            # once per model and process: a freshly trained model folder has no map until
            # `flashsim efficiency` writes one, and without it every Gen object is reconstructed
            warnings.warn(f"flashsim {model.spec.name}: {model.path} has no efficiency.json, so every Gen object in "
                          f"acceptance is reconstructed (efficiency 1); measure one with `flashsim efficiency "
                          f"{model.spec.name} FILE.root... -o {model.path}` or copy the shipped model's", stacklevel=2)
    return _EFFICIENCY[key]


def _count_model(model):
    """The model's count model (``count.json`` beside its card, :mod:`.flows.count`), cached per
    path; None if absent. A model with one simulates objects without a Gen counterpart: per
    (event, fold) n slots drawn from it, conditioned on the event (pile-up jets)."""
    from .flows.count import CountModel

    key = str(model.path)
    if key not in _COUNT:
        _COUNT[key] = CountModel.load(model.path) if model.path is not None else None
    return _COUNT[key]


@dataclass(frozen=True)
class _Entry:
    spec_name: str
    model_path: str


def _resolve(model: Any, default: str) -> str:
    """A model directory from ``"default"``/None/True (the shipped model) or a path; clear errors otherwise."""
    from .flows.checkpoint import read_card
    from .flows.sampler import shipped_model_path

    if model is None or model is True or model == "default":
        return str(shipped_model_path(default))
    if not isinstance(model, (str, Path)):
        raise UserError(f"FlashSim({default}=...) takes a model directory, 'default' (the shipped model) or False "
                        f"(keep the file's own collection), got {model!r}")
    read_card(model)  # a missing, corrupt or foreign card fails here, once, not on every chunk
    return str(Path(model))


@dataclass(frozen=True)
class InjectedBatch:
    """Events with FlashSim collections, one row per (event, fold) pair of ``batch``."""

    events: Any
    batch: FoldBatch


class FlashSim:
    """On-the-fly FlashSim of reco Jets and Muons (see module docstring).

    jets, muons: model directories (card.json + model.safetensors), ``"default"`` (or True) for
    the shipped models, or ``False`` to keep the file's own collection. pileup_jets: the model of
    the pile-up jets (``Jet_genJetIdx = −1``: flow + ``count.json``, :mod:`.objects.pileup_jets`)
    merged into the FlashSim ``Jet`` collection — ``"default"`` (the shipped model), a directory,
    or ``False`` (no pile-up jets); without FlashSim jets (``jets=False``) the default is off. threads: torch CPU threads
    per worker (≥ 1): the flows sample that many blocks of objects at once, each on one thread
    (:func:`~flashsim_coffea.flows.sampler.block_threads`; the samples do not depend on it). device: ``"cpu"`` (default) or ``"cuda"`` to sample the flows on a GPU
    (each worker process then uses that GPU). precision: ``"float32"`` (default) or
    ``"bfloat16"``: the flows' conditioner products in bfloat16, ~1.1–1.2x faster on CPUs with AMX
    (a slightly different, separately validated model; see :mod:`.flows.fast_inverse`).
    """

    def __init__(self, jets: str | Path | None | bool = "default", muons: str | Path | None | bool = "default", threads: int = 1,
                 device: str = "cpu", precision: str = "float32", pileup_jets: str | Path | None | bool = "default"):
        if jets is False and pileup_jets is not False:
            if not (pileup_jets is None or pileup_jets is True or pileup_jets == "default"):
                raise UserError("FlashSim(pileup_jets=...) adds pile-up jets to the FlashSim Jet collection: it needs "
                                "FlashSim jets too (jets=False keeps the file's own Jet collection)")
            pileup_jets = False
        self.entries: list[_Entry] = []
        for name, model in (("jets", jets), ("muons", muons), ("pileup_jets", pileup_jets)):
            if model is not False:
                self.entries.append(_Entry(name, _resolve(model, name)))
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise UserError(f"FlashSim(threads=...) must be an integer ≥ 1 (torch CPU threads per worker), got {threads!r}")
        self.threads = int(threads)
        self.device = str(device)
        self.precision = check_precision(precision)  # fail here, not on every worker

    def __repr__(self) -> str:
        return f"FlashSim({', '.join(f'{e.spec_name}={e.model_path!r}' for e in self.entries)})"

    # -- models (lazy, cached per process) ---------------------------------------------------
    def _model(self, entry: _Entry):
        import torch

        from .flows.sampler import load_model

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        return load_model(entry.model_path, entry.spec_name, self.device, self.precision)

    def collection_models(self) -> dict[str, list[Any]]:
        """The loaded flow models per reco collection (``"Jet"``: jets, then pile-up jets; ``"Muon"``),
        in the order their objects are concatenated before the pT sort."""
        out: dict[str, list[Any]] = {}
        for e in self.entries:
            model = self._model(e)
            out.setdefault(model.spec.reco, []).append(model)
        return out

    def models(self) -> dict[str, Any]:
        """The loaded flow models keyed by their reco collection (``"Jet"``, ``"Muon"``): the first
        of each collection (the one simulating from Gen objects); all of them: :meth:`collection_models`."""
        return {reco: models[0] for reco, models in self.collection_models().items()}

    def required_branches(self) -> list[str]:
        out: set[str] = set()
        for models in self.collection_models().values():
            for model in models:
                out.update(model.spec.gen_branches())
        return sorted(out)

    def check(self, events, filename: str = "<events>") -> None:
        """Raise :class:`MissingBranchesError` naming the Gen branches ``events`` lacks."""
        missing = [b for b in self.required_branches() if not has_branch(events, b)]
        if missing:
            raise MissingBranchesError(filename, missing, "run FlashSim (it simulates reco objects from Gen collections)")

    # -- injection ---------------------------------------------------------------------------
    def prepare(self, events) -> "PreparedChunk":
        """Per-chunk preparation of every collection (conditioning, keys, acceptance): see module docstring."""
        meta = getattr(events, "metadata", None) or {}
        self.check(events, str(meta.get("filename", "<events>")))
        return PreparedChunk(events, self.collection_models())

    def inject(self, events, folds: int = 1):
        """Events with FlashSim ``Jet``/``Muon`` and the links between and into them (module
        docstring); with ``folds`` > 1 each event repeated ``folds`` times, each copy with weight
        ``genWeight / folds`` (Σ weights kept)."""
        return next(self.inject_batches(events, folds, max_events=None)).events

    def inject_batches(self, events, folds: int = 1, max_events: int | None = None) -> Iterator[InjectedBatch]:
        """Yield :class:`InjectedBatch` for consecutive fold ranges of at most ``max_events``
        (event, fold) pairs (at least one fold; ``None``: all folds at once). The conditioning is
        computed once; a FoldHist still needs all folds of an event in one fill
        (:class:`flashsim_coffea.hists.FoldFiller` collects them)."""
        folds = check_folds(folds)
        chunk = self.prepare(events)
        warned = False
        for batch in fold_batches(len(events), folds, max_events):
            out = chunk.inject(batch)
            if folds > 1:
                out = _fold_weights(ak.with_field(out, batch.fold, "fold"), folds)
            if not warned and any(c["n_gen_nonfinite"] or c["n_out_of_range_cond"] or c["n_fallback"]
                                  for c in chunk.info.values()):
                # once per call (a processor's PreparedChunk stays quiet: its counts go to the output)
                warnings.warn("flashsim: " + "; ".join(describe_counts(chunk.info)), stacklevel=3)
                warned = True
            yield InjectedBatch(out, batch)


@dataclass
class PreparedChunk:
    """One chunk's Gen conditioning for every FlashSim collection; :meth:`simulate` draws reco
    objects for any :class:`~flashsim_coffea.folds.FoldBatch` of it. ``info``: counts summed over
    the calls, per collection (:data:`INFO_COUNTS`).

    A collection is prepared (Gen objects, conditioning, keys) on its first use, for every event
    of the chunk — or, after :meth:`restrict`, only for the events an analysis can need it for
    (e.g. jets where the dimuon selection can pass): conditioning is event-local, so the objects of
    a pair do not depend on it."""

    events: Any
    models: dict[str, list[Any]]  # reco collection -> its models (jets: GenJet-matched, then pile-up jets)
    info: dict[str, dict[str, int]] = field(default_factory=dict)
    _prepared: dict[str, tuple[np.ndarray | None, list[dict]]] = field(default_factory=dict, repr=False)
    _contexts: dict[int, Any] = field(default_factory=dict, repr=False)  # per model (id): the chunk's GenContext
    _offsets: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # per Gen collection, see _gen_offsets
    _chunk: tuple[Any, np.ndarray | None] | None = field(default=None, repr=False)  # (coffea's chunk, our rows in it)

    @property
    def collections(self) -> list[str]:
        """Reco collections simulated (``"Jet"``, ``"Muon"``)."""
        return list(self.models)

    def restrict(self, collection: str, entries, min_pt: float | None = None) -> None:
        """Prepare ``collection`` only for the chunk's events ``entries`` (indices); simulating a
        pair of another event then raises. With ``min_pt``, also skip the Gen objects whose reco pT
        cannot exceed it (Gen pT × the model's largest pT ratio, as in :meth:`reachable_per_event`;
        counted in ``n_gen_below_min_pt``): for an analysis that only reads objects above
        ``min_pt`` the result is exact, the other objects keep their values (keyed noise)."""
        entries = np.unique(np.asarray(entries, dtype=np.int64))
        sub = self.events[entries]
        preps = [_prepare(model, sub, self._context(model).subset(entries), min_pt)
                 for model in self._models_of(collection)]
        for model, prep in zip(self._models_of(collection), preps):
            if "src_offsets" in prep:  # global Gen indices refer to the chunk's events, not the subset's
                prep["src_offsets"] = self._gen_offsets(model)[entries]
        self._prepared[collection] = (entries, preps)

    def simulated_per_event(self, collection: str) -> np.ndarray:
        """Gen objects each event of the chunk has simulated in ``collection`` (after acceptance and
        the non-finite check; before efficiency): an upper bound of its reco objects."""
        batch = FoldBatch.all_folds(len(self.events))
        local, preps = self._preparation(collection, batch)
        counts = [ak.to_numpy(ak.num(p["row_of"], axis=1)) for p in preps if "row_of" in p]
        if not counts:
            raise UserError(f"FlashSim {collection}: its objects have no Gen counterpart to count")
        return np.sum(counts, axis=0)

    def reachable_per_event(self, collection: str, min_pt: float) -> np.ndarray:
        """Per event of the chunk: the Gen objects of ``collection`` inside the FlashSim acceptance
        whose reco pT *can* exceed ``min_pt``: Gen pT × (1 + 2⁻⁹) × the largest pT ratio the model
        can draw (:meth:`~flashsim_coffea.flows.preprocess.Preprocessor.max_value`, the edge of its
        training support; 2⁻⁹ covers NanoAOD's mantissa rounding) > ``min_pt``. Read from the Gen
        collection alone (no conditioning): an upper bound of the reco objects above ``min_pt``,
        so an analysis that needs n of them may skip, exactly, the events with fewer (and
        :meth:`restrict` the collections to the others)."""
        counts = np.zeros(len(self.events), dtype=np.int64)
        for model in self._models_of(collection):
            if _count_model(model) is not None:
                raise UserError(f"FlashSim {collection}: {model.spec.name!r} draws objects without a Gen counterpart; "
                                "their number has no Gen-level bound")
            objs = self._context(model).objects()
            pt, eta = (np.asarray(ak.to_numpy(ak.flatten(objs[f], axis=1)), dtype=np.float64) for f in ("pt", "eta"))
            ok = model.spec.rules.in_acceptance(pt, eta) & _can_exceed(model, pt, min_pt)
            counts += count_per_event(ok, ak.to_numpy(ak.num(objs, axis=1)))
        return counts

    def _gen_offsets(self, model) -> np.ndarray:
        """Per event: the offset of its objects of the model's Gen collection in the chunk coffea
        built (:func:`~flashsim_coffea.nanoaod.links.global_offsets`): ``matched_gen`` resolves
        ``genPartIdxG``/``genJetIdxG`` there, also when these events are a skim of it."""
        prefix = model.spec.simulated.prefix
        if prefix not in self._offsets:
            if self._chunk is None:  # coffea's chunk and our rows in it, once (eager mode may re-read it per call)
                chunk = original_chunk(self.events)
                self._chunk = (self.events, None) if chunk is None else (chunk, chunk_rows(self.events, chunk))
            chunk, rows = self._chunk
            self._offsets[prefix] = global_offsets(chunk, prefix, rows)
        return self._offsets[prefix]

    def _context(self, model) -> Any:
        """The model's Gen context of the whole chunk (its loaded collections are reused by
        :meth:`reachable_per_event`, :meth:`restrict` and the preparation)."""
        if id(model) not in self._contexts:
            self._contexts[id(model)] = model.spec.context(self.events)
        return self._contexts[id(model)]

    def _models_of(self, collection: str) -> list[Any]:
        if collection not in self.models:
            raise UserError(f"FlashSim simulates {', '.join(self.models) or 'nothing'} here, not {collection!r}")
        return self.models[collection]

    def _preparation(self, collection: str, batch: FoldBatch) -> tuple[FoldBatch, list[dict]]:
        """The collection's preparations and ``batch`` expressed in their event indices."""
        if collection not in self._prepared:
            self._prepared[collection] = (None, [_prepare(m, self.events, self._context(m), offsets=self._gen_offsets(m) if _count_model(m) is None else None)
                                                 for m in self._models_of(collection)])
        entries, preps = self._prepared[collection]
        if entries is None:
            return batch, preps
        pos = np.minimum(np.searchsorted(entries, batch.entry), max(len(entries) - 1, 0))
        if len(batch) and (len(entries) == 0 or np.any(entries[pos] != batch.entry)):
            raise UserError(f"FlashSim {collection}: a pair of an event outside PreparedChunk.restrict(...) was requested")
        return FoldBatch(pos, batch.fold, batch.folds, len(entries)), preps

    def inject(self, batch: FoldBatch):
        """The batch's events (one row per pair) with every FlashSim collection and NanoAOD's links:
        those of the other collections into them recomputed, the FlashSim collections' own
        (``Jet.muonIdx1`` …, :data:`~flashsim_coffea.nanoaod.conventions.RECO_LINK_FIELDS`) made
        (:func:`~flashsim_coffea.nanoaod.links.relink`). Weights are left as they are."""
        out = batch.take(self.events)
        for reco in self.collections:
            out = ak.with_field(out, self.simulate(reco, batch, attach=False), reco)
        return relink(out, self.collections, add={reco: RECO_LINK_FIELDS.get(reco, ()) for reco in self.collections})

    def simulate(self, collection: str, batch: FoldBatch, attach: bool = True) -> ak.Array:
        """Reco ``collection`` (one list per pair of ``batch``) with NanoAOD behaviour; ``attach``:
        as a field of the pairs' events, so that cross-references (``matched_gen``) resolve.
        With several models for the collection (jets and pile-up jets) each pair's objects are
        concatenated in model order and sorted by pT (stable: a tie keeps that order)."""
        local, preps = self._preparation(collection, batch)
        acc = self.info.setdefault(collection, dict.fromkeys(INFO_COUNTS, 0))
        parts = []
        for model, prep in zip(self.models[collection], preps):
            part, info = _simulate(model, prep, local)
            parts.append(part)
            for k in INFO_COUNTS:
                acc[k] += int(info[k])
        reco = parts[0] if len(parts) == 1 else _merge(parts)
        reco = ak.with_name(reco[ak.argsort(reco.pt, axis=1, ascending=False, stable=True)], collection,
                            behavior=getattr(self.events, "behavior", None))
        return ak.with_field(batch.take(self.events), reco, collection)[collection] if attach else reco


def _fold_weights(events, folds: int):
    """``events`` with each absolute weight (:data:`~flashsim_coffea.nanoaod.conventions.FOLD_SCALED_WEIGHTS`)
    divided by ``folds`` (:func:`~flashsim_coffea.folds.fold_weight`): Σ weights of the folded events is the input's."""
    for name in FOLD_SCALED_WEIGHTS:
        if has_branch(events, name):
            where = name if name in ak.fields(events) else tuple(name.split("_", 1))
            w = ak.to_numpy(branch(events, name))
            events = ak.with_field(events, fold_weight(w, folds), where=where)
    return events


def _can_exceed(model, gen_pt: np.ndarray, min_pt: float) -> np.ndarray:
    """Per Gen object: whether its reco pT can exceed ``min_pt`` (its bound, :func:`_reco_pt_bound`, does)."""
    return _reco_pt_bound(model, gen_pt) > min_pt


def _reco_pt_bound(model, gen_pt: np.ndarray) -> np.ndarray:
    """The largest reco pT the model can give each Gen object (inf if its spec has no pT target)."""
    for t in model.spec.targets:
        if t.branch == "pt":
            top = model.pre.max_value(t.name) * (1.0 + 2.0**-9)
            return gen_pt * top if t.relation == "ratio" and t.gen_field == "pt" else np.full(gen_pt.shape, top)
    return np.full(gen_pt.shape, np.inf)


def _merge(parts: list[ak.Array]) -> ak.Array:
    """Per-pair concatenation of record arrays with the same fields (one list per pair each)."""
    fields = ak.fields(parts[0])
    for p in parts[1:]:
        if set(ak.fields(p)) != set(fields):
            raise UserError(f"FlashSim models of one collection produce different fields: {sorted(fields)} vs "
                            f"{sorted(ak.fields(p))}")
    return ak.zip({f: ak.concatenate([p[f] for p in parts], axis=1) for f in fields}, depth_limit=2)


def _prepare(model, events, ctx=None, min_pt: float | None = None, offsets: np.ndarray | None = None) -> dict:
    """Per chunk and spec, shared by all folds: Gen objects, acceptance, conditioning, keys (or,
    for a model with a count model, the events' conditioning and keys). ``ctx``: the spec's
    :class:`~flashsim_coffea.objects.spec.GenContext` of ``events`` if one exists already;
    ``min_pt``: simulate only Gen objects whose reco pT bound exceeds it (:meth:`PreparedChunk.restrict`);
    ``offsets``: the global offsets of the events' Gen objects (:meth:`PreparedChunk._gen_offsets`; set later if None)."""
    spec = model.spec
    if _count_model(model) is not None:
        return _prepare_unmatched(model, events)
    rules = spec.rules
    ctx = ctx if ctx is not None else spec.context(events)
    objs = ctx.objects()
    cond = spec.conditioning_matrix(ctx)
    gen = {f: ak.to_numpy(ak.flatten(objs[f], axis=1)) for f in ak.fields(objs)}
    accept = rules.in_acceptance(gen["pt"], gen["eta"])
    finite = np.all(np.isfinite(cond), axis=1) if cond.size else np.ones(len(cond), dtype=bool)
    for f in ("pt", "eta", "phi", "mass"):
        if f in gen:
            finite &= np.isfinite(gen[f])
    counts = np.asarray(ak.to_numpy(ak.num(objs, axis=1)), dtype=np.int64)
    keep = accept & finite
    below = np.zeros(len(keep), dtype=bool)
    if min_pt is not None:
        below = keep & ~_can_exceed(model, np.asarray(gen["pt"], dtype=np.float64), min_pt)
        keep &= ~below
    return {
        "cond": cond,
        "keys": spec.noise_keys(ctx),
        "n_objects": counts,
        "n_outside": count_per_event(~accept, counts),
        "n_nonfinite": count_per_event(accept & ~finite, counts),
        "n_below": count_per_event(below, counts),
        # simulated rows of the flat object table, jagged per event
        "row_of": ak.unflatten(np.flatnonzero(keep).astype(np.int64), count_per_event(keep, counts)),
        "gen": gen,
        "src_offsets": offsets,
    }


def _prepare_unmatched(model, events) -> dict:
    """Objects without a Gen counterpart (pile-up jets): the events' conditioning rows and keys;
    how many objects each (event, fold) gets is drawn in :func:`_simulate`."""
    return {
        "event_cond": event_conditioning(model.spec, events),
        "event_keys": dict(zip(EVENT_ID, event_ids(events))),
    }


def _gen_objects(model, prep: dict, batch: FoldBatch, info: dict):
    """The batch's simulated Gen objects: (objects per pair, conditioning rows, keys, fold, Gen fields)."""
    ev_index = batch.entry
    # rows of the flat object table for the batch's pairs, event-major
    rows_j = prep["row_of"] if batch.is_identity else prep["row_of"][ev_index]
    out_counts = ak.to_numpy(ak.num(rows_j, axis=1))
    rows = ak.to_numpy(ak.flatten(rows_j, axis=1)).astype(np.int64)
    fold = np.repeat(batch.fold, out_counts)
    row_keys = {k: v[rows] for k, v in prep["keys"].items()}
    info["n_gen"] = int(prep["n_objects"][ev_index].sum())
    info["n_gen_outside_acceptance"] = int(prep["n_outside"][ev_index].sum())
    info["n_gen_nonfinite"] = int(prep["n_nonfinite"][ev_index].sum())
    info["n_gen_below_min_pt"] = int(prep["n_below"][ev_index].sum())
    eff = _efficiency_map(model)
    if eff is not None:  # reconstruction efficiency, drawn per (object, fold)
        ok = eff.keep(prep["gen"]["pt"][rows], prep["gen"]["eta"][rows], model.seed, row_keys, fold)
        out_counts = count_per_event(ok, out_counts)
        rows, fold = rows[ok], fold[ok]
        row_keys = {k: v[ok] for k, v in row_keys.items()}
        info["n_not_reconstructed"] = int((~ok).sum())
    gen = {f: v[rows] for f, v in prep["gen"].items()}
    # the rows' conditioning kept in column order (one contiguous column per feature; see
    # ObjectSpec.conditioning_matrix): a row gather of it would give a row-major copy
    cond = np.take(prep["cond"].T, rows, axis=1).T
    return out_counts, cond, row_keys, fold, gen


def _unmatched_objects(model, prep: dict, batch: FoldBatch, info: dict):
    """The batch's objects without a Gen counterpart: n per (event, fold) pair from the count
    model (keyed on the event and the fold), slot i of a pair keyed with object index −1 − i
    (the reference's convention for its pile-up jets; the spec's own noise streams keep them
    apart from Gen objects' keys anyway); every slot conditioned on its event's row."""
    count = _count_model(model)
    names = model.spec.conditioning_names
    cond_ev = prep["event_cond"][batch.entry]
    pair_keys = {k: v[batch.entry] for k, v in prep["event_keys"].items()}
    n, outside = count.draw(cond_ev[:, names.index(count.feature)], pair_keys, batch.fold)
    pair = np.repeat(np.arange(len(batch), dtype=np.int64), n)
    slot = np.arange(pair.size, dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
    keys = {k: v[pair] for k, v in pair_keys.items()}
    keys["object"] = -1 - slot
    info["n_unmatched"] = int(n.sum())
    info["n_out_of_range_cond"] += outside
    return n, cond_ev[pair], keys, batch.fold[pair], {}


def _simulate(model, prep: dict, batch: FoldBatch) -> tuple[ak.Array, dict]:
    """One model's objects for the batch's pairs (one list per pair, not yet sorted) and counts."""
    spec, rules = model.spec, model.spec.rules
    info = dict.fromkeys(INFO_COUNTS, 0)
    objects = _unmatched_objects if "event_cond" in prep else _gen_objects
    out_counts, cond, row_keys, fold, gen = objects(model, prep, batch, info)
    with warnings.catch_warnings():
        # redraws outside the training support are routine: counted in info, not warned per chunk
        warnings.simplefilter("ignore", UserWarning)
        targets, sample_info = model.sample(cond, row_keys, fold=fold, return_info=True)
    info["n_out_of_range_cond"] += int(sample_info["n_out_of_range_cond"])
    for k in ("n_redrawn", "n_fallback"):
        info[k] = int(sample_info[k])
    n = len(row_keys["object"])
    fields = spec.rebuild(targets, gen)
    # the match index: the Gen object's, −1 (NanoAOD's "no match") for objects without one
    fields[spec.match] = np.maximum(row_keys["object"], -1).astype(np.int32)
    if rules.mass is not None:
        fields.setdefault("mass", np.full(n, rules.mass, dtype=np.float32))
    fields.setdefault("charge", np.zeros(n, dtype=np.int32))
    for f, dtype in rules.gen_defaults:  # copied from the Gen object; 0 for objects without one
        fields.setdefault(f, gen[f].astype(dtype) if f in gen else np.zeros(n, dtype=dtype))

    # global index for matched_gen: coffea resolves it in the Gen collection of the
    # *originally constructed* chunk (``events._events()``), so offsets are those of the
    # chunk's rows of the pairs' events (skimmed or not); −1 stays −1 (matched_gen: None)
    idx = fields[spec.match]
    offsets = np.repeat(prep["src_offsets"][batch.entry], out_counts) if "src_offsets" in prep else 0
    fields[f"{spec.match}G"] = np.where(idx >= 0, idx.astype(np.int64) + offsets, -1)
    if rules.min_pt is not None:
        above = fields["pt"] > rules.min_pt
        info["n_below_threshold"] = int((~above).sum())
        out_counts = count_per_event(above, out_counts)
        fields = {k: v[above] for k, v in fields.items()}
    info["n_reco"] = int(out_counts.sum())
    return jagged_records(fields, out_counts), info
