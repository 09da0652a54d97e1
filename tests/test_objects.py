"""Object specs: dimensions, serialisation, transforms, Gen features and extraction on real NanoAOD."""

from __future__ import annotations

import json
import awkward as ak
import numpy as np
import pytest
import uproot

from conftest import REAL_NANOAOD, needs_real
from flashsim_coffea.errors import MissingBranchesError, UserError
from flashsim_coffea.objects import (
    Arctan, Asinh, Identity, Log, Log1p, Logit, ObjectSpec, Target, get_spec, known_specs, register_spec,
)
from flashsim_coffea.objects.extract import extract_files
from flashsim_coffea.nanoaod.conventions import delta_r
from flashsim_coffea.objects.transforms import transform_from_dict
from flashsim_coffea.objects.jets import GENJET, GENMUON, muon_neighbour_features, tagger
from flashsim_coffea.nanoaod.precision import round_mantissa


def test_default_spec_dimensions():
    jets, muons = get_spec("jets"), get_spec("muons")
    assert (len(jets.conditioning), len(jets.targets)) == (15, 21)
    assert (len(muons.conditioning), len(muons.targets)) == (32, 26)
    assert {"nConstituents", "jetId", "puId", "btagDeepB", "qgl", "rawFactor", "chHEF", "neHEF", "chEmEF"} <= set(jets.target_names)
    assert {"isGlobal", "mediumId", "pfRelIso04_all", "ptErr", "dxyErr", "tightId", "highPtId", "miniPFRelIso_all",
            "tkRelIso"} <= set(muons.target_names)


def test_spec_hash_stable_and_roundtrip():
    for name in ("jets", "muons"):
        spec = get_spec(name)
        assert spec.hash() == get_spec(name).hash()
        back = ObjectSpec.from_dict(json.loads(spec.to_json()))
        assert back == spec and back.hash() == spec.hash()
    assert get_spec("jets").hash() != get_spec("muons").hash()


def test_unknown_spec_lists_known():
    with pytest.raises(UserError, match="known specs: jets, muons"):
        get_spec("electrons")
    assert {"jets", "muons"} <= set(known_specs())


def test_spec_from_json_file(tmp_path):
    path = tmp_path / "myjets.json"
    path.write_text(get_spec("jets").to_json())
    assert get_spec(str(path)).hash() == get_spec("jets").hash()


@pytest.mark.parametrize("tr", [Identity(), Arctan(scale=150.0), Arctan(scale=5.0, shift=1.0), Asinh(scale=100.0, shift=1.0),
                                Log(eps=1e-3), Log1p()])
def test_transform_exact_inverse(tr):
    x = np.concatenate([np.linspace(0.0, 2.0, 1001), np.geomspace(1e-6, 50.0, 500)])
    np.testing.assert_allclose(tr.inverse(tr.forward(x)), x, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("tr", [Logit(), Logit(lo=-1.0, hi=1.0, eps=1e-4)])
def test_logit_exact_inverse_and_bounded_image(tr):
    x = np.concatenate([np.linspace(tr.lo, tr.hi, 2001), tr.hi - np.geomspace(1e-7, 0.5, 300)])
    np.testing.assert_allclose(tr.inverse(tr.forward(x)), x, rtol=0, atol=1e-13)
    y = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    e = tr.eps * (tr.hi - tr.lo)
    back = tr.inverse(y)
    assert np.all(np.isfinite(back)) and np.all((back >= tr.lo - e - 1e-12) & (back <= tr.hi + e + 1e-12))
    assert back[2] == pytest.approx((tr.lo + tr.hi) / 2)
    # σ(latent) scores become their latent: logit(σ(l)) = l away from the ends (eps small)
    lat = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(Logit(eps=1e-9).forward(1 / (1 + np.exp(-lat))), lat, atol=1e-6)
    assert transform_from_dict(tr.to_dict()) == tr


def test_neighbour_features_match_bruteforce():
    """Closest / second-closest Gen muon features agree with an explicit per-object loop."""
    events = ak.Array({
        "run": [1, 1], "luminosityBlock": [1, 1], "event": [1, 2],
        "GenJet_pt": [[50.0, 30.0], [40.0]], "GenJet_eta": [[0.0, 1.0], [-1.0]],
        "GenJet_phi": [[3.1, 0.0], [0.5]], "GenJet_mass": [[5.0, 3.0], [4.0]],
        "GenJet_partonFlavour": [[5, 21], [1]], "GenJet_hadronFlavour": [[5, 0], [0]],
        "GenPart_pt": [[10.0, 20.0, 5.0, 7.0], [3.0]], "GenPart_eta": [[0.1, -0.05, 1.1, 0.0], [2.0]],
        "GenPart_phi": [[-3.1, 3.05, 0.1, 3.0], [0.5]], "GenPart_mass": [[0.1] * 4, [0.1]],
        "GenPart_pdgId": [[13, -13, 11, 13], [13]], "GenPart_status": [[1, 1, 1, 2], [1]],
        "GenPart_statusFlags": [[1, 1, 1, 1], [1]], "GenPart_genPartIdxMother": [[-1, -1, -1, -1], [-1]],
        "Pileup_nTrueInt": [30.0, 40.0],
    })
    spec = get_spec("jets")
    cond = spec.conditioning_matrix(spec.context(events))
    names = spec.conditioning_names
    col = {n: cond[:, i] for i, n in enumerate(names)}
    # jet 0 (eta 0, phi 3.1): muons 0 (dR ~ 0.13 across the phi wrap) and 1 (dR ~ 0.06); electron / status-2 ignored
    d0 = delta_r(0.0, 3.1, 0.1, -3.1)
    d1 = delta_r(0.0, 3.1, -0.05, 3.05)
    assert col["GenMuon0_dr"][0] == pytest.approx(d1) and col["GenMuon0_pt"][0] == 20.0
    assert col["GenMuon1_dr"][0] == pytest.approx(d0) and col["GenMuon1_pt"][0] == 10.0
    assert col["GenMuon1_dphi"][0] == pytest.approx(-3.1 - 3.1 + 2 * np.pi)
    # jet 1 has no muon within 0.4 (the electron at dR 0.14 does not count): defaults
    assert [col[f"GenMuon0_{q}"][1] for q in ("dr", "pt", "deta", "dphi")] == [0.5, 0.0, 0.5, 0.5]
    # event 2: muon at dR 1.5 is outside the cone
    assert col["GenMuon0_dr"][2] == 0.5
    assert list(col["GenJet_pt"]) == [50.0, 30.0, 40.0]
    keys = spec.noise_keys(spec.context(events))
    assert list(keys["event"]) == [1, 1, 2] and list(keys["object"]) == [0, 1, 0]
    # the muons' closest GenJet and its activity around the muon, max(pT_jet − pT_μ, 0)/pT_μ,
    # (raw: the transform log(x + 0.01) is the preprocessing's): muon 0 (pT 10) and muon 1 (pT 20) are both closest to jet 0 (pT 50);
    # the event-2 muon (pT 3, η 2) has no GenJet within 0.4
    muons = get_spec("muons")
    for name in ("gpudensity", "nPU", "nTrueInt", "pudensity", "sumEOOT", "sumLOOT"):
        events = ak.with_field(events, [20.0, 30.0], f"Pileup_{name}")
    mcond = muons.conditioning_matrix(muons.context(events))
    mcol = {n: mcond[:, i] for i, n in enumerate(muons.conditioning_names)}
    assert mcol["ClosestGenJet_dr"][:2] == pytest.approx([d0, d1])
    np.testing.assert_allclose(mcol["ClosestGenJet_activity"], [40 / 10, 30 / 20, 0.0])
    # distance to the axis of the GenJet without the muon, ΔR·pT_jet/(pT_jet − pT_μ): the muon
    # is at the pT-weighted centroid of itself and that rest
    np.testing.assert_allclose(mcol["ClosestGenJet_dr_rest"], [d0 * 50 / 40, d1 * 50 / 30, 0.0], rtol=1e-6)
    # a GenJet made of the muon alone: ΔR·pT_jet/(10⁻³ pT_jet) instead of a division by zero
    alone = ak.with_field(events, [[20.0, 30.0], [3.0]], "GenJet_pt")
    acond = muons.conditioning_matrix(muons.context(alone))
    assert acond[1, muons.conditioning_names.index("ClosestGenJet_dr_rest")] == pytest.approx(d1 * 1e3, rel=1e-6)


def test_rebuild_relations_and_precision():
    spec = get_spec("jets")
    n = 5
    targets = {t: np.full(n, 0.5) for t in spec.target_names}
    targets.update(ptRatio=np.full(n, 1.1), phiMinusGen=np.full(n, 0.2), nConstituents=np.full(n, 12.0),
                   jetId=np.full(n, 6.0), etaMinusGen=np.full(n, -0.1))
    gen = {"pt": np.linspace(20, 100, n), "phi": np.full(n, 3.1), "eta": np.zeros(n), "mass": np.full(n, 8.0)}
    reco = spec.rebuild(targets, gen)
    np.testing.assert_array_equal(reco["pt"], round_mantissa(1.1 * gen["pt"], 10))
    np.testing.assert_allclose(reco["phi"], 3.3 - 2 * np.pi, atol=1e-3)  # 3.1 + 0.2 wrapped
    np.testing.assert_array_equal(reco["eta"], round_mantissa(np.full(n, -0.1), 12))
    assert reco["nConstituents"].dtype == np.int32 and reco["jetId"].tolist() == [6] * n
    assert set(np.unique(round_mantissa(reco["btagDeepB"], 10))) == set(np.unique(reco["btagDeepB"]))


@needs_real
def test_extraction_drop_counts_real_jets():
    f = str(REAL_NANOAOD / "nano_dy.root")
    spec = get_spec("jets")
    data, prov = extract_files(spec, [f], progress=False)
    ev = uproot.open(f)["Events"].arrays(["Jet_genJetIdx", "nGenJet", "Jet_pt"])
    idx = ev.Jet_genJetIdx
    n_unmatched = int(ak.sum(idx < 0))
    n_beyond = int(ak.sum(idx >= ev.nGenJet))
    assert prov["dropped"]["unmatched"] == n_unmatched == 91
    assert prov["dropped"]["gen_not_stored"] == n_beyond == 2
    assert prov["n_reco"] == int(ak.sum(ak.num(idx))) == 188
    assert len(data) == 188 - 91 - 2 - prov["dropped"]["duplicate"] - prov["dropped"]["nonfinite"] - prov["dropped"]["not_admissible"]
    assert data.cond.shape == (len(data), 15) and data.targets.shape == (len(data), 21)
    j = spec.target_names
    assert set(np.unique(data.targets[:, j.index("jetId")])) <= {0, 2, 6}
    assert set(np.unique(data.targets[:, j.index("puId")])) <= {0, 4, 6, 7}
    # ptRatio = Jet_pt / GenJet_pt for matched pairs
    np.testing.assert_allclose(data.targets[:, j.index("ptRatio")] * data.gen["pt"],
                               np.clip(data.targets[:, j.index("ptRatio")], 0, 3) * data.gen["pt"])
    assert np.isfinite(data.cond).all() and np.isfinite(data.targets).all()


@needs_real
def test_extraction_real_muons_match_status1():
    f = str(REAL_NANOAOD / "nano_dy.root")
    spec = get_spec("muons")
    data, prov = extract_files(spec, [f], progress=False)
    ev = uproot.open(f)["Events"].arrays(["Muon_genPartIdx", "Muon_pt", "GenPart_pt", "GenPart_pdgId", "GenPart_status"])
    assert prov["dropped"]["unmatched"] == int(ak.sum(ev.Muon_genPartIdx < 0))
    assert len(data) + sum(prov["dropped"].values()) == int(ak.sum(ak.num(ev.Muon_pt)))
    # each kept row: GenPart[object] is a status-1 muon and ptRatio = Muon_pt / GenPart_pt
    evt_index = {e: i for i, e in enumerate(uproot.open(f)["Events"]["event"].array(library="np"))}
    t = spec.target_names.index("ptRatio")
    for row in range(len(data)):
        i, g = evt_index[data.keys["event"][row]], data.keys["object"][row]
        assert abs(ev.GenPart_pdgId[i][g]) == 13 and ev.GenPart_status[i][g] == 1
        assert data.targets[row, t] == pytest.approx(
            ev.Muon_pt[i][ak.to_numpy(ev.Muon_genPartIdx[i]).tolist().index(g)] / ev.GenPart_pt[i][g], rel=1e-6)


@needs_real
def test_file_without_gen_is_refused():
    with pytest.raises(MissingBranchesError, match="GenJet_pt"):
        extract_files(get_spec("jets"), [str(REAL_NANOAOD / "nano_dimuon.root")], progress=False)


def run3_v12_jets_spec() -> ObjectSpec:
    """A user spec for Run-3 NanoAOD v12 jets, built only from the public spec classes."""
    from flashsim_coffea.objects.jets import GENJET_FEATURES, JET_KINEMATIC_TARGETS

    return ObjectSpec(
        name="jets_run3_v12",
        reco="Jet",
        simulated=GENJET,
        match="genJetIdx",
        collections=(GENMUON,),
        conditioning=GENJET_FEATURES + muon_neighbour_features(),
        targets=JET_KINEMATIC_TARGETS + (
            tagger("btagDeepFlavB"), tagger("btagPNetB"), tagger("btagRobustParTAK4B"),
            Target("nConstituents", "nConstituents", kind="integer", bounds=(1.0, 200.0), transform=Log(eps=0.0), dtype="int32"),
            Target("jetId", "jetId", kind="ordinal", values=(0.0, 2.0, 4.0, 6.0), dtype="int32"),
        ),
        description="Run-3 NanoAOD v12 jets (user-defined)",
    )


@needs_real
def test_user_defined_run3_spec_extracts_from_v12():
    from flashsim_coffea.objects import registry

    spec = run3_v12_jets_spec()
    register_spec(spec)
    try:
        assert get_spec("jets_run3_v12").hash() == spec.hash() != get_spec("jets").hash()
    finally:  # a registered Jet object would join every later FlashSim() of this test process
        registry._REGISTRY.pop(spec.name, None)
        registry._BUILT.pop(spec.name, None)
    data, prov = extract_files(spec, [str(REAL_NANOAOD / "nano_tt_v12.root")], progress=False)
    assert len(data) > 100 and data.targets.shape[1] == 9
    assert prov["dropped"]["unmatched"] > 0
    pnet = data.targets[:, spec.target_names.index("btagPNetB")]
    assert np.all(((pnet >= 0) & (pnet <= 1)) | (pnet == -1))
    # the Run-2 spec refuses the v12 file with the missing branches named
    with pytest.raises(MissingBranchesError, match="Jet_btagDeepB"):
        extract_files(get_spec("jets"), [str(REAL_NANOAOD / "nano_tt_v12.root")], progress=False)


@needs_real
def test_nanoevents_and_flat_arrays_give_same_conditioning():
    import warnings

    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    f = str(REAL_NANOAOD / "nano_dy.root")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = NanoEventsFactory.from_root({f: "Events"}, schemaclass=NanoAODSchema, mode="virtual").events()
    for name in ("jets", "muons"):
        spec = get_spec(name)
        ctx = spec.context(events)
        flat = uproot.open(f)["Events"].arrays(spec.gen_branches())
        fctx = spec.context(flat)
        np.testing.assert_array_equal(spec.conditioning_matrix(ctx), spec.conditioning_matrix(fctx))
        assert spec.counts(ctx).sum() == len(spec.conditioning_matrix(ctx))
        for k, v in spec.gen_fields(ctx).items():
            np.testing.assert_array_equal(v, spec.gen_fields(fctx)[k])


@needs_real
def test_extraction_with_resimulated_reference_is_deterministic():
    f = str(REAL_NANOAOD / "nano_dy.root")
    a, prov = extract_files(get_spec("muons"), [f], progress=False, resimulate=5)
    b, _ = extract_files(get_spec("muons"), [f], progress=False, resimulate=5)
    c, _ = extract_files(get_spec("muons"), [f], progress=False, resimulate=6)
    assert len(a) > 5 and prov["reco"].startswith("reference.respond(seed 5)")
    np.testing.assert_array_equal(a.targets, b.targets)
    assert not np.array_equal(a.targets[:, 2], c.targets[:len(a), 2]) if len(c) >= len(a) else True


@needs_real
def test_scaled_ip3d_targets_rebuild_the_reference_relation():
    """ip3d/sip3d are targets relative to √(dxy² + (dz/cosh η)²) and ip3d/√(dxyErr² + (dzErr/cosh η)²):
    ≈ 1 up to NanoAOD rounding in the reference; the rebuild restores the reco values exactly."""
    from flashsim_coffea.validation.report import comparable

    spec = get_spec("muons")
    assert [t.name for t in spec.targets if t.relation == "scaled"] == ["ip3d", "sip3d"]
    data, _ = extract_files(spec, [str(REAL_NANOAOD / "nano_dy.root")], progress=False, resimulate=5)
    names = spec.target_names
    for name in ("ip3d", "sip3d"):
        r = data.targets[:, names.index(name)]
        assert np.all(np.abs(r - 1) < 0.02), name  # the reference's relation, to rounding
    targets = {n: data.targets[:, j] for j, n in enumerate(names)}
    reco = spec.rebuild(targets, data.gen, precision=False)
    expect = np.hypot(reco["dxy"], reco["dz"] / np.cosh(data.gen["eta"])) * targets["ip3d"]
    np.testing.assert_allclose(reco["ip3d"], expect.astype(np.float32), rtol=1e-6)
    # back to targets: exact round trip; validation compares the reco values
    back = spec.targets_from_reco({k: np.asarray(v, np.float64) for k, v in reco.items()}, data.gen)
    np.testing.assert_allclose(back, data.targets, rtol=1e-5, atol=1e-6)
    shown = comparable(spec, data.targets, data.gen)
    np.testing.assert_allclose(shown[:, names.index("ip3d")], reco["ip3d"], rtol=1e-6)
    from dataclasses import replace

    with pytest.raises(ValueError, match="needs reco targets"):
        replace(spec, targets=tuple(t for t in spec.targets if t.name != "dz"))
    swapped = sorted(spec.targets, key=lambda t: {"ip3d": 1, "sip3d": 0}.get(t.name, -1))
    with pytest.raises(ValueError, match="must come before"):
        replace(spec, targets=tuple(swapped))



@needs_real
def test_rounding_dequantization_fills_cells_and_rebuilds_the_reco_values():
    """Muon Δη, Δφ fill the 12-bit rounding cells of the reco η, φ (dequantize="rounding"):
    continuous targets whose rebuild with NanoAOD precision gives back the file's values."""
    from dataclasses import replace

    spec = get_spec("muons")
    plain = replace(spec, targets=tuple(replace(t, dequantize="uniform") if t.dequantize == "rounding" else t
                                         for t in spec.targets))
    assert [t.name for t in spec.targets if t.dequantize == "rounding"] == ["etaMinusGen", "phiMinusGen", "tkRelIso"]
    assert spec.extraction_hash() != plain.extraction_hash()  # extraction applies it
    f = [str(REAL_NANOAOD / "nano_dy.root")]
    filled, _ = extract_files(spec, f, progress=False)
    raw, _ = extract_files(plain, f, progress=False)
    again, _ = extract_files(spec, f, progress=False)
    np.testing.assert_array_equal(filled.targets, again.targets)  # keyed, reproducible
    names = spec.target_names
    for name, branch_ in (("etaMinusGen", "eta"), ("phiMinusGen", "phi")):
        j = names.index(name)
        assert len(np.unique(raw.targets[:, j])) < 0.9 * len(raw)  # lattice-valued in the file
        assert len(np.unique(filled.targets[:, j])) == len(filled)
        d = np.abs(filled.targets[:, j] - raw.targets[:, j])
        assert 0 < d.max() <= 2.0 ** -12 * 4  # within a cell (|η|, |φ| < 4)
        rebuilt = spec.rebuild({n: filled.targets[:, k] for k, n in enumerate(names)}, filled.gen)[branch_]
        expect = spec.rebuild({n: raw.targets[:, k] for k, n in enumerate(names)}, raw.gen)[branch_]
        np.testing.assert_array_equal(rebuilt, expect)
    others = [j for j, t in enumerate(spec.targets) if t.dequantize != "rounding"]
    np.testing.assert_array_equal(filled.targets[:, others], raw.targets[:, others])
    with pytest.raises(ValueError, match="full float32 precision"):
        replace(spec, targets=tuple(replace(t, dequantize="rounding") if t.name == "ptRatio" else t for t in spec.targets))
    with pytest.raises(ValueError, match="'rounding' only for real"):
        Target("isGlobal", "isGlobal", kind="ordinal", values=(0.0, 1.0), dequantize="rounding")


def test_derived_fields_need_a_derivation_and_its_inputs():
    """A spec's derived fields must have a NanoAOD derivation whose inputs the spec makes, and must not
    also be drawn: refused when the spec is built, not when a chunk is simulated."""
    import dataclasses

    muons = get_spec("muons")
    with pytest.raises(ValueError, match="no derivation of Muon_dxy"):
        dataclasses.replace(muons, rules=dataclasses.replace(muons.rules, derived=("dxy",)))
    with pytest.raises(ValueError, match="pfIsoId needs pfRelIso04_all"):
        dataclasses.replace(muons, targets=tuple(t for t in muons.targets if t.branch != "pfRelIso04_all"))
    jets = get_spec("jets")
    with pytest.raises(ValueError, match="btagDeepFlavCvL needs btagDeepFlavC"):
        dataclasses.replace(jets, targets=tuple(t for t in jets.targets if t.branch != "btagDeepFlavC"))
