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
   ``n_gen_nonfinite``: a FlashSim object with pT = inf must never reach a selection); they are
   counted before the acceptance (a Gen pT of NaN is non-finite, not outside the acceptance),
   ``n_gen_outside_acceptance`` counts finite objects only.
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
warns once per call when objects were dropped, clamped or set to the mode.

The objects come from the spec registry (:mod:`flashsim_coffea.objects.registry`): this module
names none. What an object needs is declared by its spec — Gen-matched or counted per event
(``RecoRules.origin``), the reco collection it joins (``ObjectSpec.reco``), its constant and
Gen-copied fields (:meth:`~flashsim_coffea.objects.spec.ObjectSpec.complete`). Each model folder
loads lazily on the worker as one bundle (flow + efficiency map + count model,
:func:`flashsim_coffea.flows.bundle.load_bundle`, cached and re-read when a file changes); a
:class:`FlashSim` carries only paths, so it pickles small into every coffea task.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np

from .errors import MissingBranchesError, UserError
from .folds import FoldBatch, check_folds, fold_batches, fold_weight
from .nanoaod.conventions import EVENT_ID, FOLD_SCALED_WEIGHTS, RECO_LINK_FIELDS
from .nanoaod.links import chunk_rows, event_ids, global_offsets, original_chunk, relink
from .nanoaod.pairs import count_per_event
from .objects import event_conditioning
from .objects.registry import get_spec, known_specs
from .objects.gen import branch, has_branch, jagged_records
from .sampling_precision import check_precision

__all__ = ["FlashSim", "Need", "PreparedChunk", "InjectedBatch", "INFO_COUNTS", "INFO_LABELS", "describe_counts"]

#: counts reported per collection, over simulated (Gen object, fold) pairs; ``n_unmatched``: objects
#: without a Gen counterpart drawn by a count model (pile-up jets), also counted in the later steps
INFO_COUNTS = ("n_gen", "n_gen_outside_acceptance", "n_gen_nonfinite", "n_gen_below_min_pt", "n_unmatched",
               "n_not_reconstructed",
               "n_out_of_range_cond", "n_redrawn", "n_fallback", "n_below_threshold", "n_below_min_pt", "n_reco")

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
    "n_below_min_pt": "below the analysis' pT cut (dropped)",
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


@dataclass(frozen=True)
class Need:
    """What an analysis reads of one reco collection: objects with reco pT > ``min_pt`` (None: all),
    in events with at least ``min_count`` of them (0: every event). Given to
    :meth:`FlashSim.prepare`, it lets FlashSim skip, exactly, what the analysis cannot read."""

    min_pt: float | None = None
    min_count: int = 0

    @classmethod
    def of(cls, value: "Need | Mapping[str, Any]") -> "Need":
        if isinstance(value, Need):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"min_pt", "min_count"}
            if not unknown:
                return cls(**value)
        raise UserError(f"FlashSim.prepare(need=...): each collection takes a Need(min_pt=..., min_count=...) or a "
                        f"dict with those keys, got {value!r}")


@dataclass(frozen=True)
class InjectedBatch:
    """Events with FlashSim collections, one row per (event, fold) pair of ``batch``."""

    events: Any
    batch: FoldBatch


class FlashSim:
    """On-the-fly FlashSim of reco collections from Gen (see module docstring).

    models: ``{object: folder | "default" | False}`` over the registered object specs
    (:func:`flashsim_coffea.objects.registry.known_specs`; keywords such as ``jets=...`` say the
    same): a model directory (card.json + model.safetensors, :mod:`.flows.bundle`), ``"default"``
    (or True) for the shipped model, ``False`` for none (the file's own collection stays). Objects
    not named take the default: every registered object with a shipped model. Objects without a
    Gen counterpart (``RecoRules.origin == "event"``, pile-up jets) join the FlashSim collection
    of a Gen-matched object; without one (``jets=False``) they are off by default and refused
    when asked for. Each collection's objects are concatenated Gen-matched first, then
    per-event ones, and sorted by pT.

    threads: torch CPU threads per worker (≥ 1): the flows sample that many blocks of objects at
    once, each on one thread (:func:`~flashsim_coffea.flows.sampler.block_threads`; the samples do
    not depend on it). device: ``"cpu"`` (default) or ``"cuda"`` to sample the flows on a GPU
    (each worker process then uses that GPU). precision: ``"float32"`` (default) or
    ``"bfloat16"``: the flows' conditioner products in bfloat16, ~1.1–1.2x faster on CPUs with AMX
    (a slightly different, separately validated model; see :mod:`.flows.fast_inverse`).
    """

    def __init__(self, models: Mapping[str, Any] | None = None, *, threads: int = 1, device: str = "cpu",
                 precision: str = "float32", **objects: Any):
        from .flows.bundle import model_spec, resolve_model, shipped_models

        asked = {**dict(models or {}), **objects}
        unknown = sorted(set(asked) - set(known_specs()))
        if unknown:
            raise UserError(f"FlashSim: no registered object {', '.join(map(repr, unknown))}; known objects: "
                            f"{', '.join(known_specs())} (objects/registry.py registers new ones)")
        chosen = {**{name: "default" for name in shipped_models()}, **asked}
        paths = {name: resolve_model(name, value) for name, value in chosen.items()}
        specs = {name: model_spec(path) for name, path in paths.items() if path is not None}
        for name, spec in specs.items():
            if spec.name != name:
                raise UserError(f"FlashSim({name}=...): {paths[name]} is a model of {spec.name!r}, not of {name!r}")
        made = {spec.reco for spec in specs.values() if spec.rules.gen_matched}
        for name, spec in list(specs.items()):
            if not spec.rules.gen_matched and spec.reco not in made:
                if name in asked and asked[name] not in (None, True, "default"):
                    partners = [n for n in known_specs() if get_spec(n).reco == spec.reco and get_spec(n).rules.gen_matched]
                    raise UserError(f"FlashSim({name}=...) adds objects without a Gen counterpart to the FlashSim "
                                    f"{spec.reco} collection: it needs FlashSim {' or '.join(partners) or spec.reco} too, "
                                    f"a Gen-matched model of {spec.reco} ({'/'.join(partners) or 'its'}=False keeps "
                                    f"the file's own {spec.reco} collection)")
                del specs[name]
        # Gen-matched objects first, then per-event ones (their order in each collection)
        order = sorted(specs, key=lambda name: not specs[name].rules.gen_matched)
        self.model_paths: dict[str, str] = {name: str(paths[name]) for name in order}
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise UserError(f"FlashSim(threads=...) must be an integer ≥ 1 (torch CPU threads per worker), got {threads!r}")
        self.threads = int(threads)
        self.device = str(device)
        self.precision = check_precision(precision)  # fail here, not on every worker

    def __repr__(self) -> str:
        return f"FlashSim({', '.join(f'{name}={path!r}' for name, path in self.model_paths.items())})"

    # -- models (lazy, cached per process) ---------------------------------------------------
    def _bundle(self, name: str):
        import torch

        from .flows.bundle import load_bundle

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        return load_bundle(self.model_paths[name], self.device, self.precision)  # its spec: checked in __init__

    def collection_models(self) -> dict[str, list[Any]]:
        """The loaded model bundles (:class:`~flashsim_coffea.flows.bundle.ModelBundle`) per reco
        collection, in the order their objects are concatenated before the pT sort."""
        out: dict[str, list[Any]] = {}
        for name in self.model_paths:
            bundle = self._bundle(name)
            out.setdefault(bundle.spec.reco, []).append(bundle)
        return out

    def models(self) -> dict[str, Any]:
        """The loaded flows keyed by their reco collection: the first of each (Gen-matched) one;
        all of them, with efficiency and count models: :meth:`collection_models`."""
        return {reco: bundles[0].flow for reco, bundles in self.collection_models().items()}

    def provenance(self) -> dict[str, dict[str, Any]]:
        """Per simulated object: its folder, whether it is the shipped one, and the SHA-256 of its
        card, weights, efficiency map and count model (which FlashSim made the numbers)."""
        from .flows.bundle import model_record

        return {name: model_record(name, path) for name, path in self.model_paths.items()}

    def required_branches(self) -> list[str]:
        out: set[str] = set()
        for bundles in self.collection_models().values():
            for bundle in bundles:
                out.update(bundle.spec.gen_branches())
        return sorted(out)

    def check(self, events, filename: str = "<events>") -> None:
        """Raise :class:`MissingBranchesError` naming the Gen branches ``events`` lacks."""
        missing = [b for b in self.required_branches() if not has_branch(events, b)]
        if missing:
            raise MissingBranchesError(filename, missing, "run FlashSim (it simulates reco objects from Gen collections)")

    # -- injection ---------------------------------------------------------------------------
    def prepare(self, events, need: Mapping[str, Need | Mapping[str, Any]] | None = None) -> "PreparedChunk":
        """Per-chunk preparation of every collection (conditioning, keys, acceptance): see module
        docstring. ``need``: per reco collection what the analysis reads (:class:`Need`), e.g.
        ``{"Muon": Need(min_pt=20, min_count=2), "Jet": Need(min_pt=25)}`` — FlashSim then prepares
        and draws only the events where every collection with a ``min_count`` can reach it
        (:attr:`PreparedChunk.candidates`; the other events get no objects at all), and only the
        objects that can have reco pT > ``min_pt``: Gen objects whose reco pT bound
        (:meth:`PreparedChunk.reachable_per_event`) does not exceed it are not drawn, and every
        drawn object at or below it is dropped. Exact for an analysis that reads nothing else: its
        objects are the same, with the same values (the noise is keyed on object identity)."""
        meta = getattr(events, "metadata", None) or {}
        self.check(events, str(meta.get("filename", "<events>")))
        chunk = PreparedChunk(events, self.collection_models())
        if need:
            chunk.stage(need)
        return chunk

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

    _candidates: np.ndarray | None = field(default=None, repr=False)

    @property
    def collections(self) -> list[str]:
        """Reco collections simulated (``"Jet"``, ``"Muon"``)."""
        return list(self.models)

    @property
    def candidates(self) -> np.ndarray:
        """Per event of the chunk: whether it can meet the analysis' needs (:meth:`stage`); all True
        without needs. Pairs of the other events cannot be simulated."""
        return self._candidates if self._candidates is not None else np.ones(len(self.events), dtype=bool)

    def stage(self, need: Mapping[str, "Need | Mapping[str, Any]"]) -> None:
        """Prepare only what an analysis with these needs reads (:meth:`FlashSim.prepare`): the
        events where every collection with a ``min_count`` can have that many objects above its
        ``min_pt`` (a Gen-level bound; a collection with objects without a Gen counterpart has no
        bound and restricts nothing), and in every collection only the objects above its ``min_pt``."""
        needs = {reco: Need.of(v) for reco, v in need.items()}
        for reco in needs:
            self._models_of(reco)  # a collection FlashSim does not simulate: a clear error
        ok = np.ones(len(self.events), dtype=bool)
        for reco, nd in needs.items():
            if nd.min_count > 0 and all(m.spec.rules.gen_matched for m in self.models[reco]):
                min_pt = -np.inf if nd.min_pt is None else nd.min_pt
                ok &= self.reachable_per_event(reco, min_pt) >= nd.min_count
        self._candidates = ok
        entries = np.flatnonzero(ok)
        for reco in self.collections:
            self.restrict(reco, entries, min_pt=needs.get(reco, Need()).min_pt)

    def restrict(self, collection: str, entries, min_pt: float | None = None) -> None:
        """Prepare ``collection`` only for the chunk's events ``entries`` (indices); simulating a
        pair of another event then raises. With ``min_pt``, the collection gives only objects with
        reco pT > ``min_pt``: Gen objects whose reco pT cannot exceed it (Gen pT × the model's
        largest pT ratio, as in :meth:`reachable_per_event`) are not drawn (``n_gen_below_min_pt``),
        drawn objects at or below it are dropped (``n_below_min_pt``); the other objects keep their
        values (keyed noise). :meth:`stage` calls it from an analysis' needs."""
        entries = np.unique(np.asarray(entries, dtype=np.int64))
        sub = self.events[entries]
        preps = [_prepare(model, sub, self._context(model).subset(entries), min_pt)
                 for model in self._models_of(collection)]
        for model, prep in zip(self._models_of(collection), preps):
            if model.spec.rules.gen_matched:  # global Gen indices refer to the chunk's events, not the subset's
                prep["src_offsets"] = self._gen_offsets(model)[entries]
            prep["min_pt"] = min_pt
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
            if not model.spec.rules.gen_matched:
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
            self._prepared[collection] = (None, [_prepare(m, self.events, self._context(m), offsets=self._gen_offsets(m) if m.spec.rules.gen_matched else None)
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
            top = model.flow.pre.max_value(t.name) * (1.0 + 2.0**-9)
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
    if not spec.rules.gen_matched:
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
        # non-finite objects first (NaN fails every acceptance cut), the acceptance among the finite ones
        "n_outside": count_per_event(finite & ~accept, counts),
        "n_nonfinite": count_per_event(~finite, counts),
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
    eff = model.efficiency
    if eff is not None:  # reconstruction efficiency, drawn per (object, fold)
        ok = eff.keep(prep["gen"]["pt"][rows], prep["gen"]["eta"][rows], model.flow.seed, row_keys, fold)
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
    count = model.count
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
    objects = _gen_objects if rules.gen_matched else _unmatched_objects
    out_counts, cond, row_keys, fold, gen = objects(model, prep, batch, info)
    with warnings.catch_warnings():
        # redraws outside the training support are routine: counted in info, not warned per chunk
        warnings.simplefilter("ignore", UserWarning)
        targets, sample_info = model.flow.sample(cond, row_keys, fold=fold, return_info=True)
    info["n_out_of_range_cond"] += int(sample_info["n_out_of_range_cond"])
    for k in ("n_redrawn", "n_fallback"):
        info[k] = int(sample_info[k])
    n = len(row_keys["object"])
    fields = spec.rebuild(targets, gen)
    # the match index: the Gen object's, −1 (NanoAOD's "no match") for objects without one
    fields[spec.match] = np.maximum(row_keys["object"], -1).astype(np.int32)
    fields = spec.complete(fields, gen, n)

    # global index for matched_gen: coffea resolves it in the Gen collection of the
    # *originally constructed* chunk (``events._events()``), so offsets are those of the
    # chunk's rows of the pairs' events (skimmed or not); −1 stays −1 (matched_gen: None)
    idx = fields[spec.match]
    offsets = np.repeat(prep["src_offsets"][batch.entry], out_counts) if rules.gen_matched else 0
    fields[f"{spec.match}G"] = np.where(idx >= 0, idx.astype(np.int64) + offsets, -1)
    if rules.min_pt is not None:
        above = fields["pt"] > rules.min_pt
        info["n_below_threshold"] = int((~above).sum())
        out_counts = count_per_event(above, out_counts)
        fields = {k: v[above] for k, v in fields.items()}
    if prep.get("min_pt") is not None:  # what the analysis reads (PreparedChunk.restrict)
        above = fields["pt"] > prep["min_pt"]
        info["n_below_min_pt"] = int((~above).sum())
        out_counts = count_per_event(above, out_counts)
        fields = {k: v[above] for k, v in fields.items()}
    info["n_reco"] = int(out_counts.sum())
    return jagged_records(fields, out_counts), info
