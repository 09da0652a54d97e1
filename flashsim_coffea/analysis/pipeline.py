"""The analysis chain on one chunk: objects → candidates → variables → cutflow/regions → DNN.

Shared by the coffea processor and the DNN training so that the selection and the variables
are written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np

from .candidates import Candidates, build_candidates
from .dnn import dnn_atanh, dnn_inputs, load_dnn
from .events import cutflow_masks, region_masks
from .variables import compute_variables

__all__ = ["AnalysisResult", "analyse"]


@dataclass
class AnalysisResult:
    """Per-event arrays of one chunk: variables (incl. ``dnn_atanh`` if requested), masks."""

    candidates: Candidates
    variables: dict[str, np.ndarray]
    cutflow: dict[str, np.ndarray]
    regions: dict[str, np.ndarray]


def analyse(muons: ak.Array, jets: ak.Array, dnn: bool | str | Path = True) -> AnalysisResult:
    """Run the selection and compute the variables; ``dnn``: False, True (shipped model) or a model directory.

    The DNN is evaluated on events with the dimuon and ≥ 2 jets (the ``two_jets`` cutflow
    step, where all 25 inputs are defined; it covers every region), ``dnn_atanh`` is NaN
    elsewhere.
    """
    cand = build_candidates(muons, jets)
    variables = compute_variables(cand)
    cutflow = cutflow_masks(cand, variables)
    regions = region_masks(cand, variables, cutflow)
    if dnn is not False:
        model = load_dnn(None if dnn is True else dnn)
        sel = cutflow["two_jets"]
        out = np.full(len(cand), np.nan)
        if sel.any():
            out[sel] = dnn_atanh(model.score(dnn_inputs(variables)[sel]))
        variables["dnn_atanh"] = out
    return AnalysisResult(cand, variables, cutflow, regions)
