"""The reference detector response: API, determinism, cross-references and the physics it must show."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from conftest import real_file
from flashsim_coffea.errors import MissingBranchesError
from flashsim_coffea.nanoaod.precision import NANOAOD_MANTISSA_BITS
from flashsim_coffea.reference import JET_BRANCHES, MUON_BRANCHES, respond
from flashsim_coffea.generate.synthetic import synthetic_gen

N_EVENTS = 8000


def fl(a) -> np.ndarray:
    return ak.to_numpy(ak.flatten(a))


@pytest.fixture(scope="module")
def gen():
    return synthetic_gen(N_EVENTS, seed=11)


@pytest.fixture(scope="module")
def out(gen):
    return respond(gen, seed=5)


@pytest.fixture(scope="module")
def jets(gen, out):
    """Flat reco jets joined with their GenJet (NaN / −1 for fakes) and event pile-up."""
    d = {k[4:]: fl(v) for k, v in out.items() if k.startswith("Jet_")}
    evt = np.repeat(np.arange(N_EVENTS), ak.to_numpy(ak.num(out["Jet_pt"])))
    off = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(gen["GenJet_pt"])))])
    real = d["genJetIdx"] >= 0
    gi = np.where(real, off[evt] + d["genJetIdx"], 0)
    for v in ("pt", "eta", "mass"):
        g = fl(gen[f"GenJet_{v}"]).astype(np.float64)[gi]
        d[f"gen_{v}"] = np.where(real, g, np.nan)
    d["real"], d["evt"], d["ntrue"] = real, evt, np.asarray(gen["Pileup_nTrueInt"])[evt]
    d["ratio"] = d["pt"] / d["gen_pt"]
    return d


@pytest.fixture(scope="module")
def muons(gen, out):
    d = {k[5:]: fl(v) for k, v in out.items() if k.startswith("Muon_")}
    evt = np.repeat(np.arange(N_EVENTS), ak.to_numpy(ak.num(out["Muon_pt"])))
    off = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(gen["GenPart_pt"])))])
    gi = off[evt] + d["genPartIdx"]
    for v in ("pt", "eta", "pdgId", "status"):
        d[f"gen_{v}"] = fl(gen[f"GenPart_{v}"])[gi]
    d["evt"], d["ntrue"] = evt, np.asarray(gen["Pileup_nTrueInt"])[evt]
    return d


def robust_width(x):
    q16, q84 = np.percentile(x, [16, 84])
    return 0.5 * (q84 - q16)


# ------------------------------------------------------------------ API and structure
def test_branches_and_dtypes(out):
    assert set(out) == set(JET_BRANCHES) | set(MUON_BRANCHES)
    for k, dt in {**JET_BRANCHES, **MUON_BRANCHES}.items():
        assert len(out[k]) == N_EVENTS
        assert out[k].ndim == 2, k
        assert fl(out[k]).dtype == dt, k
    assert JET_BRANCHES["Jet_pt"] == np.float32 and JET_BRANCHES["Jet_puId"] == np.int32
    assert MUON_BRANCHES["Muon_genPartFlav"] == np.uint8 and MUON_BRANCHES["Muon_mediumId"] == np.bool_


def test_sorted_and_threshold(out):
    for c in ("Jet", "Muon"):
        pt = out[f"{c}_pt"]
        assert ak.all(pt[:, 1:] <= pt[:, :-1])
    assert ak.all(out["Jet_pt"] > 15.0)
    assert ak.all(out["Muon_pt"] > 3.0)
    assert np.allclose(fl(out["Muon_mass"]), 0.10566, atol=2e-4)


def test_precision_applied(out):
    for k, bits in NANOAOD_MANTISSA_BITS.items():
        if k in out and bits < 23:
            x = fl(out[k]).view(np.uint32)
            assert not (x & np.uint32((1 << (23 - bits)) - 1)).any(), k
    # coarse 6-bit errors: few distinct values per octave ("jagged" shapes)
    e = fl(out["Muon_dxyErr"])
    e = e[(e >= 0.001) & (e < 0.002)]
    assert len(np.unique(e)) <= 64


def test_determinism_and_chunking(gen, out):
    again = respond(gen, seed=5)
    other = respond(gen, seed=6)
    for k in out:
        assert ak.all(ak.flatten(again[k]) == ak.flatten(out[k])), k
    assert not np.array_equal(fl(other["Jet_pt"])[:100], fl(out["Jet_pt"])[:100]) or not ak.all(
        ak.num(other["Jet_pt"]) == ak.num(out["Jet_pt"]))
    cuts = [0, 1, 777, 3000, 3001, N_EVENTS]
    parts = [respond({k: v[a:b] for k, v in gen.items()}, seed=5) for a, b in zip(cuts[:-1], cuts[1:])]
    for k in out:
        whole = out[k]
        chunked = ak.concatenate([p[k] for p in parts])
        assert ak.all(ak.num(chunked) == ak.num(whole)), k
        assert np.array_equal(fl(chunked), fl(whole)), k


def test_missing_branches(gen):
    bad = {k: v for k, v in gen.items() if not k.startswith("GenJet_")}
    with pytest.raises(MissingBranchesError) as e:
        respond(bad, seed=1)
    assert "GenJet_pt" in str(e.value) and "GenJet_hadronFlavour" in str(e.value)
    assert "GenJet_pt" in e.value.missing


def test_optional_pileup_and_dtypes():
    g = synthetic_gen(50, seed=3, with_pileup_extras=False)
    g["run"] = np.asarray(g["run"]).astype(np.int64)  # any integer dtype is accepted
    g["GenJet_pt"] = ak.values_astype(g["GenJet_pt"], np.float64)
    o = respond(g, seed=1)
    assert len(o["Jet_pt"]) == 50


def test_empty_input():
    g = synthetic_gen(3, seed=1)
    o = respond({k: v[:0] for k, v in g.items()}, seed=1)
    assert len(o["Jet_pt"]) == 0 and len(o["Muon_pt"]) == 0


def test_cross_references(gen, out, jets, muons):
    ngj = ak.to_numpy(ak.num(gen["GenJet_pt"]))[jets["evt"]]
    assert np.all(jets["genJetIdx"] < ngj)
    # each GenJet gives at most one reco jet
    gi = jets["evt"][jets["real"]] * 100 + jets["genJetIdx"][jets["real"]]
    assert len(np.unique(gi)) == gi.size
    assert np.all(muons["gen_status"] == 1) and np.all(np.abs(muons["gen_pdgId"]) == 13)
    nmu = ak.to_numpy(ak.num(out["Muon_pt"]))
    nj = ak.to_numpy(ak.num(out["Jet_pt"]))
    jet_local = ak.local_index(out["Jet_pt"], axis=1)
    for i in ("muonIdx1", "muonIdx2"):
        m = out[f"Jet_{i}"]
        assert ak.all((m >= -1) & (m < ak.num(out["Muon_pt"])))
    assert ak.all(ak.where(out["Jet_muonIdx2"] >= 0, out["Jet_muonIdx1"] >= 0, True))
    assert ak.all(ak.where(out["Jet_muonIdx2"] >= 0, out["Jet_muonIdx2"] > out["Jet_muonIdx1"], True))
    assert np.all(np.minimum(jets["nMuons"], 2) == (jets["muonIdx1"] >= 0).astype(int) + (jets["muonIdx2"] >= 0))
    # Muon_jetIdx -> that jet lists the muon (if among its two leading) and is within dR < 0.4
    mj = muons["jetIdx"]
    assert np.all(mj < nj[muons["evt"]])
    has = mj >= 0
    joff = np.concatenate([[0], np.cumsum(nj)])
    moff = np.concatenate([[0], np.cumsum(nmu)])
    gj = joff[muons["evt"][has]] + mj[has]
    dphi = (jets["phi"][gj] - muons["phi"][has] + np.pi) % (2 * np.pi) - np.pi
    assert np.all(np.hypot(jets["eta"][gj] - muons["eta"][has], dphi) < 0.4 + 1e-3)
    assert np.all(jets["nMuons"][gj] >= 1)
    mloc = (np.arange(len(muons["pt"])) - moff[muons["evt"]])[has]
    listed = (jets["muonIdx1"][gj] == mloc) | (jets["muonIdx2"][gj] == mloc)
    assert listed.mean() > 0.95
    assert np.all(muons["jetPtRelv2"][~has] == 0)
    del jet_local


# ------------------------------------------------------------------ jets
def test_response_flavour(jets):
    j = jets
    sel = j["real"] & (j["gen_pt"] > 40) & (j["gen_pt"] < 300) & (np.abs(j["gen_eta"]) < 2.4)
    pf, hf = np.abs(j["partonFlavour"]), j["hadronFlavour"]
    med = lambda m: np.median(j["ratio"][sel & m])  # noqa: E731
    gluon, quark = med(pf == 21), med((pf >= 1) & (pf <= 3) & (hf == 0))
    assert gluon < quark
    b_mu = sel & (hf == 5) & (j["muEF"] > 0.02)
    b_nomu = sel & (hf == 5) & (j["muEF"] == 0)
    assert b_mu.sum() > 100 and b_nomu.sum() > 50
    assert np.median(j["ratio"][b_mu]) < np.median(j["ratio"][b_nomu]) < quark


def test_resolution_eta_pileup_tails(jets):
    j = jets
    base = j["real"] & (j["gen_pt"] > 60) & (j["gen_pt"] < 150)
    central = base & (np.abs(j["gen_eta"]) < 1.3)
    forward = base & (np.abs(j["gen_eta"]) > 3.0)
    assert robust_width(j["ratio"][forward]) > 1.2 * robust_width(j["ratio"][central])
    low = j["real"] & (j["gen_pt"] > 30) & (j["gen_pt"] < 50) & (np.abs(j["gen_eta"]) < 2.5)
    w_lo = robust_width(j["ratio"][low & (j["ntrue"] < 25)])
    w_hi = robust_width(j["ratio"][low & (j["ntrue"] > 45)])
    assert w_hi > w_lo
    r = j["ratio"][central]
    w = robust_width(r)
    # non-Gaussian tails: more than the Gaussian 0.27 % beyond 3 sigma, mostly on the low side
    far = np.abs(r - np.median(r)) > 3 * w
    assert far.mean() > 0.01
    assert (r[far] < np.median(r)).mean() > 0.5


def test_angles_and_mass(jets):
    j = jets
    assert np.all(np.abs(j["phi"]) <= np.pi)
    real = j["real"]
    assert np.std(j["eta"][real] - j["gen_eta"][real]) < 0.1
    mr = j["mass"][real] / j["gen_mass"][real]
    assert np.all(mr > 0) and 0.8 < np.median(mr) < 1.3 and robust_width(mr) > 0.1


def test_taggers(jets):
    j = jets
    central = (np.abs(j["eta"]) < 2.4) & j["real"] & (j["pt"] > 30)
    hf = j["hadronFlavour"]
    for t in ("btagDeepB", "btagDeepFlavB", "btagCSVV2"):
        m = [np.median(j[t][central & (hf == f) & (j[t] >= 0)]) for f in (5, 4, 0)]
        assert m[0] > m[1] > m[2], t
        assert m[0] > 0.5 and m[2] < 0.1
    ok = central & (j["btagDeepB"] >= 0)
    assert np.corrcoef(j["btagDeepB"][ok], j["btagDeepFlavB"][ok])[0, 1] > 0.5
    assert np.corrcoef(j["btagDeepB"][ok], j["btagCSVV2"][ok])[0, 1] > 0.5
    # c tagger: c jets highest
    mc = [np.median(j["btagDeepFlavC"][central & (hf == f)]) for f in (4, 0)]
    assert mc[0] > mc[1]
    for t in ("btagDeepB", "btagDeepC", "btagCSVV2", "btagDeepFlavB", "btagDeepFlavC"):
        x = j[t]
        assert np.all(((x >= 0) & (x <= 1)) | (x == -1)), t
    assert np.all((j["btagCMVA"] >= -1) & (j["btagCMVA"] <= 1))
    assert np.all(j["btagDeepB"][ok] + j["btagDeepC"][ok] <= 1.0 + 2e-3)
    fwd = np.abs(j["eta"]) > 2.6
    for t in ("btagDeepB", "btagDeepC", "btagCSVV2", "btagCMVA"):
        assert np.all(j[t][fwd] == -1), t
    assert np.all(j["btagDeepFlavB"][fwd] >= 0)
    inside = np.abs(j["eta"]) < 2.4
    f_undef = np.mean(j["btagDeepB"][inside] == -1)
    assert 0.0 < f_undef < 0.02


def test_qgl_and_constituents(jets):
    j = jets
    c = j["real"] & (np.abs(j["eta"]) < 2.4) & (j["pt"] > 30)
    pf = np.abs(j["partonFlavour"])
    gl, qk = c & (pf == 21), c & (pf >= 1) & (pf <= 3)
    assert np.median(j["qgl"][gl]) < 0.5 < np.median(j["qgl"][qk])
    assert np.all((j["qgl"] >= 0) & (j["qgl"] <= 1))
    assert np.corrcoef(j["qgl"][c], j["nConstituents"][c])[0, 1] < -0.1
    n = j["nConstituents"]
    assert n.dtype == np.int32 and n.min() >= 1
    assert np.mean(n[gl]) > np.mean(n[qk])
    lo = j["real"] & (j["pt"] < 30) & (np.abs(j["eta"]) < 2.4)
    hi = j["real"] & (j["pt"] > 100) & (np.abs(j["eta"]) < 2.4)
    assert np.mean(n[hi]) > np.mean(n[lo]) + 3


def test_bregcorr_area_muef_ids(jets):
    j = jets
    c = j["real"] & (np.abs(j["eta"]) < 2.4) & (j["pt"] > 30)
    b, light = c & (j["hadronFlavour"] == 5), c & (j["hadronFlavour"] == 0)
    assert np.mean(j["bRegCorr"][b]) > np.mean(j["bRegCorr"][light])
    assert 1.0 < np.median(j["bRegCorr"][b]) < 1.15
    assert np.std(j["bRegCorr"][light]) < np.std(j["bRegCorr"][b])
    assert np.corrcoef(j["bRegCorr"][b], j["ratio"][b])[0, 1] < -0.2
    assert 0.45 < np.mean(j["area"]) < 0.55 and np.std(j["area"]) < 0.06
    assert np.mean(j["muEF"] == 0) > 0.8
    assert np.all((j["muEF"] >= 0) & (j["muEF"] < 1))
    assert set(np.unique(j["jetId"])) <= {0, 2, 6}
    assert np.all(j["jetId"][j["muEF"] > 0.8] != 6)
    assert np.all(j["jetId"][(j["muEF"] < 0.8)] != 2)
    assert 0.003 < np.mean(j["jetId"] == 0) < 0.05
    assert set(np.unique(j["puId"])) <= {0, 4, 6, 7}
    assert np.all(j["puId"][j["real"] & (j["pt"] >= 50)] == 7)
    lowpt = j["real"] & (j["pt"] < 50)
    assert np.mean(j["puId"][lowpt] == 7) > 0.35  # real Run-2 DY: ~45 % at pT < 50
    assert np.mean(j["puId"][lowpt] >= 4) > np.mean(j["puId"][~j["real"]] >= 4) + 0.2
    assert np.mean(j["puId"][lowpt & (j["ntrue"] > 45)] == 7) < np.mean(j["puId"][lowpt & (j["ntrue"] < 25)] == 7)


def test_efficiency(gen, jets):
    gpt = fl(gen["GenJet_pt"])
    geta = np.abs(fl(gen["GenJet_eta"]))
    matched = np.zeros(gpt.size, bool)
    off = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(gen["GenJet_pt"])))])
    matched[off[jets["evt"][jets["real"]]] + jets["genJetIdx"][jets["real"]]] = True
    c = geta < 2.5
    e_lo = matched[c & (gpt > 12) & (gpt < 16)].mean()
    e_hi = matched[c & (gpt > 40) & (gpt < 60)].mean()
    assert e_lo < 0.6 < 0.95 < e_hi


def test_pileup_fakes(gen, jets):
    j = jets
    fake = ~j["real"]
    assert fake.sum() > 100
    assert np.all(j["genJetIdx"][fake] == -1)
    assert np.all(j["hadronFlavour"][fake] == 0) and np.all(j["partonFlavour"][fake] == 0)
    assert np.mean(np.abs(j["eta"][fake]) > 2.5) > 0.5
    assert np.mean(j["puId"][fake] <= 4) > 0.6
    nfake = np.bincount(j["evt"][fake], minlength=N_EVENTS)
    nt = np.asarray(gen["Pileup_nTrueInt"])
    assert nfake[nt > 45].mean() > 1.5 * nfake[nt < 25].mean()
    assert np.mean(j["nConstituents"][fake]) < np.mean(j["nConstituents"][j["real"]])
    assert np.median(j["pt"][fake]) < 25


# ------------------------------------------------------------------ muons
def test_muon_origin_and_kinematics(muons):
    m = muons
    assert set(np.unique(m["genPartFlav"])) <= {1, 3, 4, 5, 15}
    assert {1, 5, 4, 15, 3} <= set(np.unique(m["genPartFlav"]))
    r = m["pt"] / m["gen_pt"]
    assert abs(np.median(r) - 1) < 0.005
    w_c = robust_width(r[(np.abs(m["gen_eta"]) < 0.9) & (m["gen_pt"] > 20)])
    w_f = robust_width(r[(np.abs(m["gen_eta"]) > 1.8) & (m["gen_pt"] > 20)])
    assert 0.005 < w_c < w_f < 0.04
    # ptErr estimates the resolution: pull width ~ 1
    pull = (r - 1) / (m["ptErr"] / m["pt"])
    assert 0.8 < robust_width(pull) < 1.25
    assert np.all(m["pdgId"] == -13 * m["charge"])
    assert np.mean(m["charge"] == -np.sign(m["gen_pdgId"])) > 0.999
    assert np.std(m["eta"] - m["gen_eta"]) < 0.01


def test_muon_efficiency(gen, muons):
    gp = {k: fl(gen[f"GenPart_{k}"]) for k in ("pt", "eta", "pdgId", "status")}
    cand = (np.abs(gp["pdgId"]) == 13) & (gp["status"] == 1) & (np.abs(gp["eta"]) < 2.4) & (gp["pt"] > 3)
    off = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(gen["GenPart_pt"])))])
    found = np.zeros(gp["pt"].size, bool)
    found[off[muons["evt"]] + muons["genPartIdx"]] = True
    hi = cand & (gp["pt"] > 20)
    lo = cand & (gp["pt"] < 6)
    assert 0.95 < found[hi].mean() <= 0.995
    assert found[lo].mean() < found[hi].mean() - 0.1


def test_muon_impact_parameters(muons):
    m = muons
    prompt, b = m["genPartFlav"] == 1, m["genPartFlav"] == 5
    assert np.median(np.abs(m["dxy"][b])) > 3 * np.median(np.abs(m["dxy"][prompt]))
    assert np.median(m["sip3d"][b]) > 2 * np.median(m["sip3d"][prompt])
    assert np.all(m["dxyErr"] > 0) and np.all(m["dzErr"] > 0)
    assert np.median(m["dxyErr"][m["pt"] < 10]) > np.median(m["dxyErr"][m["pt"] > 40])
    cosh = np.cosh(m["eta"].astype(np.float64))
    ip = np.hypot(m["dxy"], m["dz"] / cosh)
    assert np.allclose(m["ip3d"], ip, rtol=0.01, atol=1e-5)
    sip = m["ip3d"] / np.hypot(m["dxyErr"], m["dzErr"] / cosh)
    assert np.median(np.abs(m["sip3d"] / sip - 1)) < 0.05


def test_muon_isolation(muons):
    m = muons
    prompt, b = m["genPartFlav"] == 1, m["genPartFlav"] == 5
    assert np.mean(m["pfRelIso04_all"][prompt] == 0) > 0.1
    assert np.median(m["pfRelIso04_all"][prompt]) < 0.1
    assert np.median(m["pfRelIso04_all"][b]) > 0.5
    assert np.all(m["pfRelIso03_chg"] <= m["pfRelIso03_all"] + 1e-6)
    assert np.mean(m["pfRelIso04_all"] >= m["pfRelIso03_all"]) > 0.9
    assert np.all(m["pfRelIso04_all"] >= 0)
    # grows with pile-up
    iso = m["pfRelIso04_all"]
    assert np.mean(iso[prompt & (m["ntrue"] > 45)]) > np.mean(iso[prompt & (m["ntrue"] < 25)])
    assert np.median(m["jetPtRelv2"][b & (m["jetIdx"] >= 0)]) > 0


def test_muon_ids(muons):
    m = muons
    assert np.all(~m["mediumId"] | m["looseId"])
    assert np.all(~m["looseId"] | (m["isPFcand"] & (m["isGlobal"] | m["isTracker"])))
    assert np.all(~m["tightId"] | (m["mediumId"] & m["isGlobal"]))
    assert np.all(~m["softMvaId"] | (m["softId"] & (m["softMva"] > 0.58)))
    assert np.all((m["softMva"] >= -1) & (m["softMva"] <= 1))
    prompt, light = m["genPartFlav"] == 1, m["genPartFlav"] == 3
    assert m["mediumId"][prompt].mean() > 0.95
    assert m["mediumId"][light].mean() < m["mediumId"][prompt].mean()
    assert np.median(m["softMva"][prompt]) > np.median(m["softMva"][light])


# ------------------------------------------------------------------ real NanoAOD
def test_real_nanoaod_gen_inputs():
    uproot = pytest.importorskip("uproot")
    f = real_file("nano_dy.root")
    t = uproot.open(f)["Events"]
    keys = [k for k in t.keys() if k.startswith(("GenJet_", "GenPart_", "Pileup_")) or k in ("run", "luminosityBlock", "event")]
    gen = t.arrays(keys, how=dict)
    o = respond(gen, seed=1)
    assert len(o["Jet_pt"]) == t.num_entries
    njr = ak.to_numpy(ak.num(t["Jet_pt"].array()))
    nj = ak.to_numpy(ak.num(o["Jet_pt"]))
    assert 0.5 < nj.sum() / max(njr.sum(), 1) < 2.0
    mu = o["Muon_genPartIdx"]
    pdg = gen["GenPart_pdgId"][mu]
    assert ak.all(abs(pdg) == 13) and ak.all(gen["GenPart_status"][mu] == 1)
    # the prompt Drell-Yan muons come out prompt and isolated
    flav = fl(o["Muon_genPartFlav"])
    assert np.mean(np.isin(flav, (1, 15))) > 0.7
    assert np.median(fl(o["Muon_pfRelIso04_all"])[flav == 1]) < 0.15
    with pytest.raises(MissingBranchesError, match="GenJet_pt"):
        respond({k: v for k, v in gen.items() if k != "GenJet_pt"}, seed=1, source=str(f))


def test_genjet_muon_context(gen):
    from flashsim_coffea.reference._inputs import read_gen
    from flashsim_coffea.reference.jets import genjet_muon_context

    g = read_gen(gen)
    c = genjet_muon_context(g)
    has1, has2 = c["mu1_pt"] > 0, c["mu2_pt"] > 0
    assert np.all(c["mu1_dr"][has1] < 0.4) and np.all(c["mu1_dr"][~has1] == 0.5)
    assert np.all(~has2 | has1)
    assert np.all(c["mu1_dr"][has2] <= c["mu2_dr"][has2])
    # synthetic b events put a hadron-decay muon inside GenJet 0
    b0 = (g.genjet.local == 0) & (g.genjet["hadronFlavour"] == 5)
    assert has1[b0].mean() > 0.5
    assert np.all((c["share"] >= 0) & (c["share"] <= 1))
    assert np.array_equal(genjet_muon_context(g, ranked=False)["share"], c["share"])
