"""Physics of the reference response's fields beyond the flows' first targets that
docs/reference.md's comparison with real NanoAOD shows (scripts/reference_vs_real.py), on the
reference re-drawn from the bundled tt̄ and DY samples' Gen branches (no real files needed)."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest

SAMPLES = Path(__file__).resolve().parents[1] / "flashsim_coffea" / "samples"
GEN_FILTER = ["GenJet_*", "GenPart_*", "run", "luminosityBlock", "event", "Pileup_*"]


def _flat(a) -> np.ndarray:
    return ak.to_numpy(ak.flatten(a)).astype(np.float64)


@pytest.fixture(scope="module")
def drawn() -> dict[str, dict[str, np.ndarray]]:
    """{sample: flat Jet_*/Muon_* branches} of ``respond(gen, seed=1)`` on the bundled samples."""
    import uproot

    from flashsim_coffea.reference import respond

    out = {}
    for name in ("ttbar", "dy"):
        gen = uproot.open(SAMPLES / f"{name}.root")["Events"].arrays(filter_name=GEN_FILTER, how=dict)
        out[name] = {k: _flat(v) for k, v in respond(gen, seed=1).items()}
    return out


@pytest.mark.parametrize("sample", ["ttbar", "dy"])
def test_jet_energy_fractions_and_raw_factor(drawn, sample):
    j = drawn[sample]
    total = j["Jet_chHEF"] + j["Jet_neHEF"] + j["Jet_chEmEF"] + j["Jet_neEmEF"] + j["Jet_muEF"]
    assert np.all(np.abs(total - 1.0) < 0.02)  # the five fractions share the energy (6-bit rounding)
    abseta, pt, rf = np.abs(j["Jet_eta"]), j["Jet_pt"], j["Jet_rawFactor"]
    assert np.all(j["Jet_chHEF"][abseta > 3] == 0)  # no tracker in HF: no charged hadrons
    assert 0.15 < np.mean(j["Jet_neHEF"][abseta < 3] == 0) < 0.3  # real files: 25–34 % at |η| < 2.5

    def med(lo, hi):
        return np.median(rf[(pt >= lo) & (pt < hi)])

    # rising from the pile-up-offset regime (rawFactor < 0 for soft jets) to ≈ 0.1 at 30–100 GeV,
    # then falling: the real Run-2 file's −0.04 → 0.05, Run-3's 0.11 → 0.07
    assert med(15, 20) < med(30, 50) - 0.05
    assert med(100, 300) < min(med(30, 50), med(50, 100)) - 0.01
    assert np.quantile(rf[(pt < 20)], 0.16) < -0.2  # soft jets in busy events: offset > response deficit
    assert np.median(rf[abseta >= 3]) < np.median(rf[abseta < 1.3]) - 0.1  # HF: largest offset (real Run-2)


def test_muon_isolation_and_ids(drawn):
    m = drawn["ttbar"]  # prompt (W) and non-prompt (b, c) muons
    prompt = m["Muon_genPartFlav"] == 1
    assert prompt.sum() > 200 and (~prompt).sum() > 200
    for iso in ("Muon_tkRelIso", "Muon_miniPFRelIso_all"):
        # real Run-3 tt̄ file: 0.02–0.05 (prompt) vs 0.3–1.2 (non-prompt) in each pT bin above 10 GeV
        assert np.median(m[iso][~prompt]) > 10 * max(np.median(m[iso][prompt]), 0.01)
    tight = m["Muon_tightId"] > 0
    assert np.mean(m["Muon_highPtId"][tight] == 2) >= 0.95  # tight muons are global high-pT ones (real: 100 %)
    assert set(np.unique(m["Muon_highPtId"])) <= {0, 1, 2}
    assert np.mean(m["Muon_pfIsoId"][~prompt] == 0) > 0.75  # real tt̄: 84 % of non-prompt fail every WP
    assert np.mean(m["Muon_pfIsoId"][prompt] >= 4) > 0.5  # real tt̄: 60 % of prompt pass PFIsoTight
    assert set(np.unique(m["Muon_tightCharge"])) <= {0, 2}
