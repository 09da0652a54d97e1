"""Event selection: the cumulative cutflow and the analysis regions.

Cutflow steps (each mask includes all previous ones, so counts never increase):

    all → two_muons (≥ 2 selected muons) → opposite_charge (μ1, μ2) → two_jets (≥ 2 selected
    jets) → jet_pt (pT(j1) > 35, pT(j2) > 25) → mjj (> 400 GeV) → detajj (|Δη_jj| > 2.5)
    → mass_window (110 ≤ m_μμ < 150)

Regions: ``SR`` = VBF & 115 ≤ m_μμ < 135; ``SB`` = VBF & m_μμ ∈ [110, 115) ∪ [135, 150)
(SR and SB partition the last cutflow step); ``presel`` = dimuon & ≥ 2 jets &
110 ≤ m_μμ < 150, without the VBF cuts.
"""

from __future__ import annotations

import numpy as np

from .candidates import Candidates
from .selection import VBF_CUTS, mass_window, sideband, signal_region

__all__ = ["CUTFLOW_STEPS", "REGIONS", "cutflow_masks", "region_masks"]

CUTFLOW_STEPS = ("all", "two_muons", "opposite_charge", "two_jets", "jet_pt", "mjj", "detajj", "mass_window")
REGIONS = ("presel", "SR", "SB")


def cutflow_masks(c: Candidates, variables: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cumulative boolean masks, one per :data:`CUTFLOW_STEPS` entry."""
    v = VBF_CUTS
    with np.errstate(invalid="ignore"):
        cuts = {
            "all": np.ones(len(c), dtype=bool),
            "two_muons": c.n_muons >= 2,
            "opposite_charge": c.opposite_charge,
            "two_jets": c.n_jets >= 2,
            "jet_pt": (c.j1["pt"] > v["lead_pt"]) & (c.j2["pt"] > v["sublead_pt"]),
            "mjj": variables["mjj"] > v["mjj"],
            "detajj": variables["detajj"] > v["abs_deta"],
            "mass_window": mass_window(variables["mass"]),
        }
    out, acc = {}, np.ones(len(c), dtype=bool)
    for step in CUTFLOW_STEPS:
        acc = acc & cuts[step]
        out[step] = acc
    return out


def region_masks(c: Candidates, variables: dict[str, np.ndarray], cutflow: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Masks of the ``presel``, ``SR`` and ``SB`` regions (module docstring)."""
    cf = cutflow if cutflow is not None else cutflow_masks(c, variables)
    vbf = cf["mass_window"]
    m = variables["mass"]
    return {
        "presel": cf["opposite_charge"] & (c.n_jets >= 2) & mass_window(m),
        "SR": vbf & signal_region(m),
        "SB": vbf & sideband(m),
    }
