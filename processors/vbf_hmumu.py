"""``VBFHmmProcessor``: the VBF H→μμ analysis as a coffea processor.

Modes (where the analysis' ``Muon`` and ``Jet`` come from):

* ``"fullsim"`` — the file's reconstructed Jet/Muon (reference simulation or real CMS NanoAOD);
* ``"flashsim"`` — FlashSim jets and muons injected from GenJet/GenPart by
  ``self.flashsim`` (a :class:`flashsim_coffea.inject.FlashSim`, which carries only model paths
  and loads the models lazily on each worker);
* ``"gen"`` — Gen-level muons and jets (see :mod:`flashsim_coffea.analysis.objects`).

``process()`` runs: objects → muon selection → jet selection and cleaning → VBF cuts →
SR/SB → variables → DNN (``DNN18Atan`` = atanh(score), histogram ``dnn_atanh``) → fill.

Output (per dataset name, from ``events.metadata["dataset"]``)::

    {"hists":   {"presel"|"SR"|"SB": {variable: hist.Hist | FoldHist}},
     "cutflow": {step: entries (int)},  "cutflow_weighted": {step: Σ genWeight},
     "sumw": Σ genWeight,  "nevents": events read,  "files": {filename: events read},
     "chunks": n,  "empty_chunks": n}

With ``folds = N > 1`` (flashsim only) each Gen event is simulated N times; histograms are
:class:`flashsim_coffea.hists.FoldHist` keyed by (run, luminosityBlock, event), and the
cutflow counts fold entries (N per Gen event: divide by N for Gen events; kept undivided so
that the sums are exact and identical for every chunking and executor). ``sumw`` and
``nevents`` count the Gen events read. Event weights are ``genWeight`` (1 for data).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
from coffea import processor

from flashsim_coffea.analysis import objects as obj
from flashsim_coffea.analysis.events import CUTFLOW_STEPS, REGIONS
from flashsim_coffea.analysis.pipeline import analyse
from flashsim_coffea.analysis.variables import VARIABLES, axis_for
from flashsim_coffea.errors import UserError
from flashsim_coffea.hists import fill_any, fold_hist_or_hist

__all__ = ["VBFHmmProcessor", "MODES"]

MODES = ("fullsim", "flashsim", "gen")
EVENT_KEY = ("run", "luminosityBlock", "event")


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
    """

    def __init__(self, mode: str = "fullsim", folds: int = 1, dnn: bool | str | Path = True, flashsim: Any = None,
                 max_fold_events: int | None = 200_000):
        if mode not in MODES:
            raise UserError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 1:
            raise UserError(f"folds must be an integer ≥ 1, got {folds!r}")
        if folds > 1 and mode != "flashsim":
            raise UserError(f"folds = {folds} needs mode 'flashsim' (only FlashSim can reconstruct an event several times)")
        self.mode, self.folds = mode, int(folds)
        self.dnn = str(dnn) if isinstance(dnn, Path) else dnn
        self.max_fold_events = max_fold_events
        if flashsim is not None and mode != "flashsim":
            raise UserError(f"a FlashSim was given but mode is {mode!r}; use mode 'flashsim'")
        if mode == "flashsim" and flashsim is None:
            from flashsim_coffea.inject import FlashSim

            flashsim = FlashSim()
        self.flashsim = flashsim

    # -- input requirements ---------------------------------------------------------------------
    def required_branches(self) -> list[str]:
        """Flat NanoAOD branch names the mode reads (checked up front by ``flashsim run``)."""
        if self.mode == "fullsim":
            cols = {"Muon": obj.MUON_FIELDS, "Jet": obj.JET_FIELDS}
        elif self.mode == "gen":
            cols = obj.GEN_FIELDS
        else:
            sim = self.flashsim
            gen = list(sim.required_branches()) if hasattr(sim, "required_branches") else []
            return gen + list(EVENT_KEY) if self.folds > 1 else gen
        return [f"{c}_{f}" for c, fields in cols.items() for f in fields]

    def check(self) -> None:
        """Driver-side checks before any work (a UserError naming what is wrong): the DNN model's
        card, inputs and weight checksum; the FlashSim flow models are checked by ``FlashSim``."""
        if self.dnn is not False:
            from flashsim_coffea.analysis.dnn import check_dnn

            check_dnn(None if self.dnn is True else self.dnn)
        if self.flashsim is not None and hasattr(self.flashsim, "required_branches"):
            self.flashsim.required_branches()  # loads (and so checks) the flow models

    def missing_branches(self, available: set[str]) -> list[str]:
        """The :meth:`required_branches` absent from ``available``."""
        return [b for b in self.required_branches() if b not in available]

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
    def _collections(self, events):
        """(events, muons, jets) for the mode; flashsim may return N× more (folded) events."""
        if self.mode == "fullsim":
            return events, obj.reco_muons(events), obj.reco_jets(events)
        if self.mode == "gen":
            return events, obj.gen_muons(events), obj.gen_jets(events)
        events = self.flashsim.inject(events, folds=self.folds)
        return events, obj.reco_muons(events), obj.reco_jets(events)

    def _collection_batches(self, events):
        """Yield (events, muons, jets) per fold batch (one batch unless flashsim with many folds)."""
        if self.mode != "flashsim" or not hasattr(self.flashsim, "inject_batches"):
            yield self._collections(events)
            return
        for events_b, _ in self.flashsim.inject_batches(events, folds=self.folds, max_events=self.max_fold_events):
            yield events_b, obj.reco_muons(events_b), obj.reco_jets(events_b)

    @staticmethod
    def _weights(events) -> np.ndarray:
        if "genWeight" in events.fields:
            return ak.to_numpy(events.genWeight).astype(np.float64)
        return np.ones(len(events))

    def process(self, events) -> dict:
        meta = getattr(events, "metadata", None) or {}
        dataset = str(meta.get("dataset", "unknown"))
        out = self.empty_output()
        n = len(events)
        out["files"] = {str(meta.get("filename", "unknown")): n}
        out["nevents"] = n
        if n == 0:
            out["empty_chunks"] = 1
            return {dataset: out}
        out["sumw"] = float(np.sum(self._weights(events)))

        # per region: the selected entries of every fold batch, filled once at the end (a
        # FoldHist needs all folds of an event in one fill)
        selected: dict[str, list[dict[str, np.ndarray]]] = {region: [] for region in out["hists"]}
        for events_b, muons, jets in self._collection_batches(events):
            weight = self._weights(events_b)
            res = analyse(muons, jets, dnn=self.dnn)
            for step, mask in res.cutflow.items():
                out["cutflow"][step] += int(mask.sum())
                out["cutflow_weighted"][step] += float(weight[mask].sum())
            for region, mask in res.regions.items():
                if mask.any():
                    part = {var: res.variables[var][mask] for var in out["hists"][region]}
                    part["weight"] = weight[mask]
                    if self.folds > 1:
                        part.update({k: ak.to_numpy(events_b[k][mask]).astype(np.int64) for k in (*EVENT_KEY, "fold")})
                        part["entry"] = np.repeat(np.arange(n), len(events_b) // n)[mask]
                    selected[region].append(part)

        for region, parts in selected.items():
            if not parts:
                continue
            cols = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
            key = None
            if self.folds > 1:  # back to the event-major order of a single batch (exact sums)
                order = np.lexsort((cols["fold"], cols["entry"]))
                cols = {c: v[order] for c, v in cols.items()}
                key = tuple(cols[k] for k in EVENT_KEY)
            for var, h in out["hists"][region].items():
                fill_any(h, key=key, weight=cols["weight"], **{var: cols[var]})
        return {dataset: out}

    def postprocess(self, accumulator):
        return accumulator
