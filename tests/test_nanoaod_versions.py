"""Run-2 and Run-3 NanoAOD in fullsim mode: the per-version jet policy (jet ID, pile-up ID,
quark–gluon score), the branches it needs, and the analysis on every real CMS file."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory
from coffea.nanoevents.methods import nanoaod

from conftest import real_file
from flashsim_coffea.analysis import analyse, jet_policy, reco_branches, reco_jets, reco_muons
from flashsim_coffea.analysis.objects import RUN2, RUN3, RUN3_V12, add_jet_ids, tight_jet_id, tight_jet_id_v12
from flashsim_coffea.errors import MissingBranchesError

NanoAODSchema.warn_missing_crossrefs = False

MUON = {f"Muon_{f}" for f in ("pt", "eta", "phi", "mass", "charge", "mediumId", "pfRelIso04_all", "ptErr")}
KIN = {f"Jet_{f}" for f in ("pt", "eta", "phi", "mass")}
FRACTIONS = {f"Jet_{f}" for f in ("chHEF", "neHEF", "neEmEF", "chEmEF", "muEF")}
RUN2_FILE = MUON | KIN | FRACTIONS | {"Jet_jetId", "Jet_puId", "Jet_qgl", "Jet_btagDeepB"}
V12_FILE = MUON | KIN | FRACTIONS | {"Jet_jetId", "Jet_btagPNetQvG", "Jet_btagRobustParTAK4QG", "Jet_nConstituents"}
V15_FILE = MUON | KIN | FRACTIONS | {"Jet_chMultiplicity", "Jet_neMultiplicity", "Jet_btagPNetQvG", "Jet_btagUParTAK4QvG"}
#: policy expected for each real file (README of ../shared/data/real-nanoaod)
REAL_POLICY = {"nano_dy.root": RUN2, "nano_dimuon.root": RUN2, "nano_tt_v12.root": RUN3_V12}


# --------------------------------------------------------------------------- policy from branches
def test_policy_per_version_from_branch_names():
    assert jet_policy({b[4:] for b in RUN2_FILE if b.startswith("Jet_")}) is RUN2
    assert jet_policy({b[4:] for b in V12_FILE if b.startswith("Jet_")}) is RUN3_V12
    assert jet_policy({b[4:] for b in V15_FILE if b.startswith("Jet_")}) is RUN3
    # v13/v14: stored jetId and multiplicities -> computed (JME: the stored flag is wrong there)
    assert jet_policy({"pt", "jetId", "chMultiplicity", "neMultiplicity"}) is RUN3

    run2 = reco_branches(RUN2_FILE)
    assert MUON <= set(run2) and {"Jet_jetId", "Jet_puId", "Jet_qgl"} <= set(run2)
    v12 = reco_branches(V12_FILE)
    assert {"Jet_jetId", "Jet_neHEF", "Jet_neEmEF", "Jet_btagPNetQvG"} <= set(v12)
    assert not {"Jet_puId", "Jet_qgl", "Jet_btagRobustParTAK4QG"} & set(v12)
    v15 = reco_branches(V15_FILE)
    assert {"Jet_chMultiplicity", "Jet_neMultiplicity", "Jet_chHEF", "Jet_btagPNetQvG"} <= set(v15)
    assert "Jet_jetId" not in v15 and "Jet_btagUParTAK4QvG" not in v15  # PNet QvG comes first
    only_upart = reco_branches(V15_FILE - {"Jet_btagPNetQvG"})
    assert "Jet_btagUParTAK4QvG" in only_upart
    no_qg = reco_branches(V15_FILE - {"Jet_btagPNetQvG", "Jet_btagUParTAK4QvG"})
    assert not any("QvG" in b or "qgl" in b for b in no_qg)  # the score is then −1, not required
    for needed, available in ((run2, RUN2_FILE), (v12, V12_FILE), (v15, V15_FILE)):
        assert set(needed) <= available


def test_missing_branches_named():
    with pytest.raises(MissingBranchesError, match=r"Jet_neEmEF") as err:
        reco_branches(V15_FILE - {"Jet_neEmEF"}, filename="x.root")
    assert err.value.missing == ["Jet_neEmEF"] and str(err.value).startswith("x.root: ")
    # a Gen-only file: every reco branch is named, jets with the Run-2 expectations
    with pytest.raises(MissingBranchesError, match=r"Muon_pt.*Jet_jetId, Jet_puId.*fullsim") as err:
        reco_branches({"GenPart_pt", "GenJet_pt"})
    assert "Jet_qgl" not in err.value.missing


# --------------------------------------------------------------------------- jet ID formulas
def _jets(**cols) -> ak.Array:
    n = len(cols["eta"])
    base = {"pt": [50.0] * n, "phi": [0.0] * n, "mass": [5.0] * n, "charge": [0.0] * n}
    return ak.zip({k: ak.Array([v]) for k, v in {**base, **cols}.items()}, with_name="Jet", behavior=nanoaod.behavior)


def _reference_tight(eta, chHEF, neHEF, neEmEF, chM, neM):
    """JetID13p6TeV tight (AK4 PUPPI), flat numpy, written out region by region."""
    a = np.abs(eta)
    chM, neM = chM.astype(np.int64), neM.astype(np.int64)
    return np.select(
        [a <= 2.6, a <= 2.7, a <= 3.0],
        [(neHEF < 0.99) & (neEmEF < 0.90) & (chM + neM > 1) & (chHEF > 0.01) & (chM > 0), (neHEF < 0.90) & (neEmEF < 0.99), neHEF < 0.99],
        (neM >= 2) & (neEmEF < 0.40),
    )


def test_computed_tight_id_by_region():
    eta = [0.0, 0.0, 0.0, 0.0, 2.6, 2.65, 2.65, 2.7, 2.8, 2.8, 3.0, 3.5, 3.5, 3.5, -4.0]
    chHEF = [0.5, 0.005, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    neHEF = [0.2, 0.2, 0.995, 0.2, 0.2, 0.85, 0.95, 0.85, 0.98, 0.995, 0.5, 0.9, 0.9, 0.9, 0.9]
    neEmEF = [0.2, 0.2, 0.2, 0.2, 0.2, 0.98, 0.5, 0.995, 0.99, 0.5, 0.5, 0.3, 0.45, 0.3, 0.3]
    chM = np.array([3, 3, 3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.uint8)
    neM = np.array([2, 2, 2, 5, 0, 0, 0, 0, 0, 0, 0, 2, 5, 1, 255], dtype=np.uint8)
    expected = [True, False, False, False, False, True, False, False, True, False, True, True, False, False, True]
    jets = _jets(eta=eta, chHEF=chHEF, neHEF=neHEF, neEmEF=neEmEF, chMultiplicity=chM, neMultiplicity=neM)
    assert ak.to_list(tight_jet_id(jets))[0] == expected
    ref = _reference_tight(np.array(eta), np.array(chHEF), np.array(neHEF), np.array(neEmEF), chM, neM)
    assert ref.tolist() == expected
    # uint8 multiplicities are summed without wrapping: 200 + 100 > 1
    big = _jets(eta=[0.0], chHEF=[0.5], neHEF=[0.2], neEmEF=[0.2], chMultiplicity=np.array([200], np.uint8), neMultiplicity=np.array([56], np.uint8))
    assert ak.to_list(tight_jet_id(big)) == [[True]]


def test_v12_stored_tight_bit_with_forward_fix():
    jets = _jets(eta=[0.0, 0.0, 2.9, 2.9, 3.5, 3.5, 2.5], jetId=np.array([6, 4, 6, 6, 2, 2, 2], np.uint8),
                 neHEF=[0.5, 0.5, 0.5, 0.995, 0.5, 0.5, 0.995], neEmEF=[0.5, 0.5, 0.5, 0.5, 0.3, 0.5, 0.5])  # fmt: skip
    # bit 1 (mask 2) = coffea's Jet.isTight; beyond |η| 2.7 also neHEF < 0.99 (≤ 3.0) or neEmEF < 0.4
    assert ak.to_list(jets.isTight)[0] == [True, False, True, True, True, True, True]
    assert ak.to_list(tight_jet_id_v12(jets))[0] == [True, False, True, False, True, False, True]
    with_ids = add_jet_ids(jets)
    assert ak.to_list(with_ids.passPuId)[0] == [True] * 7  # PUPPI: no pile-up ID
    assert ak.to_list(with_ids.qgScore)[0] == [-1.0] * 7  # no score in these jets
    assert isinstance(with_ids, nanoaod.JetArray)


def test_qg_score_choice_and_undefined_values():
    jets = _jets(eta=[0.0, 1.0, 2.0], jetId=[6, 6, 6], neHEF=[0.1] * 3, neEmEF=[0.1] * 3, btagPNetQvG=[0.7, -10.0, 1.0])
    assert ak.to_list(add_jet_ids(jets).qgScore)[0] == pytest.approx([0.7, -1.0, 1.0])
    run2 = _jets(eta=[0.0], jetId=[6], puId=[4], qgl=[-1.0], btagPNetQvG=[0.3])
    assert ak.to_list(add_jet_ids(run2).qgScore) == [[-1.0]]  # qgl first, as stored


# --------------------------------------------------------------------------- real CMS NanoAOD
def _events(path: Path):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="virtual").events()


def _assert_finite_where_defined(res) -> None:
    v, c = res.variables, res.candidates
    two_mu = res.cutflow["opposite_charge"]
    for name in ("mass", "mass_res", "mumu_pt", "mumu_eta", "cos_theta_cs", "phi_cs", "mu1_iso"):
        assert np.all(np.isfinite(v[name][two_mu])), name
    one_jet, two_jets = c.n_jets >= 1, c.n_jets >= 2
    for name in ("j1_pt", "j1_eta", "j1_phi", "j1_qgl"):
        assert np.all(np.isfinite(v[name][one_jet])), name
    for name in ("j2_pt", "j2_eta", "j2_phi", "j2_qgl", "mjj", "detajj"):
        assert np.all(np.isfinite(v[name][two_jets])), name
    full = res.cutflow["two_jets"]
    for name in ("rpt", "log_zstar", "min_deta", "dnn_atanh"):
        assert np.all(np.isfinite(v[name][full])), name
    assert np.all(v["dnn_atanh"][full] < 2.5)  # inside the histogram axis


@pytest.mark.parametrize("name", sorted(REAL_POLICY))
def test_real_file_policy_and_fullsim_analysis(name):
    path = real_file(name)
    with uproot.open(path) as f:
        branches = set(f["Events"].keys())
    needed = reco_branches(branches, filename=str(path))
    assert set(needed) <= branches
    ev = _events(path)
    policy = jet_policy(ev.Jet.fields)
    assert policy is REAL_POLICY[name]
    jets = reco_jets(ev)
    if policy is RUN2:
        assert {"Jet_puId", "Jet_qgl"} <= set(needed)
        assert ak.all(jets.passPuId == (jets.puId >= 4)) and ak.all(jets.qgScore == jets.qgl)
    else:  # Run 3 v12: no pile-up ID, ParticleNet QvG, tight bit with the forward fix
        assert "Jet_puId" not in needed and "Jet_btagPNetQvG" in needed
        assert ak.all(jets.passPuId)
        flat = {f: ak.to_numpy(ak.flatten(jets[f])) for f in ("eta", "jetId", "neHEF", "neEmEF", "passJetIdTight")}
        a = np.abs(flat["eta"])
        ref = ((flat["jetId"] & 2) != 0) & np.where(a <= 2.7, True, np.where(a <= 3.0, flat["neHEF"] < 0.99, flat["neEmEF"] < 0.4))
        np.testing.assert_array_equal(flat["passJetIdTight"], ref)
    res = analyse(reco_muons(ev), jets, dnn=True)
    assert res.cutflow["all"].sum() == len(ev)
    assert res.candidates.n_jets.sum() > 0
    _assert_finite_where_defined(res)


def test_v15_shaped_file_computes_the_jet_id(tmp_path):
    """A NanoAOD-v15-shaped file (no Jet_jetId, no Jet_puId, charged/neutral multiplicities,
    UParT QvG) made from the real v12 file: the multiplicities are a synthetic split of
    nConstituents, enough to check the plumbing and the formula, not physics."""
    src = real_file("nano_tt_v12.root")
    with uproot.open(src) as f:
        t = f["Events"]
        jet = {k[4:]: t[k].array() for k in t.keys() if k.startswith("Jet_") and k[4:] in
               ("pt", "eta", "phi", "mass", "chHEF", "neHEF", "neEmEF", "chEmEF", "muEF", "nConstituents", "btagPNetQvG")}  # fmt: skip
        muon = {k[5:]: t[k].array() for k in (f"Muon_{x}" for x in ("pt", "eta", "phi", "mass", "charge", "mediumId", "pfRelIso04_all", "ptErr"))}
        ids = {k: t[k].array(library="np") for k in ("run", "luminosityBlock", "event")}
    n = ak.values_astype(jet.pop("nConstituents"), np.int64)
    jet["chMultiplicity"] = ak.values_astype(ak.where(jet["chHEF"] > 0, (n + 1) // 2, 0), np.uint8)
    jet["neMultiplicity"] = ak.values_astype(n - jet["chMultiplicity"], np.uint8)
    jet["btagUParTAK4QvG"] = jet.pop("btagPNetQvG")
    path = tmp_path / "nano_v15_shaped.root"
    block = {**ids, "Jet": ak.zip(jet), "Muon": ak.zip(muon)}
    with uproot.recreate(path) as f:  # mktree: a TTree with NanoAOD's nJet, Jet_pt, … branches
        f.mktree("Events", {k: (v.dtype if isinstance(v, np.ndarray) else v.type) for k, v in block.items()}).extend(block)
    with uproot.open(path) as f:
        branches = set(f["Events"].keys())
    needed = reco_branches(branches)
    assert {"Jet_chMultiplicity", "Jet_neMultiplicity", "Jet_btagUParTAK4QvG"} <= set(needed) and "Jet_jetId" not in branches
    ev = _events(path)
    assert jet_policy(ev.Jet.fields) is RUN3
    jets = reco_jets(ev)
    flat = {f: ak.to_numpy(ak.flatten(jets[f])) for f in ("eta", "chHEF", "neHEF", "neEmEF", "chMultiplicity", "neMultiplicity", "passJetIdTight")}
    ref = _reference_tight(flat["eta"], flat["chHEF"], flat["neHEF"], flat["neEmEF"], flat["chMultiplicity"], flat["neMultiplicity"])
    np.testing.assert_array_equal(flat["passJetIdTight"], ref)
    assert 0 < ref.sum() < ref.size
    res = analyse(reco_muons(ev), jets, dnn=True)
    _assert_finite_where_defined(res)
