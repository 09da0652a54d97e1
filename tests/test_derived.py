"""The NanoAOD fields derived exactly from other stored fields (``flashsim_coffea.nanoaod.derived``):
each derivation against the real CMS files where both sides are stored, and the edge cases on
hand-made arrays."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from conftest import needs_real, real_file
from flashsim_coffea.nanoaod.derived import (
    GEN_PART_FLAV,
    PF_ISO_WORKING_POINTS,
    charm_vs_b,
    charm_vs_light,
    global_index,
    has_quark_flavour,
    muon_gen_part_flav,
    muon_loose_id,
    muon_pdg_id,
    muon_pf_iso_id,
)

MC_FILES = ("nano_dy.root", "nano_tt_v12.root")
GEN_FIELDS = ("pdgId", "status", "statusFlags", "genPartIdxMother")
MUON_FIELDS = ("charge", "pdgId", "isPFcand", "isGlobal", "isTracker", "looseId", "pfRelIso04_all", "pfIsoId",
               "genPartIdx", "genPartFlav")

# statusFlags bits (GenStatusFlags.h)
PROMPT, TAU_PRODUCT, DIRECT_PROMPT_TAU_PRODUCT, DIRECT_HADRON_PRODUCT = 1, 1 << 2, 1 << 5, 1 << 6


def _flat(arrays, name: str) -> np.ndarray:
    return ak.to_numpy(ak.flatten(arrays[name]))


@pytest.fixture(scope="module")
def real():
    """Per MC file: flat Muon_* and GenPart_* columns, GenPart offsets and the muons' flat
    GenPart index."""
    out = {}
    for name in MC_FILES:
        tree = uproot.open(real_file(name))["Events"]
        a = tree.arrays([f"Muon_{v}" for v in MUON_FIELDS] + [f"GenPart_{v}" for v in GEN_FIELDS])
        d = {k: _flat(a, k) for k in a.fields}
        d["gen_offsets"] = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(a["GenPart_pdgId"])))])
        d["gen_idx"] = global_index(d["Muon_genPartIdx"], ak.to_numpy(ak.num(a["Muon_charge"])), d["gen_offsets"])
        out[name] = d
    return out


# ------------------------------------------------------------------ against the real files
@needs_real
def test_pdg_id_is_minus_13_charge_in_real_files(real):
    for name, d in real.items():
        got = muon_pdg_id(d["Muon_charge"])
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, d["Muon_pdgId"], err_msg=name)


@needs_real
def test_loose_id_in_real_files(real):
    for name, d in real.items():
        np.testing.assert_array_equal(muon_loose_id(d["Muon_isPFcand"], d["Muon_isGlobal"], d["Muon_isTracker"]),
                                      d["Muon_looseId"], err_msg=name)


@needs_real
def test_pf_iso_id_in_real_files(real):
    """Exact on all 18 (nano_dy) and 210 (nano_tt_v12) muons; every Id value 0–6 occurs."""
    seen = set()
    for name, d in real.items():
        got = muon_pf_iso_id(d["Muon_pfRelIso04_all"])
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, d["Muon_pfIsoId"], err_msg=name)
        seen |= set(np.unique(got).tolist())
    assert seen == set(range(7))


def _stored_cell(x: np.ndarray, bits: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """[lo, hi] of the true values that CMSSW's ``reduceMantissaToNbitsRounding`` stores as ``x``.

    It rounds the top ``bits`` mantissa bits to nearest but never carries into the exponent: the
    last two mantissa values of a binade (k = 2^bits − 2, 2^bits − 1) keep what would round up,
    and a power of two (k = 0) gets nothing from below. Hence, with h half a stored ulp: k = 0:
    [x, x + h]; k = 2^bits − 2: [x − h, x + 2h]; k = 2^bits − 1: [x, x + 2h]; else [x − h, x + h].
    (The real files show it: 44 tt̄ jets have btagDeepFlavB = 1 − 2⁻¹¹, none has 1.)
    """
    x = np.asarray(x, dtype=np.float32)
    k = (x.view(np.uint32) & np.uint32(0x7FFFFF)) >> np.uint32(23 - bits)
    xd = x.astype(np.float64)
    h = np.ldexp(1.0, np.frexp(xd)[1] - bits - 2)
    top = (1 << bits) - 2
    lo = np.where((k == 0) | (k == top + 1), xd, xd - h)
    hi = np.where(k >= top, xd + 2 * h, xd + h)
    return lo, hi


@pytest.fixture(scope="module")
def tagger_cells():
    """(B, CvL, CvB) intervals of the tt̄ jets: nano_tt_v12 stores btagDeepFlavB, CvL and CvB (10
    mantissa bits) but not btagDeepFlavC."""
    a = uproot.open(real_file("nano_tt_v12.root"))["Events"].arrays(
        ["Jet_btagDeepFlavB", "Jet_btagDeepFlavCvL", "Jet_btagDeepFlavCvB"])
    return [_stored_cell(_flat(a, k)) for k in a.fields]


@needs_real
def test_charm_vs_light_in_real_files(tagger_cells):
    """CvL = C/(1 − B) on the 1504 jets of nano_tt_v12, where C is not stored: C = CvB·B/(1 − CvB)
    (monotone in CvB and B) from the stored CvB and B cells, and CvL (increasing in C and B) over
    those ranges must reach the stored CvL cell — for every jet. Where B's cell reaches 1 (44
    jets) the upper end is CvL ≤ 1. Sensitivity: CvL scaled by 1.003 fails 69 % of the jets."""
    (b_lo, b_hi), (l_lo, l_hi), (v_lo, v_hi) = tagger_cells
    c_lo, c_hi = v_lo * b_lo / (1 - v_lo), v_hi * b_hi / (1 - v_hi)
    low = charm_vs_light(c_lo, b_lo)
    high = np.where(b_hi < 1, charm_vs_light(c_hi, b_hi), 1.0)
    assert low.dtype == np.float32
    assert np.all((low <= l_hi) & (l_lo <= high))


@needs_real
def test_charm_vs_b_in_real_files(tagger_cells):
    """CvB = C/(C + B) on the 1504 jets of nano_tt_v12, with C = CvL·(1 − B) from the stored CvL
    and B cells; CvB is increasing in C and decreasing in B, so its range must reach the stored
    CvB cell — for every jet. Sensitivity: CvB scaled by 1.003 fails 86 % of the jets."""
    (b_lo, b_hi), (l_lo, l_hi), (v_lo, v_hi) = tagger_cells
    c_lo, c_hi = l_lo * (1 - b_hi), l_hi * (1 - b_lo)
    low, high = charm_vs_b(c_lo, b_hi), charm_vs_b(c_hi, b_lo)
    assert high.dtype == np.float32
    assert np.all((low <= v_hi) & (v_lo <= high))


@needs_real
def test_gen_part_flav_in_real_files(real):
    """Derived vs stored Muon_genPartFlav, rows stored, columns derived (codes 0, 1, 3, 4, 5, 15):

    nano_dy (Run 2, 18 muons): 0: 2, 1: 11, 15: 5 on the diagonal — 18/18 agree.
    nano_tt_v12 (Run 3, 210 muons): 0: 70, 1: 62, 3: 2, 4: 7, 5: 60, 15: 9 on the diagonal —
    210/210 agree. (The earlier heuristic — any b/c hadron by heaviest quark in the whole chain,
    15 for statusFlags bit 2 or 5 or any τ ancestor — got 205/210: three μ from τ from B_s
    stored 5, and two μ ← μ (status 91) ← J/ψ ← B stored 3, since CMSSW's walk stops at a
    mother whose status is not 2.)

    The rule is CMSSW's own on the same pruned GenPart list, so the test asks for all of them.
    """
    for name, d in real.items():
        got = muon_gen_part_flav(d["gen_idx"], d["GenPart_pdgId"], d["GenPart_status"], d["GenPart_statusFlags"],
                                 d["GenPart_genPartIdxMother"], d["gen_offsets"])
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, d["Muon_genPartFlav"], err_msg=name)
    flavours = set(np.unique(real["nano_tt_v12.root"]["Muon_genPartFlav"]).tolist())
    assert flavours == set(GEN_PART_FLAV.values())  # every code is exercised


# ------------------------------------------------------------------ hand-made edge cases
def test_pdg_id_and_loose_id_by_hand():
    np.testing.assert_array_equal(muon_pdg_id(np.array([[-1, 1], [1, -1]])), [[13, -13], [-13, 13]])
    pf = np.array([True, True, True, False])
    glb = np.array([True, False, False, True])
    trk = np.array([False, True, False, True])
    np.testing.assert_array_equal(muon_loose_id(pf, glb, trk), [True, True, False, False])


def test_pf_iso_id_at_the_working_points():
    bounds = np.array(list(PF_ISO_WORKING_POINTS.values()))
    assert list(PF_ISO_WORKING_POINTS) == ["PFIsoVeryLoose", "PFIsoLoose", "PFIsoMedium", "PFIsoTight",
                                          "PFIsoVeryTight", "PFIsoVeryVeryTight"]
    np.testing.assert_array_equal(bounds, [0.40, 0.25, 0.20, 0.15, 0.10, 0.05])
    n_passed_below = np.arange(1, 7)  # just below bound k: passes it and all looser ones
    at = bounds.astype(np.float32)  # a stored float32 at the bound fails it (strict <)
    below = np.nextafter(at, np.float32(0))
    np.testing.assert_array_equal(muon_pf_iso_id(at), n_passed_below - 1)
    np.testing.assert_array_equal(muon_pf_iso_id(below), n_passed_below)
    np.testing.assert_array_equal(muon_pf_iso_id(bounds), n_passed_below - 1)  # exact doubles too
    got = muon_pf_iso_id(np.array([[0.0, 1.0], [np.nan, 0.07]], dtype=np.float32))
    assert got.dtype == np.uint8 and got.shape == (2, 2)
    np.testing.assert_array_equal(got, [[6, 0], [0, 5]])


def test_charm_taggers_by_hand():
    c = np.array([0.3, 0.0, 0.2, -1.0, 0.5, 0.0, 0.1], dtype=np.float32)
    b = np.array([0.4, 0.5, 1.0, -3.0, -1.0, 0.0, 0.0], dtype=np.float32)
    cvl, cvb = charm_vs_light(c, b), charm_vs_b(c, b)
    assert cvl.dtype == cvb.dtype == np.float32
    # defined: C/(1−B), C/(C+B); undefined (−1): 1−B = 0, negative (default) scores, C+B = 0
    np.testing.assert_allclose(cvl, [0.5, 0.0, -1, -1, -1, 0.0, 0.1], rtol=1e-6)
    np.testing.assert_allclose(cvb, [0.3 / 0.7, 0.0, 0.2 / 1.2, -1, -1, -1, 1.0], rtol=1e-6)
    assert charm_vs_light(np.full((2, 3), 0.1), np.full((2, 3), 0.5)).shape == (2, 3)


def test_has_quark_flavour():
    pdg = np.array([5, -511, 5122, 553, -4, 421, 4122, 443, 10521, 100443, 211, 21, 13])
    np.testing.assert_array_equal(has_quark_flavour(pdg, 5), [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(has_quark_flavour(pdg, 4), [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0])


def _events(*events):
    """Flat GenPart columns and offsets of events given as lists of (pdgId, status, statusFlags,
    local mother index)."""
    rows = [p for ev in events for p in ev]
    cols = [np.array([r[i] for r in rows], dtype=np.int64) for i in range(4)]
    offsets = np.concatenate([[0], np.cumsum([len(ev) for ev in events])])
    return (*cols, offsets)


# the muon is the last particle of each event
CASES = {
    "B meson": ([(5, 23, 0, -1), (511, 2, 0, 0), (-411, 2, DIRECT_HADRON_PRODUCT, 1),
                 (13, 1, DIRECT_HADRON_PRODUCT, 2)], 5),
    "prompt tau": ([(24, 22, PROMPT, -1), (15, 2, PROMPT, 0),
                    (13, 1, TAU_PRODUCT | (1 << 3) | (1 << 4) | DIRECT_PROMPT_TAU_PRODUCT, 1)], 15),
    "D meson": ([(4, 71, PROMPT, -1), (421, 2, PROMPT, 0), (-13, 1, DIRECT_HADRON_PRODUCT, 1)], 4),
    "prompt": ([(23, 62, PROMPT, -1), (13, 1, PROMPT, 0)], 1),
    "tau from a B_s": ([(531, 2, 0, -1), (15, 2, DIRECT_HADRON_PRODUCT, 0), (13, 1, TAU_PRODUCT | (1 << 4), 1)], 5),
    "D from a B": ([(511, 2, 0, -1), (421, 2, DIRECT_HADRON_PRODUCT, 0), (13, 1, DIRECT_HADRON_PRODUCT, 1)], 5),
    "J/psi via a status-91 muon": ([(511, 2, 0, -1), (443, 2, DIRECT_HADRON_PRODUCT, 0),
                                    (13, 91, DIRECT_HADRON_PRODUCT, 1), (13, 1, DIRECT_HADRON_PRODUCT, 2)], 3),
    "J/psi mother": ([(511, 2, 0, -1), (443, 2, DIRECT_HADRON_PRODUCT, 0), (13, 1, DIRECT_HADRON_PRODUCT, 1)], 5),
    "light hadron": ([(2, 71, 0, -1), (221, 2, PROMPT, 0), (13, 1, DIRECT_HADRON_PRODUCT, 1)], 3),
    "no mother": ([(13, 1, 0, -1)], 3),
    "mother listed after it": ([(13, 1, 0, 1), (511, 2, 0, -1)], 3),
}


def test_gen_part_flav_by_hand():
    names = list(CASES)
    events = [CASES[n][0] for n in names]
    pdg, status, flags, mother, offsets = _events(*events)
    muon = np.array([offsets[i] + (len(ev) - 1 if n != "mother listed after it" else 0)
                     for i, (n, ev) in enumerate(zip(names, events))])
    got = muon_gen_part_flav(muon, pdg, status, flags, mother, offsets)
    assert got.dtype == np.uint8
    assert dict(zip(names, got.tolist())) == {n: CASES[n][1] for n in names}
    # unmatched → 0; any shape of gen_idx
    grid = np.array([[muon[0], -1], [-1, muon[1]]])
    np.testing.assert_array_equal(muon_gen_part_flav(grid, pdg, status, flags, mother, offsets), [[5, 0], [0, 15]])
    with pytest.raises(ValueError, match="out of range"):
        muon_gen_part_flav(np.array([len(pdg)]), pdg, status, flags, mother, offsets)


def test_gen_part_flav_with_empty_events_and_no_muons():
    pdg, status, flags, mother, offsets = _events([], CASES["D meson"][0], [], CASES["B meson"][0])
    muon = global_index(np.array([2, -1, 3]), np.array([0, 2, 0, 1]), offsets)
    np.testing.assert_array_equal(muon, [2, -1, 6])
    np.testing.assert_array_equal(muon_gen_part_flav(muon, pdg, status, flags, mother, offsets), [4, 0, 5])
    assert muon_gen_part_flav(np.zeros(0, dtype=np.int64), pdg, status, flags, mother, offsets).shape == (0,)
