"""``VBFHmmProcessor``: the VBF H→μμ analysis as a coffea processor.

Modes (where the analysis' ``Muon`` and ``Jet`` come from):

* ``"fullsim"`` — the file's reconstructed Jet/Muon (reference simulation or real CMS NanoAOD);
* ``"flashsim"`` — FlashSim muons and jets simulated from GenPart/GenJet by ``self.flashsim``
  (a :class:`flashsim_coffea.inject.FlashSim`, which carries only model paths and loads the
  models lazily on each worker);
* ``"gen"`` — Gen-level muons and jets (see :mod:`flashsim_coffea.analysis`).

``process()`` reads like the analysis, per fold batch of (event, fold) pairs
(:func:`flashsim_coffea.folds.fold_batches`; one batch of one fold outside flashsim mode):
muons → dimuon selection → jets, only for the dimuon pairs → jet selection and cleaning → VBF
cuts → SR/SB → variables → DNN (``DNN18Atan`` = atanh(score), histogram ``dnn_atanh``) →
:class:`~flashsim_coffea.hists.FoldFiller` → fill; the cutflow from one coffea
``PackedSelection`` over the batch's pairs. In flashsim mode the processor states what it reads
(:data:`FLASHSIM_NEEDS`: muons above 20 GeV in events with two of them, jets above 25 GeV) and
FlashSim draws nothing else (``FlashSim.prepare(events, need=...)``); histograms are
bit-identical to simulating everything (``staged=False``).

Output (per dataset name, from ``events.metadata["dataset"]``)::

    {"hists":   {"presel"|"SR"|"SB": {variable: hist.Hist | FoldHist}},
     "cutflow": {step: entries (int)},  "cutflow_weighted": {step: Σ w},
     "sumw": Σ w,  "nevents": events read,  "files": {filename: events read},
     "chunks": n,  "empty_chunks": n,  "nonfinite_genweight": n,
     "flashsim": {"Jet"|"Muon": {count: n}}   (flashsim mode: flashsim_coffea.inject.INFO_COUNTS)}

With ``folds = N > 1`` (flashsim only) each Gen event is simulated N times and each (event,
fold) pair carries weight w/N (:func:`flashsim_coffea.folds.fold_weight`, the convention of
``FlashSim.inject(folds=N)``), so ``cutflow_weighted`` and the histograms are yields of the Gen
sample; histograms are :class:`flashsim_coffea.hists.FoldHist` keyed by (run,
luminosityBlock, event), and ``cutflow`` counts fold entries (N per Gen event: divide by N for
Gen events; kept undivided so that the counts are exact integers). ``sumw`` and ``nevents``
count the Gen events read. Event weights w = genWeight · norm_weight (coffea
``Weights``; :func:`event_weights`), 1 for data.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
from coffea import processor
from coffea.analysis_tools import Weights

from flashsim_coffea.analysis import objects as obj
from flashsim_coffea.analysis import (CUTFLOW_STEPS, DIMUON_STEPS, REGIONS, SELECTION_STEPS, VARIABLES, analyse, axis_for,
                                     cutflow_masks, dimuon_cuts, scattered_selection)
from flashsim_coffea.analysis.selection import JET_CUTS, MUON_CUTS
from flashsim_coffea.errors import MissingBranchesError, UserError
from flashsim_coffea.folds import FoldBatch, check_folds, fold_batches, fold_weight
from flashsim_coffea.hists import FoldFiller, fold_hist_or_hist
from flashsim_coffea.nanoaod.conventions import EVENT_ID

__all__ = ["VBFHmmProcessor", "MODES"]

MODES = ("fullsim", "flashsim", "gen")

#: what the selection reads of FlashSim's collections (``FlashSim.prepare(events, need=...)``):
#: muons above the muon pT cut, in events with at least two; jets above the jet pT cut
FLASHSIM_NEEDS = {"Muon": {"min_pt": MUON_CUTS["pt"], "min_count": 2}, "Jet": {"min_pt": JET_CUTS["pt"]}}


class VBFHmmProcessor(processor.ProcessorABC):
    """VBF H→μμ selection, variables, DNN and histograms (module docstring).

    Parameters
    ----------
    mode: ``"fullsim"``, ``"flashsim"`` or ``"gen"``.
    folds: FlashSim upsampling factor N ≥ 1 (N > 1 only in flashsim mode).
    dnn: ``True`` (shipped model), ``False`` (no DNN histogram) or a model folder.
    flashsim: the :class:`~flashsim_coffea.inject.FlashSim` of flashsim mode (default: the
        shipped models, ``FlashSim()``).
    max_fold_events: with folds, simulate and analyse at most this many (event, fold) pairs
        at a time (``FlashSim.inject_batches``; the conditioning is still computed once per
        chunk): bounds the memory at large ``folds``; ``None``: all folds at once. The
        histograms do not depend on it.
    staged: flashsim mode simulates muons only in events where two can pass the muon pT cut, and
        only the muons that can pass it, and jets only for the (event, fold) pairs that pass the
        dimuon selection (default); ``False`` simulates every Gen muon and jet and selects
        afterwards — the same histograms bit for bit (the noise is keyed on object identity), slower.
    """

    def __init__(self, mode: str = "fullsim", folds: int = 1, dnn: bool | str | Path = True, flashsim: Any = None,
                 max_fold_events: int | None = 200_000, staged: bool = True):
        if mode not in MODES:
            raise UserError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        folds = check_folds(folds)
        if folds > 1 and mode != "flashsim":
            raise UserError(f"folds = {folds} needs mode 'flashsim' (only FlashSim can reconstruct an event several times)")
        self.mode, self.folds = mode, int(folds)
        self.dnn = str(dnn) if isinstance(dnn, Path) else dnn
        self.max_fold_events = max_fold_events
        self.staged = bool(staged)
        if flashsim is not None and mode != "flashsim":
            raise UserError(f"a FlashSim was given but mode is {mode!r}; use mode 'flashsim'")
        if mode == "flashsim" and flashsim is None:
            from flashsim_coffea.inject import FlashSim

            flashsim = FlashSim()
        self.flashsim = flashsim

    # -- input requirements ---------------------------------------------------------------------
    def required_branches(self, available: set[str] | None = None) -> list[str]:
        """Flat NanoAOD branch names the mode reads (checked up front by ``flashsim run``); in
        fullsim mode they depend on the NanoAOD version, decided from the ``available`` branches
        (:func:`flashsim_coffea.analysis.reco_branches`; Run-2 names when not given)."""
        if self.mode == "fullsim":
            if available is not None:
                return obj.reco_branches(available)
            cols = {"Muon": obj.MUON_FIELDS, "Jet": obj.JET_FIELDS}
        elif self.mode == "gen":
            cols = obj.GEN_FIELDS
        else:
            sim = self.flashsim
            gen = list(sim.required_branches())
            return gen + list(EVENT_ID) if self.folds > 1 else gen
        return [f"{c}_{f}" for c, fields in cols.items() for f in fields]

    def check(self) -> None:
        """Driver-side checks before any work (a UserError naming what is wrong): the DNN model's
        card, inputs and weight checksum; the FlashSim flow models are checked by ``FlashSim``."""
        if self.dnn is not False:
            from flashsim_coffea.analysis.dnn import check_dnn

            check_dnn(None if self.dnn is True else self.dnn)
        if self.flashsim is not None:
            self.flashsim.required_branches()  # loads (and so checks) the flow models

    def simulation_folds(self) -> int | None:
        """The upsampling factor N in flashsim mode, else None (the runner then checks the inputs of
        a simulation: not already folded, no repeated event identity with N > 1)."""
        return self.folds if self.mode == "flashsim" else None

    def missing_branches(self, available: set[str]) -> list[str]:
        """The :meth:`required_branches` absent from ``available``."""
        try:
            needed = self.required_branches(set(available))
        except MissingBranchesError as err:
            return list(err.missing)
        return [b for b in needed if b not in available]

    # -- output skeleton ----------------------------------------------------------------------
    def empty_output(self) -> dict:
        hists = {
            region: {
                var: fold_hist_or_hist(axis_for(var), folds=self.folds)
                for var in VARIABLES
                if self.dnn is not False or var != "dnn_atanh"
            }
            for region in REGIONS
        }
        return {
            "hists": hists,
            "cutflow": {s: 0 for s in CUTFLOW_STEPS},
            "cutflow_weighted": {s: 0.0 for s in CUTFLOW_STEPS},
            "sumw": 0.0,
            "nevents": 0,
            "files": {},
            "chunks": 1,
            "empty_chunks": 0,
        }

    # -- the analysis ---------------------------------------------------------------------------
    def process(self, events) -> dict:
        """One chunk: muons → dimuon selection → jets only for the dimuon (event, fold) pairs →
        jet and VBF selection, variables, DNN → histograms (module docstring)."""
        meta = getattr(events, "metadata", None) or {}
        dataset = str(meta.get("dataset", "unknown"))
        out = self.empty_output()
        n = len(events)
        out["files"] = {str(meta.get("filename", "unknown")): n}
        out["nevents"] = n
        if n == 0:
            out["empty_chunks"] = 1
            return {dataset: out}
        weight, n_bad_weights = event_weights(events)
        out["sumw"] = float(np.sum(weight))
        out["nonfinite_genweight"] = n_bad_weights
        pair_weight = fold_weight(weight, self.folds)  # each (event, fold) pair: w / N
        source = _ObjectSource(self, events)
        filler = FoldFiller(self.folds)
        max_pairs = self.max_fold_events if self.mode == "flashsim" else None
        for batch in fold_batches(n, self.folds, max_pairs):
            # muons only where two can pass their cuts (FlashSim's staging); the other pairs fail two_muons
            candidates = source.candidates(batch)
            muons = source.muons(batch.subset(candidates))
            dimuon_cuts_ = dimuon_cuts(muons)
            dimuon = _scatter(dimuon_cuts_["two_muons"] & dimuon_cuts_["opposite_charge"], candidates)
            pairs = batch.subset(dimuon)
            jets = source.jets(pairs) if self.staged else source.jets(batch)[dimuon]
            res = analyse(muons[dimuon[candidates]], jets, dnn=self.dnn)
            # one PackedSelection over the batch's pairs: the dimuon steps where muons exist, the
            # others where the dimuon passed (False elsewhere), and the cutflow from it
            later = {step: res.selection.all(step) for step in SELECTION_STEPS if step not in DIMUON_STEPS}
            cutflow = cutflow_masks(scattered_selection(len(batch), (candidates, dimuon_cuts_), (dimuon, later)))
            w_all, w = pair_weight[batch.entry], pair_weight[pairs.entry]
            for step in CUTFLOW_STEPS:
                out["cutflow"][step] += int(cutflow[step].sum())
                out["cutflow_weighted"][step] += float(w_all[cutflow[step]].sum())
            key = pairs.key(events) if self.folds > 1 else ()
            for region, mask in res.regions.items():
                if mask.any():
                    filler.add(region, pairs.entry[mask], pairs.fold[mask], tuple(k[mask] for k in key), w[mask],
                               **{var: res.variables[var][mask] for var in out["hists"][region]})
        for region, hists in out["hists"].items():
            filler.fill(region, hists)
        if source.chunk is not None:
            out["flashsim"] = source.chunk.info
        return {dataset: out}

    def postprocess(self, accumulator):
        return accumulator


def event_weights(events) -> tuple[np.ndarray, int]:
    """Per-event weights w = genWeight · norm_weight (coffea ``Weights``; 1 for data), and the
    number of events whose genWeight is not finite — they get weight 0 (warned), so one bad
    value never turns every sum into NaN. ``norm_weight`` = σ·L/Σw comes from the dataset's
    metadata when the run is normalised (:mod:`flashsim_coffea.runner`), else 1."""
    n = len(events)
    weights = Weights(n, storeIndividual=False)
    n_bad = 0
    if "genWeight" in events.fields:
        gw = ak.to_numpy(events.genWeight).astype(np.float64)
        bad = ~np.isfinite(gw)
        n_bad = int(bad.sum())
        if n_bad:
            meta = getattr(events, "metadata", None) or {}
            warnings.warn(f"{meta.get('filename', '<events>')}: {n_bad} events with non-finite genWeight get weight 0 "
                          "(counted in the output's 'nonfinite_genweight')", stacklevel=2)
            gw = np.where(bad, 0.0, gw)
        weights.add("genWeight", gw)
    norm = float((getattr(events, "metadata", None) or {}).get("norm_weight", 1.0))
    if norm != 1.0:
        weights.add("norm", np.full(n, norm))
    return (weights.weight() if weights.weightStatistics else np.ones(n)), n_bad


def _scatter(mask: np.ndarray, where: np.ndarray) -> np.ndarray:
    """A boolean per pair of the batch: ``mask`` at the pairs ``where`` is true, False elsewhere."""
    out = np.zeros(len(where), dtype=bool)
    out[where] = mask
    return out


class _ObjectSource:
    """Where the analysis' muons and jets come from, per (event, fold) pair: the file's reco
    collections (fullsim), Gen-level stand-ins (gen), or FlashSim, told what the analysis reads
    (:data:`FLASHSIM_NEEDS`: it draws muons only in events where two can pass their pT cut, and
    only muons and jets above their pT cuts; jets only for the pairs asked for)."""

    def __init__(self, proc: VBFHmmProcessor, events):
        self.mode, self.events = proc.mode, events
        self.chunk = (proc.flashsim.prepare(events, need=FLASHSIM_NEEDS if proc.staged else None)
                      if proc.mode == "flashsim" else None)

    def candidates(self, batch: FoldBatch) -> np.ndarray:
        """Pairs of ``batch`` that can meet the selection's needs (FlashSim's staging; else all)."""
        if self.chunk is None:
            return np.ones(len(batch), dtype=bool)
        return self.chunk.candidates[batch.entry]

    def muons(self, batch: FoldBatch):
        if self.chunk is not None:  # not attached to the events: the analysis reads no cross-reference
            return self.chunk.simulate("Muon", batch, attach=False)
        return batch.take(obj.reco_muons(self.events) if self.mode == "fullsim" else obj.gen_muons(self.events))

    def jets(self, batch: FoldBatch):
        if self.chunk is not None:
            return self.chunk.simulate("Jet", batch, attach=False)
        return batch.take(obj.reco_jets(self.events) if self.mode == "fullsim" else obj.gen_jets(self.events))
