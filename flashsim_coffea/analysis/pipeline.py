"""The analysis chain on one chunk: objects → candidates → variables → selection → DNN.

Shared by the coffea processor and the DNN training so that the selection and the variables
are written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
from coffea.analysis_tools import PackedSelection

from .candidates import Candidates, build_candidates
from .dnn import dnn_atanh, dnn_inputs, load_dnn
from .selection import SELECTION_STEPS, cutflow_masks, event_selection, region_masks
from .variables import compute_variables

__all__ = ["AnalysisResult", "analyse"]


@dataclass
class AnalysisResult:
    """Per-event arrays of one chunk.

    ``variables``: name → float64 array (incl. ``dnn_atanh`` if requested); ``cutflow``: step →
    cumulative mask (:data:`~.selection.CUTFLOW_STEPS`); ``regions``: region → mask;
    ``selection``: the :class:`~coffea.analysis_tools.PackedSelection` they come from.
    """

    candidates: Candidates
    variables: dict[str, np.ndarray]
    cutflow: dict[str, np.ndarray]
    regions: dict[str, np.ndarray]
    selection: PackedSelection | None = None

    def coffea_cutflow(self, weights=None):
        """coffea's :class:`~coffea.analysis_tools.Cutflow` over :data:`~.selection.SELECTION_STEPS`
        (``weights``: an optional :class:`~coffea.analysis_tools.Weights`); its
        ``result().nevcutflow`` equals the counts of :attr:`cutflow`, ``all`` first."""
        return self.selection.cutflow(*SELECTION_STEPS, weights=weights)


def analyse(muons: ak.Array, jets: ak.Array, dnn: bool | str | Path = True) -> AnalysisResult:
    """Run the selection and compute the variables; ``dnn``: False, True (shipped model) or a model directory.

    ``muons``, ``jets``: the collections of :mod:`.objects` (``reco_muons``/``reco_jets`` or
    ``gen_muons``/``gen_jets``). The DNN is evaluated on events with the dimuon and ≥ 2 jets
    (the ``two_jets`` cutflow step, where all 25 inputs are defined; it covers every region),
    ``dnn_atanh`` is NaN elsewhere.
    """
    cand = build_candidates(muons, jets)
    variables = compute_variables(cand)
    selection = event_selection(cand, variables)
    cutflow = cutflow_masks(selection)
    regions = region_masks(selection)
    if dnn is not False:
        model = load_dnn(None if dnn is True else dnn)
        sel = cutflow["two_jets"]
        out = np.full(len(cand), np.nan)
        if sel.any():
            out[sel] = dnn_atanh(model.score(dnn_inputs(variables)[sel]))
        variables["dnn_atanh"] = out
    return AnalysisResult(cand, variables, cutflow, regions, selection)
