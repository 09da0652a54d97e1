"""Object cuts and event selection of the VBF H→μμ analysis (CMS, JHEP 01 (2021) 148), as the
reference FlashSim study used it (docs/analysis.md). Inputs are coffea NanoAOD collections (:mod:`.objects`); object cuts return jagged
boolean masks on them (the collections are never rebuilt), the event selection a coffea
:class:`~coffea.analysis_tools.PackedSelection`. No Python loops over events.

Muons
    pfRelIso04_all < 0.25, mediumId, pT > 20 GeV, |η| < 2.4.
Dimuon
    ≥ 2 selected muons, and the two leading (pT-ordered) selected muons have opposite charge.
    (The reference FlashSim study's "≥ 2 opposite-charge muons", docs/analysis.md; CMS additionally
    requires exactly two and a trigger-matched leading muon, which that study did not apply.)
Jets
    pT > 25 GeV; loose pile-up ID (``passPuId``) required only for pT < 50 GeV; tight jet ID
    (``passJetIdTight``); |η| < 4.7; ΔR > 0.4 from every selected muon. The IDs follow the
    file's NanoAOD version (:mod:`.objects`); Run 2: ``puId ≥ 4`` and ``jetId`` bit 1 (mask 2).
    ΔR is coffea's: ``jets.metric_table(muons, metric=delta_r2)``, kept where ΔR² > 0.4²
    (ΔR² = Δη² + Δφ², Δφ wrapped into [−π, π)).
VBF
    ≥ 2 selected jets, leading pT > 35 GeV, subleading pT > 25 GeV, m_jj > 400 GeV,
    |Δη_jj| > 2.5 (j1, j2 = the two leading selected jets).
Mass windows
    signal region 115 ≤ m_μμ < 135 GeV; sideband [110, 115) ∪ [135, 150) GeV; the full window
    110 ≤ m_μμ < 150 GeV. Half-open, so that SR and SB partition the window exactly.

Event selection: a :class:`~coffea.analysis_tools.PackedSelection` with one entry per
criterion (:data:`SELECTION_STEPS` plus ``signal_window`` and ``sideband_window``); each is
that criterion alone (NaN from a missing object → False). From it:

* cutflow (:data:`CUTFLOW_STEPS`): ``all`` → ``two_muons`` → ``opposite_charge`` →
  ``two_jets`` → ``jet_pt`` → ``mjj`` → ``detajj`` → ``mass_window``; step k is
  ``selection.all(*SELECTION_STEPS[:k])`` (cumulative, so counts never increase);
* regions (:data:`REGIONS`, requirements in :data:`REGION_CUTS`): ``presel`` = dimuon & ≥ 2 jets
  & mass window, without the VBF cuts; ``SR`` = all steps & signal window; ``SB`` = all steps
  & sideband window (SR and SB partition the last cutflow step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import awkward as ak
import numpy as np
from coffea.analysis_tools import PackedSelection

from .objects import add_jet_ids

if TYPE_CHECKING:
    from .candidates import Candidates

__all__ = [
    "MUON_CUTS",
    "JET_CUTS",
    "VBF_CUTS",
    "MASS_WINDOWS",
    "SELECTION_STEPS",
    "CUTFLOW_STEPS",
    "REGIONS",
    "REGION_CUTS",
    "select_muons",
    "select_jets",
    "clean_mask",
    "selected_muons",
    "selected_jets",
    "dimuon_mask",
    "dimuon_cuts",
    "dimuon_criteria",
    "DIMUON_STEPS",
    "scattered_selection",
    "opposite_charge",
    "in_window",
    "signal_region",
    "sideband",
    "mass_window",
    "event_selection",
    "cutflow_masks",
    "region_masks",
]

MUON_CUTS = {"pt": 20.0, "abs_eta": 2.4, "pfRelIso04_all": 0.25}
JET_CUTS = {"pt": 25.0, "abs_eta": 4.7, "puid_max_pt": 50.0, "dr_muon": 0.4}
VBF_CUTS = {"lead_pt": 35.0, "sublead_pt": 25.0, "mjj": 400.0, "abs_deta": 2.5}
MASS_WINDOWS = {"SR": ((115.0, 135.0),), "SB": ((110.0, 115.0), (135.0, 150.0)), "presel": ((110.0, 150.0),)}

#: the PackedSelection entries of the cutflow, in order (the cutflow adds ``all`` in front)
SELECTION_STEPS = ("two_muons", "opposite_charge", "two_jets", "jet_pt", "mjj", "detajj", "mass_window")
CUTFLOW_STEPS = ("all", *SELECTION_STEPS)
REGIONS = ("presel", "SR", "SB")
#: PackedSelection entries each region requires (all of them)
REGION_CUTS = {
    "presel": ("two_muons", "opposite_charge", "two_jets", "mass_window"),
    "SR": (*SELECTION_STEPS, "signal_window"),
    "SB": (*SELECTION_STEPS, "sideband_window"),
}


# --------------------------------------------------------------------------- objects
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

    coffea's ``jets.metric_table(muons, metric=delta_r2)`` gives ΔR² = Δη² + Δφ² (Δφ wrapped
    into [−π, π)) for every (jet, muon) pair; a jet is kept when ΔR² > dr² for all muons
    (always, when the event has none). Both need coffea's Lorentz-vector behaviour.
    """
    dr2 = jets.metric_table(muons, metric=lambda a, b: a.delta_r2(b))
    return ak.all(dr2 > dr * dr, axis=2)


def _with_ids(jets: ak.Array) -> ak.Array:
    """``jets`` as they are if they carry the policy fields, else with :func:`~.objects.add_jet_ids`."""
    return jets if "passJetIdTight" in ak.fields(jets) else add_jet_ids(jets)


def select_jets(jets: ak.Array, selected_muons: ak.Array) -> ak.Array:
    """Jagged mask: pT > 25 & (passPuId or pT ≥ 50) & passJetIdTight & |η| < 4.7 & ΔR > 0.4 from
    ``selected_muons``. Jets without the ID fields get them from :func:`~.objects.add_jet_ids`."""
    c = JET_CUTS
    jets = _with_ids(jets)
    return (
        (jets.pt > c["pt"])
        & (jets.passPuId | (jets.pt >= c["puid_max_pt"]))
        & jets.passJetIdTight
        & (abs(jets.eta) < c["abs_eta"])
        & clean_mask(jets, selected_muons)
    )


def _pt_ordered(objs: ak.Array) -> ak.Array:
    return objs[ak.argsort(objs.pt, axis=1, ascending=False)]


def selected_muons(muons: ak.Array) -> ak.Array:
    """The selected muons of every event, pT-ordered (a masked view of ``muons``)."""
    return _pt_ordered(muons[select_muons(muons)])


def selected_jets(jets: ak.Array, sel_muons: ak.Array) -> ak.Array:
    """The selected jets (cleaned against ``sel_muons``, the *selected* muons), pT-ordered."""
    jets = _with_ids(jets)
    return _pt_ordered(jets[select_jets(jets, sel_muons)])


def opposite_charge(n_muons: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """n_muons ≥ 2 and q1 · q2 < 0 (charges of the two leading selected muons, NaN if absent)."""
    with np.errstate(invalid="ignore"):
        return (np.asarray(n_muons) >= 2) & (np.asarray(q1) * np.asarray(q2) < 0)


#: the PackedSelection entries decided by the muons alone (the first cutflow steps)
DIMUON_STEPS = ("two_muons", "opposite_charge")


def dimuon_criteria(n_muons: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> dict[str, np.ndarray]:
    """The :data:`DIMUON_STEPS`, each on its own, from the number of selected muons and the charges
    of the two leading ones (NaN if absent): ``two_muons`` = n ≥ 2; ``opposite_charge`` = n ≥ 2 and
    q1 · q2 < 0. The one definition of the dimuon selection (:func:`dimuon_cuts`, :func:`event_selection`)."""
    return {"two_muons": np.asarray(n_muons) >= 2, "opposite_charge": opposite_charge(n_muons, q1, q2)}


def dimuon_cuts(muons: ak.Array) -> dict[str, np.ndarray]:
    """:func:`dimuon_criteria` per event from the muons alone (so they can be applied before any jet exists)."""
    sel = selected_muons(muons)
    q = ak.pad_none(sel.charge, 2, axis=1, clip=True)
    as_float = lambda a: ak.to_numpy(ak.fill_none(ak.values_astype(a, np.float64), np.nan))  # noqa: E731
    return dimuon_criteria(ak.to_numpy(ak.num(sel, axis=1)), as_float(q[:, 0]), as_float(q[:, 1]))


def dimuon_mask(muons: ak.Array) -> np.ndarray:
    """Per event: every dimuon criterion (≥ 2 selected muons, the two leading of opposite charge) —
    the cumulative ``opposite_charge`` cutflow step, from the muons alone."""
    cuts = dimuon_cuts(muons)
    return cuts["two_muons"] & cuts["opposite_charge"]


# --------------------------------------------------------------------------- mass windows
def in_window(mass: np.ndarray, windows: tuple[tuple[float, float], ...]) -> np.ndarray:
    """m in any half-open interval [lo, hi) of ``windows`` (NaN → False)."""
    mass = np.asarray(mass)
    out = np.zeros(mass.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
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


# --------------------------------------------------------------------------- events
def event_selection(c: Candidates, variables: dict[str, np.ndarray]) -> PackedSelection:
    """The PackedSelection of the module docstring: :data:`SELECTION_STEPS`, then
    ``signal_window`` and ``sideband_window``, each criterion on its own."""
    v = VBF_CUTS
    m = variables["mass"]
    with np.errstate(invalid="ignore"):
        cuts = {
            **dimuon_criteria(c.n_muons, c.mu1["charge"], c.mu2["charge"]),
            "two_jets": c.n_jets >= 2,
            "jet_pt": (c.j1["pt"] > v["lead_pt"]) & (c.j2["pt"] > v["sublead_pt"]),
            "mjj": variables["mjj"] > v["mjj"],
            "detajj": variables["detajj"] > v["abs_deta"],
            "mass_window": mass_window(m),
            "signal_window": signal_region(m),
            "sideband_window": sideband(m),
        }
    selection = PackedSelection(dtype="uint16")
    selection.add_multiple({k: np.asarray(mask, dtype=bool) for k, mask in cuts.items()})
    return selection


def scattered_selection(n: int, *parts: tuple[np.ndarray, dict[str, np.ndarray]]) -> PackedSelection:
    """One PackedSelection over ``n`` events (or (event, fold) pairs) from criteria evaluated on
    subsets of them: each part is (boolean mask of the events it was evaluated on, {criterion:
    mask over those events}); a criterion is False outside its part. An analysis that selects
    muons first and builds jets only where the dimuon passes gets its cutflow over every event."""
    selection = PackedSelection(dtype="uint16")
    for where, cuts in parts:
        where = np.asarray(where, dtype=bool)
        for name, mask in cuts.items():
            full = np.zeros(n, dtype=bool)
            full[where] = mask
            selection.add(name, full)
    return selection


def cutflow_masks(selection: PackedSelection) -> dict[str, np.ndarray]:
    """Cumulative masks, one per :data:`CUTFLOW_STEPS` entry: ``all`` and
    ``selection.all(*SELECTION_STEPS[:k])``."""
    n = len(selection.require())  # no requirement: every event
    out = {"all": np.ones(n, dtype=bool)}
    for k, step in enumerate(SELECTION_STEPS, start=1):
        out[step] = selection.all(*SELECTION_STEPS[:k])
    return out


def region_masks(selection: PackedSelection) -> dict[str, np.ndarray]:
    """``selection.all(*REGION_CUTS[region])`` for every region of :data:`REGIONS`."""
    return {region: selection.all(*REGION_CUTS[region]) for region in REGIONS}
