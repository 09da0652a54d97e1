"""VBF H→μμ analysis: hand-computed kinematics, Collins–Soper against a direct boost, object cuts
on coffea collections, the PackedSelection cutflow and regions, Gen objects."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import vector

from coffea.analysis_tools import PackedSelection
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory
from coffea.nanoevents.methods import nanoaod

from conftest import REAL_NANOAOD, needs_real
from flashsim_coffea.analysis import kinematics as kin
from flashsim_coffea.analysis.candidates import build_candidates
from flashsim_coffea.analysis.selection import (
    CUTFLOW_STEPS,
    REGION_CUTS,
    REGIONS,
    SELECTION_STEPS,
    clean_mask,
    cutflow_masks,
    dimuon_criteria,
    dimuon_cuts,
    dimuon_mask,
    event_selection,
    in_window,
    region_masks,
    select_jets,
    select_muons,
)
from flashsim_coffea.analysis.variables import VARIABLES, compute_variables

NanoAODSchema.warn_missing_crossrefs = False


def _xyzt(px, py, pz, e):
    f = lambda a: np.atleast_1d(np.asarray(a, dtype=float))  # noqa: E731
    return vector.array({"px": f(px), "py": f(py), "pz": f(pz), "E": f(e)})


# --------------------------------------------------------------------------- Collins–Soper
def test_cos_theta_cs_hand_cases():
    # μ− along the beam in the dimuon's direction -> +1; swapped -> −1
    m1, p1 = _xyzt(0, 0, 30, 30), _xyzt(0, 0, -20, 20)
    assert kin.cos_theta_cs_analytic(m1, p1)[0] == pytest.approx(1.0)
    assert kin.cos_theta_cs_analytic(p1, m1)[0] == pytest.approx(-1.0)
    # dimuon moving to −z: sign(pz) flips the axis: μ− along −z is "forward"
    m2, p2 = _xyzt(0, 0, -30, 30), _xyzt(0, 0, 20, 20)
    assert kin.cos_theta_cs_analytic(m2, p2)[0] == pytest.approx(1.0)
    # transverse, back-to-back in the transverse plane: cos θ = 0
    m3, p3 = _xyzt(30, 0, 0, 30), _xyzt(0, 30, 0, 30)
    assert kin.cos_theta_cs_analytic(m3, p3)[0] == pytest.approx(0.0, abs=1e-12)
    c, _ = kin.collins_soper(m1, p1)
    assert c[0] == pytest.approx(1.0)


def _boost_matrix(beta: np.ndarray) -> np.ndarray:
    """(n, 4, 4) Lorentz boost matrices Λ(β) acting on (E, px, py, pz) column vectors."""
    b2 = np.sum(beta**2, axis=1)
    g = 1.0 / np.sqrt(1.0 - b2)
    lam = np.zeros((len(beta), 4, 4))
    lam[:, 0, 0] = g
    lam[:, 0, 1:] = lam[:, 1:, 0] = -g[:, None] * beta
    lam[:, 1:, 1:] = np.eye(3)[None] + ((g - 1.0) / b2)[:, None, None] * beta[:, :, None] * beta[:, None, :]
    return lam


def _direct_cs(mu_minus: np.ndarray, mu_plus: np.ndarray):
    """CS angles with explicit boost matrices; inputs (n, 4) arrays of (E, px, py, pz)."""
    q = mu_minus + mu_plus
    lam = _boost_matrix(q[:, 1:] / q[:, :1])
    sign = np.where(q[:, 3] < 0, -1.0, 1.0)
    beam_a = np.stack([np.ones_like(sign), 0 * sign, 0 * sign, sign], axis=1)
    beam_b = np.stack([np.ones_like(sign), 0 * sign, 0 * sign, -sign], axis=1)
    boost = lambda v: np.einsum("nij,nj->ni", lam, v)[:, 1:]  # noqa: E731
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    a, b, mu = unit(boost(beam_a)), unit(boost(beam_b)), unit(boost(mu_minus))
    z = unit(a - b)
    y = unit(np.cross(a, b))
    x = np.cross(y, z)
    return np.sum(mu * z, axis=1), np.arctan2(np.sum(mu * y, axis=1), np.sum(mu * x, axis=1))


def test_collins_soper_against_direct_boost_and_analytic():
    rng = np.random.default_rng(5)
    n = 500
    mu_m = kin.p4(rng.uniform(20, 150, n), rng.uniform(-2.4, 2.4, n), rng.uniform(-np.pi, np.pi, n), 0.0)
    mu_p = kin.p4(rng.uniform(20, 150, n), rng.uniform(-2.4, 2.4, n), rng.uniform(-np.pi, np.pi, n), 0.0)
    cos_b, phi_b = kin.collins_soper(mu_m, mu_p)
    arr = lambda v: np.stack([v.E, v.px, v.py, v.pz], axis=1)  # noqa: E731
    cos_d, phi_d = _direct_cs(arr(mu_m), arr(mu_p))
    np.testing.assert_allclose(cos_b, cos_d, atol=1e-9)
    np.testing.assert_allclose(np.angle(np.exp(1j * (phi_b - phi_d))), 0.0, atol=1e-9)
    # massless muons: the analytic cos θ_CS equals the boosted one exactly
    np.testing.assert_allclose(kin.cos_theta_cs_analytic(mu_m, mu_p), cos_b, atol=1e-9)
    # with muon masses they agree to O(m_μ²/m_μμ²)
    mu_m2 = kin.p4(mu_m.pt, mu_m.eta, mu_m.phi, 0.10566)
    mu_p2 = kin.p4(mu_p.pt, mu_p.eta, mu_p.phi, 0.10566)
    big = (mu_m2 + mu_p2).mass > 50
    np.testing.assert_allclose(kin.cos_theta_cs_analytic(mu_m2, mu_p2)[big], kin.collins_soper(mu_m2, mu_p2)[0][big], atol=1e-4)
    # φ_CS is invariant under a rotation of the event about the beam axis
    rot = lambda v, a: kin.p4(v.pt, v.eta, v.phi + a, v.mass)  # noqa: E731
    _, phi_rot = kin.collins_soper(rot(mu_m, 1.1), rot(mu_p, 1.1))
    np.testing.assert_allclose(np.angle(np.exp(1j * (phi_rot - phi_b))), 0.0, atol=1e-9)
    assert np.all(np.abs(cos_b) <= 1 + 1e-12)


# --------------------------------------------------------------------------- z*, R(pT), Δm
def test_zstar_rpt_mass_resolution_min_deta_by_hand():
    dimuon = _xyzt(10, 0, 0, 100)  # y = 0
    j1 = kin.p4(50, 3.0, 0.0, 0.0)  # massless: y = η = 3
    j2 = kin.p4(40, -1.0, 1.0, 0.0)  # y = −1
    assert kin.zstar(dimuon, j1, j2)[0] == pytest.approx(abs(0 - (3 - 1) / 2) / 4)
    assert kin.min_delta_eta(dimuon, j1, j2)[0] == pytest.approx(1.0)  # η_μμ = 0

    mumu = kin.p4(100, 0.3, 0.0, 125)
    a = kin.p4(60, 1.0, np.pi, 5)
    b = kin.p4(30, -2.0, np.pi / 2, 5)
    # vector sum (100 − 60, 30) -> 50 ; scalar sum 190
    assert kin.rpt(mumu, a, b)[0] == pytest.approx(50 / 190)

    # m = 125: 125·1/(2·50) = 1.25 and 125·0.8/(2·40) = 1.25 -> 1.25·√2
    assert kin.mass_resolution(125.0, 50.0, 1.0, 40.0, 0.8) == pytest.approx(1.25 * np.sqrt(2))


# --------------------------------------------------------------------------- object cuts
def _collection(name: str, **cols) -> ak.Array:
    """Jagged coffea NanoAOD collection ``name`` from per-field lists (jets get NanoEvents' charge 0)."""
    if name == "Jet" and "charge" not in cols:
        cols["charge"] = ak.zeros_like(ak.Array(cols["pt"]))
    return ak.zip({k: ak.Array(v) for k, v in cols.items()}, with_name=name, behavior=nanoaod.behavior)


def _muons(**cols):
    base = dict(mass=0.10566, charge=-1, mediumId=True, pfRelIso04_all=0.05, ptErr=1.0)
    n = len(cols["pt"])
    rec = {**{k: [v] * n for k, v in base.items()}, **cols}
    return _collection("Muon", **{k: [v] for k, v in rec.items()})


def test_muon_selection_cuts():
    mu = _muons(pt=[30, 19, 30, 30, 30, 30], eta=[0, 0, 2.5, 0, 0, -2.3], phi=[0] * 6,
                mediumId=[True, True, True, False, True, True], pfRelIso04_all=[0.1, 0.1, 0.1, 0.1, 0.3, 0.24])  # fmt: skip
    assert ak.to_list(select_muons(mu)) == [[True, False, False, False, False, True]]


def test_jet_selection_and_cleaning():
    jets = _collection(
        "Jet",
        pt=[[60.0, 40.0, 40.0, 30.0, 30.0, 24.0, 80.0]],
        eta=[[0.0, 1.0, 1.0, 4.8, -3.0, 0.0, 0.21]],
        phi=[[2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 0.1]],
        mass=[[5.0] * 7],
        puId=[[0, 0, 4, 7, 6, 7, 7]],
        jetId=[[6, 6, 2, 6, 0, 6, 6]],
        qgl=[[0.5] * 7],
    )
    muons = _muons(pt=[40.0], eta=[0.0], phi=[0.0])
    # 60: puId not needed above 50 -> pass; 40/puId 0 -> fail; 40/puId 4/jetId 2 -> pass;
    # |η| 4.8 -> fail; jetId 0 -> fail; pt 24 -> fail; 80 at ΔR = 0.23 from the muon -> cleaned
    assert ak.to_list(select_jets(jets, muons)) == [[True, False, True, False, False, False, False]]
    assert ak.to_list(clean_mask(jets, muons)) == [[True] * 6 + [False]]
    # coffea's Jet.isTight is the jetId tight bit (bit 1, mask 2): jetId 2 and 6 are tight
    assert ak.to_list(jets.isTight) == [[True, True, True, True, False, True, True]]
    # Δφ wraps around ±π; no muons -> every jet is clean
    j = _collection("Jet", pt=[[50.0]], eta=[[0.0]], phi=[[3.1]], mass=[[0.0]])
    m = _collection("Muon", pt=[[50.0]], eta=[[0.0]], phi=[[-3.1]], mass=[[0.1]], charge=[[1]])
    assert ak.to_list(clean_mask(j, m)) == [[False]]
    assert ak.to_list(clean_mask(j, m[:, :0])) == [[True]]


def test_cleaning_boundary_is_delta_r_squared():
    """ΔR² > 0.4² on coffea's delta_r2 (Δη² + Δφ²): a pair at ΔR just above/below 0.4."""
    jets = _collection("Jet", pt=[[50.0, 50.0]], eta=[[0.4 + 1e-6, 0.4 - 1e-6]], phi=[[0.0, 0.0]], mass=[[0.0, 0.0]])
    muons = _collection("Muon", pt=[[30.0]], eta=[[0.0]], phi=[[0.0]], mass=[[0.1]], charge=[[1]])
    assert ak.to_list(clean_mask(jets, muons)) == [[True, False]]
    dr2 = jets.metric_table(muons, metric=lambda a, b: a.delta_r2(b))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(dr2, axis=None)), [(0.4 + 1e-6) ** 2, (0.4 - 1e-6) ** 2], rtol=1e-12)


def test_mass_windows_partition():
    m = np.array([109.99, 110.0, 114.999, 115.0, 134.999, 135.0, 149.999, 150.0, np.nan])
    sr = in_window(m, ((115.0, 135.0),))
    sb = in_window(m, ((110.0, 115.0), (135.0, 150.0)))
    win = in_window(m, ((110.0, 150.0),))
    assert list(sr) == [False, False, False, True, True, False, False, False, False]
    np.testing.assert_array_equal(sr | sb, win)
    assert not np.any(sr & sb)


# --------------------------------------------------------------------------- event selection
def _event_record(mu_pt, mu_eta, mu_phi, mu_charge, jet_pt, jet_eta, jet_phi):
    ones = lambda a, dtype=None: ak.ones_like(ak.Array(a), dtype=dtype)  # noqa: E731
    muons = ak.zip({"pt": mu_pt, "eta": mu_eta, "phi": mu_phi, "mass": ones(mu_pt) * 0.10566, "charge": mu_charge,
                    "mediumId": ones(mu_pt, bool), "pfRelIso04_all": ones(mu_pt) * 0.0, "ptErr": ones(mu_pt)},
                   with_name="Muon", behavior=nanoaod.behavior)  # fmt: skip
    jets = ak.zip({"pt": jet_pt, "eta": jet_eta, "phi": jet_phi, "mass": ones(jet_pt) * 5.0,
                   "jetId": ak.values_astype(ones(jet_pt) * 6, np.int32), "puId": ak.values_astype(ones(jet_pt) * 7, np.int32),
                   "qgl": ones(jet_pt) * 0.5, "charge": ones(jet_pt) * 0.0}, with_name="Jet", behavior=nanoaod.behavior)  # fmt: skip
    return muons, jets


def _five_events():
    # ev0: VBF SR event; ev1: same-sign muons; ev2: one jet; ev3: low m_jj; ev4: no muons
    return _event_record(
        mu_pt=[[62.0, 61.0], [60.0, 50.0], [60.0, 50.0], [62.0, 61.0], []],
        mu_eta=[[0.0, 0.0], [0.0, 0.1], [0.0, 0.1], [0.0, 0.0], []],
        mu_phi=[[0.0, 3.0], [0.0, 2.0], [0.0, 2.0], [0.0, 3.0], []],
        mu_charge=[[1, -1], [1, 1], [1, -1], [-1, 1], []],
        jet_pt=[[30.0, 80.0, 100.0], [80.0, 60.0], [80.0], [80.0, 60.0], [50.0, 40.0]],
        jet_eta=[[0.0, -2.5, 2.5], [-2.5, 2.5], [2.0], [0.5, -0.5], [1.0, -1.0]],
        jet_phi=[[1.5, 1.5, -1.5], [1.5, -1.5], [1.5], [1.5, -1.5], [0.0, 1.0]],
    )


def test_candidates_cutflow_and_regions():
    muons, jets = _five_events()
    cand = build_candidates(muons, jets)
    assert list(cand.n_muons) == [2, 2, 2, 2, 0]
    assert list(cand.n_jets) == [3, 2, 1, 2, 2]
    assert cand.j1["pt"][0] == 100.0 and cand.j2["pt"][0] == 80.0  # pT-ordered
    assert list(dimuon_criteria(cand.n_muons, cand.mu1["charge"], cand.mu2["charge"])["opposite_charge"]) == [
        True, False, True, True, False]
    assert list(dimuon_cuts(muons)["opposite_charge"]) == [True, False, True, True, False]
    v = compute_variables(cand)
    assert set(VARIABLES) - {"dnn_atanh"} == set(v)
    assert np.isnan(v["mass"][4]) and np.isnan(v["mjj"][2])
    sel = event_selection(cand, v)
    assert isinstance(sel, PackedSelection)
    assert tuple(sel.names) == (*SELECTION_STEPS, "signal_window", "sideband_window")
    cf = cutflow_masks(sel)
    assert list(cf) == list(CUTFLOW_STEPS)
    counts = [int(cf[s].sum()) for s in CUTFLOW_STEPS]
    assert counts == sorted(counts, reverse=True)  # monotone
    m0 = v["mass"][0]  # ≈ 122 GeV: μμ back-to-back-ish at 62/61 GeV
    assert 115 < m0 < 135
    assert cf["mass_window"].tolist() == [True, False, False, False, False]
    # each PackedSelection entry is its criterion alone: ev1 (same-sign) passes the jet cuts
    assert sel.all("mjj").tolist() == [True, True, False, False, False]
    assert not sel.all("mjj")[3]  # ev3: m_jj below 400 GeV
    reg = region_masks(sel)
    assert list(reg) == list(REGIONS)
    assert reg["SR"].tolist() == [True, False, False, False, False]
    assert not reg["SB"].any()
    assert reg["presel"].tolist() == [True, False, False, True, False]  # ev3 fails only m_jj
    # ev0: μ1 (pT 62) is the μ+, so particle 1 of the CS formulas is μ2
    mu_m = kin.p4(61.0, 0.0, 3.0, 0.10566)
    mu_p = kin.p4(62.0, 0.0, 0.0, 0.10566)
    assert v["cos_theta_cs"][0] == pytest.approx(kin.cos_theta_cs_analytic(mu_m, mu_p)[0])


def test_cutflow_is_cumulative_and_regions_follow_their_cuts():
    """Cutflow step k = AND of the first k PackedSelection entries; regions = AND of REGION_CUTS;
    coffea's Cutflow gives the same counts; dimuon_mask is the opposite_charge step."""
    from flashsim_coffea.analysis import analyse

    muons, jets = _five_events()
    res = analyse(muons, jets, dnn=False)
    sel = res.selection
    acc = np.ones(5, dtype=bool)
    for step in SELECTION_STEPS:
        acc = acc & sel.any(step)  # the entry on its own
        np.testing.assert_array_equal(res.cutflow[step], acc)
    for region, cuts in REGION_CUTS.items():
        expected = np.logical_and.reduce([sel.any(c) for c in cuts])
        np.testing.assert_array_equal(res.regions[region], expected)
    np.testing.assert_array_equal(res.regions["SR"] | res.regions["SB"], res.cutflow["mass_window"])
    counts = [int(n) for n in res.coffea_cutflow().result().nevcutflow]
    assert counts == [int(res.cutflow[s].sum()) for s in CUTFLOW_STEPS]
    np.testing.assert_array_equal(dimuon_mask(muons), res.cutflow["opposite_charge"])


# --------------------------------------------------------------------------- coffea collections
def _sample_events(name: str):
    from flashsim_coffea.samples import sample_path

    return NanoEventsFactory.from_root({str(sample_path(name)): "Events"}, schemaclass=NanoAODSchema, mode="virtual").events()


def test_collections_keep_coffea_behaviour():
    from flashsim_coffea.analysis import gen_jets, gen_muons, reco_jets, reco_muons
    from flashsim_coffea.analysis.selection import selected_jets, selected_muons

    ev = _sample_events("vbf_hmm")
    mu, jets = reco_muons(ev), reco_jets(ev)
    assert isinstance(mu, nanoaod.MuonArray) and isinstance(jets, nanoaod.JetArray)
    sel_mu = selected_muons(mu)
    sel_jets = selected_jets(jets, sel_mu)
    assert isinstance(sel_mu, nanoaod.MuonArray) and isinstance(sel_jets, nanoaod.JetArray)
    # Run-2 policy: the tight ID is coffea's Jet.isTight, the pile-up ID puId ≥ 4, qgScore = qgl
    assert ak.all(jets.passJetIdTight == jets.isTight)
    assert ak.all(jets.passPuId == (jets.puId >= 4))
    assert ak.all(jets.qgScore == jets.qgl)
    gmu = gen_muons(ev)
    assert isinstance(gmu, nanoaod.GenParticleArray)
    assert hasattr(gen_jets(ev), "metric_table")


def test_gen_muons_are_prompt_status1_muons():
    from flashsim_coffea.analysis import gen_muons

    ev = _sample_events("vbf_hmm")
    g = ev.GenPart
    # hasFlags("isPrompt") is statusFlags bit 0
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(g.hasFlags("isPrompt"))), ak.to_numpy(ak.flatten(g.statusFlags & 1)) == 1)
    mu = gen_muons(ev)
    expected = (g.status == 1) & (abs(g.pdgId) == 13) & ((g.statusFlags & 1) == 1)
    assert ak.to_list(ak.num(mu)) == ak.to_list(ak.sum(expected, axis=1))
    assert ak.all(mu.charge == -np.sign(mu.pdgId))
    assert ak.all(mu.pt[:, 1:] <= mu.pt[:, :-1])  # pT-ordered
    assert ak.all(mu.mediumId) and ak.all(mu.pfRelIso04_all == 0) and ak.all(mu.ptErr == 0)


@needs_real
def test_real_nanoaod_reco_and_gen():
    from flashsim_coffea.analysis import analyse, gen_jets, gen_muons, reco_jets, reco_muons

    ev = NanoEventsFactory.from_root({str(REAL_NANOAOD / "nano_dy.root"): "Events"}, mode="virtual").events()
    for muons, jets in ((reco_muons(ev), reco_jets(ev)), (gen_muons(ev), gen_jets(ev))):
        r = analyse(muons, jets, dnn=False)
        assert r.cutflow["all"].sum() == 40
        assert r.cutflow["two_muons"].sum() > 0
        two = r.cutflow["opposite_charge"]
        assert np.all(np.isfinite(r.variables["mumu_pt"][two]))


@needs_real
def test_gen_mode_on_data_names_missing_branches():
    from flashsim_coffea.analysis import gen_jets, gen_muons
    from flashsim_coffea.errors import MissingBranchesError

    ev = NanoEventsFactory.from_root({str(REAL_NANOAOD / "nano_dimuon.root"): "Events"}, mode="virtual").events()
    with pytest.raises(MissingBranchesError, match="GenPart_pt"):
        gen_muons(ev)
    with pytest.raises(MissingBranchesError, match="GenJet_pt"):
        gen_jets(ev)
