"""Object and event selection of the VBF H→μμ analysis (CMS, JHEP 01 (2021) 148), as the seed
used it (DESIGN.md). Inputs are jagged NanoAOD-like collections (awkward records with the
NanoAOD field names); outputs are boolean masks. No Python loops over events.

Muons
    pfRelIso04_all < 0.25, mediumId, pT > 20 GeV, |η| < 2.4.
Dimuon
    ≥ 2 selected muons, and the two leading (pT-ordered) selected muons have opposite charge.
    (The seed's "≥ 2 opposite-charge muons"; CMS additionally requires exactly two and a
    trigger-matched leading muon, which the seed did not apply.)
Jets
    pT > 25 GeV; pile-up ID loose (puId ≥ 4) required only for pT < 50 GeV; tight jet ID
    (jetId bit 2 set, i.e. jetId ∈ {2, 6}); |η| < 4.7; ΔR > 0.4 from every selected muon.
VBF
    ≥ 2 selected jets, leading pT > 35 GeV, subleading pT > 25 GeV, m_jj > 400 GeV,
    |Δη_jj| > 2.5 (j1, j2 = the two leading selected jets).
Mass regions
    signal region (SR) 115 ≤ m_μμ < 135 GeV; sideband (SB) [110, 115) ∪ [135, 150) GeV; the
    preselection region is 110 ≤ m_μμ < 150 GeV with the dimuon and ≥ 2 jets but no VBF cuts.
    Intervals are half-open so that SR and SB partition the 110–150 window exactly (the
    cutflow conserves events).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

__all__ = [
    "MUON_CUTS",
    "JET_CUTS",
    "VBF_CUTS",
    "MASS_WINDOWS",
    "select_muons",
    "select_jets",
    "clean_mask",
    "in_window",
    "signal_region",
    "sideband",
    "mass_window",
]

MUON_CUTS = {"pt": 20.0, "abs_eta": 2.4, "pfRelIso04_all": 0.25}
JET_CUTS = {"pt": 25.0, "abs_eta": 4.7, "puid_max_pt": 50.0, "puid_loose": 4, "jetid_tight_bit": 2, "dr_muon": 0.4}
VBF_CUTS = {"lead_pt": 35.0, "sublead_pt": 25.0, "mjj": 400.0, "abs_deta": 2.5}
MASS_WINDOWS = {"SR": ((115.0, 135.0),), "SB": ((110.0, 115.0), (135.0, 150.0)), "presel": ((110.0, 150.0),)}


def select_muons(muons: ak.Array) -> ak.Array:
    """Jagged mask: pfRelIso04_all < 0.25 & mediumId & pT > 20 & |η| < 2.4."""
    c = MUON_CUTS
    return (
        (muons.pfRelIso04_all < c["pfRelIso04_all"])
        & ak.values_astype(muons.mediumId, bool)
        & (muons.pt > c["pt"])
        & (abs(muons.eta) < c["abs_eta"])
    )


def clean_mask(jets: ak.Array, muons: ak.Array, dr: float = JET_CUTS["dr_muon"]) -> ak.Array:
    """Jagged mask over jets: ΔR(jet, μ) > ``dr`` for every muon in ``muons`` (same events).

    ΔR² = Δη² + Δφ² with Δφ wrapped into [−π, π); computed on all (jet, muon) pairs of each
    event with ``ak.cartesian(nested=True)``.
    """
    pairs = ak.cartesian({"j": jets[["eta", "phi"]], "m": muons[["eta", "phi"]]}, axis=1, nested=True)
    dphi = (pairs.j.phi - pairs.m.phi + np.pi) % (2 * np.pi) - np.pi
    dr2 = (pairs.j.eta - pairs.m.eta) ** 2 + dphi**2
    return ak.all(dr2 > dr * dr, axis=2)


def select_jets(jets: ak.Array, selected_muons: ak.Array) -> ak.Array:
    """Jagged mask: pT > 25 & (puId ≥ 4 or pT ≥ 50) & tight jetId & |η| < 4.7 & ΔR > 0.4 from muons."""
    c = JET_CUTS
    return (
        (jets.pt > c["pt"])
        & ((jets.puId >= c["puid_loose"]) | (jets.pt >= c["puid_max_pt"]))
        & ((ak.values_astype(jets.jetId, np.int64) & c["jetid_tight_bit"]) != 0)
        & (abs(jets.eta) < c["abs_eta"])
        & clean_mask(jets, selected_muons)
    )


def in_window(mass: np.ndarray, windows: tuple[tuple[float, float], ...]) -> np.ndarray:
    """m in any half-open interval [lo, hi) of ``windows`` (NaN → False)."""
    mass = np.asarray(mass)
    out = np.zeros(mass.shape, dtype=bool)
    for lo, hi in windows:
        out |= (mass >= lo) & (mass < hi)
    return out


def signal_region(mass: np.ndarray) -> np.ndarray:
    """115 ≤ m_μμ < 135 GeV."""
    return in_window(mass, MASS_WINDOWS["SR"])


def sideband(mass: np.ndarray) -> np.ndarray:
    """110 ≤ m_μμ < 115 or 135 ≤ m_μμ < 150 GeV."""
    return in_window(mass, MASS_WINDOWS["SB"])


def mass_window(mass: np.ndarray) -> np.ndarray:
    """110 ≤ m_μμ < 150 GeV (SR ∪ SB, and the preselection window)."""
    return in_window(mass, MASS_WINDOWS["presel"])
