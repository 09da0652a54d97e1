"""FlashSim injection into coffea NanoEvents (tiny models; the shipped ones in integration tests)."""

from __future__ import annotations

import pickle

import awkward as ak
import numpy as np
import pytest
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from conftest import real_file
from flashsim_coffea.errors import MissingBranchesError, UserError
from flashsim_coffea.folds import FoldBatch
from flashsim_coffea.inject import FlashSim


def events_of(path, mode="virtual"):
    return NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=NanoAODSchema, mode=mode, metadata={"filename": str(path)}
    ).events()


@pytest.fixture(scope="module")
def sim(tiny_models):
    """The Gen-matched machinery alone (pile-up jets: the last tests here and tests/test_pileup_jets.py)."""
    return FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"], pileup_jets=False)


@pytest.fixture(scope="module")
def ev(generated):
    path, _ = generated("vbf_hmm", 100)
    return events_of(path)


def test_injected_collections_behave_as_nanoaod(sim, ev):
    out = sim.inject(ev)
    jets, muons = out.Jet, out.Muon
    assert len(out) == len(ev)
    # NanoAOD conventions: pT-sorted, reco threshold, index into GenJet, matched_gen resolves
    assert ak.all(jets.pt > 15) and ak.all(jets.pt[:, :-1] >= jets.pt[:, 1:])
    assert ak.all((jets.genJetIdx >= 0) & (jets.genJetIdx < ak.num(ev.GenJet)))
    gen = jets.matched_gen
    assert ak.all(gen.pt == ev.GenJet.pt[jets.genJetIdx])
    assert ak.all(abs(jets.eta - gen.eta) < 0.5)
    assert ak.all(abs(muons.matched_gen.pdgId) == 13) and ak.all(muons.matched_gen.status == 1)
    assert ak.all(abs(muons.matched_gen.eta) < 2.4)
    assert ak.all(muons.charge == -np.sign(muons.matched_gen.pdgId))
    # four-vector behaviour: dimuon mass of VBF H -> mumu near 125 GeV for most events
    two = muons[ak.num(muons) >= 2]
    m = (two[:, 0] + two[:, 1]).mass
    assert 0.5 < ak.mean((m > 100) & (m < 150))
    d = jets.delta_r(jets.nearest(muons))
    assert ak.all(ak.fill_none(ak.flatten(d), 0) >= 0)
    # discrete targets snapped
    assert set(np.unique(ak.to_numpy(ak.flatten(jets.jetId)))) <= {0, 2, 6}
    assert set(np.unique(ak.to_numpy(ak.flatten(jets.puId)))) <= {0, 4, 6, 7}
    assert ak.all(jets.nConstituents >= 1)
    # NanoAOD's links between the FlashSim collections (tests/test_links.py checks their values)
    assert {"muonIdx1", "muonIdx2", "nMuons"} <= set(jets.fields) and "jetIdx" in muons.fields
    assert "muonIdxG" not in jets.fields and "jetIdxG" not in muons.fields


def test_folds_repeat_events_with_identity_and_fold0_is_folds1(sim, ev):
    one = sim.inject(ev)
    five = sim.inject(ev, folds=5)
    assert len(five) == 5 * len(ev)
    assert ak.all(five.fold == np.tile(np.arange(5), len(ev)))
    assert ak.all(five.event == np.repeat(ak.to_numpy(ev.event), 5))
    assert ak.all(five.Jet.pt[::5] == one.Jet.pt)  # fold 0 = the unfolded draw
    assert not ak.all(ak.num(five.Jet[1::5]) == ak.num(one.Jet)) or not ak.all(five.Jet.pt[1::5] == one.Jet.pt)
    assert ak.all(five.Jet.matched_gen.pt == ak.concatenate([ev.GenJet.pt[i : i + 1] for i in np.repeat(np.arange(len(ev)), 5)])[five.Jet.genJetIdx])


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_same_object_same_values_whatever_the_chunking(sim, ev, precision, tiny_models):
    if precision != "float32":
        sim = FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"], precision=precision)
    whole = sim.inject(ev, folds=3)
    parts = [sim.inject(ev[a:b], folds=3) for a, b in ((0, 17), (17, 64), (64, len(ev)))]
    for coll in ("Jet", "Muon"):
        joined = ak.concatenate([p[coll].pt for p in parts])
        assert ak.all(joined == whole[coll].pt)
    if precision != "float32":  # a slightly different model: close to float32, not equal
        ref = FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"]).inject(ev, folds=3)
        a, b = ak.flatten(ref.Muon.pt), ak.flatten(whole.Muon.pt)
        assert len(a) == len(b) and not ak.all(a == b) and np.median(np.abs(ak.to_numpy(a / b) - 1)) < 0.01


def test_fold_batches_equal_all_folds_at_once(sim, ev):
    whole = sim.inject(ev, folds=5)
    batches = [(b.events, (int(b.batch.fold.min()), int(b.batch.fold.max()) + 1)) for b in
               sim.inject_batches(ev, folds=5, max_events=2 * len(ev))]
    assert [r for _, r in batches] == [(0, 2), (2, 4), (4, 5)]
    for coll in ("Jet", "Muon"):
        for f in range(5):
            part = next(b for b, (lo, hi) in batches if lo <= f < hi)
            assert ak.all(part[coll].pt[part.fold == f] == whole[coll].pt[whole.fold == f])
            assert ak.all(part[coll].matched_gen.pt[part.fold == f] == whole[coll].matched_gen.pt[whole.fold == f])


def test_flashsim_pickles_without_models(sim, ev):
    sim.inject(ev[:5])  # models now cached in this process
    blob = pickle.dumps(sim)
    assert len(blob) < 2000
    assert b"torch" not in blob


def test_real_cms_nanoaod(sim):
    ev = events_of(real_file("nano_dy.root"))
    out = sim.inject(ev, folds=2)
    assert len(out) == 2 * len(ev)
    assert ak.all(abs(out.Jet.matched_gen.eta - out.Jet.eta) < 0.5)
    assert ak.all(abs(out.Muon.matched_gen.pdgId) == 13)


def test_file_without_gen_is_refused(sim):
    ev = events_of(real_file("nano_dimuon.root"))
    with pytest.raises(MissingBranchesError) as err:
        sim.inject(ev)
    assert "GenJet_pt" in str(err.value) and "nano_dimuon.root" in str(err.value)


def test_bad_folds(sim, ev):
    for bad in (0, -1, 2.5):
        with pytest.raises(UserError, match="folds"):
            sim.inject(ev, folds=bad)


def test_staged_simulation_of_a_subset_equals_simulating_everything(sim, ev):
    """Jets simulated only for some (event, fold) pairs are exactly those of simulating all pairs."""
    whole = sim.inject(ev, folds=4)
    chunk = sim.prepare(ev)
    batch = FoldBatch.all_folds(len(ev), 4)
    muons = chunk.simulate("Muon", batch)
    assert ak.all(ak.flatten(muons.pt) == ak.flatten(whole.Muon.pt))
    keep = ak.to_numpy(ak.num(muons) >= 1) & (batch.fold % 2 == 1)
    jets = chunk.simulate("Jet", batch.subset(keep))
    assert len(jets) == keep.sum() > 0
    for field in ("pt", "eta", "btagDeepFlavB", "genJetIdx", "jetId"):
        assert ak.all(ak.flatten(jets[field]) == ak.flatten(whole.Jet[field][keep]))
    assert ak.all(jets.matched_gen.pt == whole.Jet.matched_gen.pt[keep])
    # counts accumulate per collection over the calls, per (object, fold) pair
    assert chunk.info["Muon"]["n_gen"] == 4 * ak.sum(ak.num(ev.GenPart[(abs(ev.GenPart.pdgId) == 13) & (ev.GenPart.status == 1)]))
    assert chunk.info["Jet"]["n_reco"] == ak.sum(ak.num(jets))


def test_non_finite_gen_inputs_are_dropped_counted_and_warned(sim, generated):
    path, _ = generated("vbf_hmm", 100)
    ev = events_of(path, mode="eager")
    pt = ak.to_numpy(ak.flatten(ev.GenJet.pt)).copy()
    pt[[0, 5, 9]] = [np.inf, np.nan, 1e6]  # two non-finite, one far outside the training range
    ev["GenJet", "pt"] = ak.unflatten(pt, ak.num(ev.GenJet))
    import warnings

    with warnings.catch_warnings():  # a processor's chunk stays quiet: the counts go to its output
        warnings.filterwarnings("error", message="flashsim:")
        chunk = sim.prepare(ev)
        jets = chunk.simulate("Jet", FoldBatch.all_folds(len(ev)))
    assert ak.all(np.isfinite(jets.pt))
    info = chunk.info["Jet"]
    assert info["n_gen_nonfinite"] == 2 and info["n_out_of_range_cond"] >= 1
    # inject (a user's call) warns once, with the counts of every collection
    with pytest.warns(UserWarning, match=r"Jet: .*2 with non-finite Gen inputs \(dropped\).*outside the training range") as rec:
        out = sim.inject(ev)
    assert len([w for w in rec if "flashsim:" in str(w.message)]) == 1
    assert ak.all(np.isfinite(out.Jet.pt))


@pytest.mark.parametrize("kwargs, match", [
    ({"jets": 1}, "model directory"),
    ({"jets": "no/such/model"}, "model card not found"),
    ({"threads": -2}, "threads"),
    ({"threads": True}, "threads"),
    ({"precision": "fp8"}, "precision"),
])
def test_flashsim_arguments_checked_up_front(kwargs, match):
    with pytest.raises(UserError, match=match):
        FlashSim(**kwargs)


def test_flashsim_true_means_the_shipped_model():
    assert repr(FlashSim(jets=True, muons=False)) == repr(FlashSim(jets="default", muons=False))


# --------------------------------------------------------------------------- pile-up jets (shipped model)
def test_jets_include_the_shipped_pileup_jets_by_default(tiny_models, ev, sim):
    """FlashSim(jets=..., muons=...) adds the shipped pile-up jets (genJetIdx −1) to Jet, pT-sorted with the
    matched ones, which stay exactly those without pile-up jets."""
    on = FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"])
    assert [m.spec.name for m in on.collection_models()["Jet"]] == ["jets", "pileup_jets"]
    assert on.models()["Jet"].spec.name == "jets" and set(on.models()) == {"Jet", "Muon"}
    assert {"Pileup_nTrueInt", "Pileup_sumLOOT"} <= set(on.required_branches())
    out, off = on.inject(ev, folds=2), sim.inject(ev, folds=2)
    jets = out.Jet
    pu = jets[jets.genJetIdx == -1]
    assert ak.sum(ak.num(pu)) > 0 and ak.all(pu.pt > 15) and ak.all(ak.is_none(pu.matched_gen, axis=1))
    assert ak.all((jets.genJetIdx == -1) | ((jets.genJetIdx >= 0) & (jets.genJetIdx < ak.num(out.GenJet))))
    assert ak.all(jets.pt[:, :-1] >= jets.pt[:, 1:])
    matched = jets[jets.genJetIdx >= 0]
    assert ak.all(matched.pt == off.Jet.pt) and ak.all(matched.matched_gen.pt == off.Jet.matched_gen.pt)
    assert ak.all(out.Muon.pt == off.Muon.pt)
    chunk = on.prepare(ev)
    chunk.simulate("Jet", FoldBatch.all_folds(len(ev), 2))
    assert chunk.info["Jet"]["n_unmatched"] >= ak.sum(ak.num(pu))
    assert chunk.info["Jet"]["n_gen"] == 2 * ak.sum(ak.num(ev.GenJet))  # Gen objects only


def test_pileup_jets_need_flashsim_jets(tiny_models):
    assert "pileup_jets" not in repr(FlashSim(jets=False, muons=tiny_models["muons"]))
    assert "pileup_jets" not in repr(FlashSim(jets=False, muons=False, pileup_jets="default"))
    from flashsim_coffea.flows.sampler import shipped_model_path

    with pytest.raises(UserError, match="needs FlashSim jets too"):
        FlashSim(jets=False, pileup_jets=shipped_model_path("pileup_jets"))
    with pytest.raises(UserError, match="is a model of 'jets', not of 'pileup_jets'"):
        FlashSim(pileup_jets=tiny_models["jets"])
    with pytest.raises(UserError, match="no registered object 'electrons'"):
        FlashSim(electrons="default")
    with pytest.raises(UserError, match="model card not found"):
        FlashSim(pileup_jets="no/such/model")


def test_reachable_objects_bound_the_reco_objects_above_a_cut(sim, ev):
    """reachable_per_event(collection, min_pt) counts, from the Gen collection alone, the objects
    whose reco pT can exceed min_pt (Gen pT × the flow's largest pT ratio): no draw exceeds it."""
    chunk = sim.prepare(ev)
    model = chunk.models["Muon"][0]
    top = model.flow.pre.max_value("ptRatio")
    assert 1.0 < top <= model.spec.targets[model.spec.target_names.index("ptRatio")].bounds[1]
    assert np.all(chunk.reachable_per_event("Muon", 0.0) >= chunk.simulated_per_event("Muon"))
    folds = 20
    muons = chunk.simulate("Muon", FoldBatch.all_folds(len(ev), folds))  # attached: matched_gen resolves
    assert ak.all(muons.pt <= muons.matched_gen.pt * top * (1 + 2**-9))
    skipped = 0
    for cut in (5.0, 20.0, 40.0):
        reach = np.repeat(chunk.reachable_per_event("Muon", cut), folds)
        assert np.all(ak.to_numpy(ak.sum(muons.pt > cut, axis=1)) <= reach), cut
        skipped += int(np.sum(reach < np.repeat(chunk.simulated_per_event("Muon"), folds)))
    assert skipped > 0  # the bound does exclude Gen muons


def test_restricted_preparation_gives_the_same_objects(sim, ev):
    """Preparing jets only for some events (PreparedChunk.restrict) changes nothing for their pairs."""
    whole = sim.inject(ev, folds=2)
    chunk = sim.prepare(ev)
    entries = np.flatnonzero(chunk.simulated_per_event("Muon") >= 2)
    assert 0 < len(entries) < len(ev)
    chunk.restrict("Jet", entries)
    batch = FoldBatch.all_folds(len(ev), 2)
    keep = np.isin(batch.entry, entries)
    jets = chunk.simulate("Jet", batch.subset(keep))
    assert ak.all(ak.flatten(jets.pt) == ak.flatten(whole.Jet.pt[keep]))
    assert ak.all(jets.matched_gen.pt == whole.Jet.matched_gen.pt[keep])
    with pytest.raises(UserError, match="restrict"):
        chunk.simulate("Jet", batch)


def test_restriction_to_objects_above_a_pt_keeps_their_values(sim, ev):
    """restrict(..., min_pt) simulates only the Gen objects whose reco pT can exceed min_pt: exactly
    the unrestricted objects minus some that are all at or below min_pt, with the same values; the
    skipped Gen objects are counted (n_gen_below_min_pt)."""
    folds, cut = 3, 20.0
    whole = sim.inject(ev, folds=folds).Muon
    chunk = sim.prepare(ev)
    entries = np.arange(len(ev))
    chunk.restrict("Muon", entries, min_pt=cut)
    muons = chunk.simulate("Muon", FoldBatch.all_folds(len(ev), folds))
    skipped = chunk.info["Muon"]["n_gen_below_min_pt"]
    assert skipped > 0
    assert ak.sum(ak.num(whole)) > ak.sum(ak.num(muons))
    # every muon above the cut is there, with its values (same keys, same noise)
    for f in ("pt", "eta", "phi", "pfRelIso04_all", "mediumId", "charge", "genPartIdx"):
        np.testing.assert_array_equal(ak.to_numpy(ak.flatten(whole[whole.pt > cut][f])),
                                      ak.to_numpy(ak.flatten(muons[muons.pt > cut][f])))
    assert ak.all(muons.pt > 0) and ak.sum(ak.num(muons)) >= ak.sum(whole.pt > cut)


def test_model_without_efficiency_map_warns_once(tiny_models, ev, tmp_path):
    """A freshly trained model folder has no efficiency.json: every Gen object is reconstructed,
    and the user is told so once (with the command that makes the map); with a map, no warning."""
    import shutil
    import warnings

    from flashsim_coffea import inject
    from flashsim_coffea.efficiency import EfficiencyMap

    bare = tmp_path / "muons"
    shutil.copytree(tiny_models["muons"], bare)
    with pytest.warns(UserWarning, match=r"has no efficiency\.json.*flashsim efficiency muons") as rec:
        muons = FlashSim(muons=bare, jets=False, pileup_jets=False).inject(ev).Muon
    assert sum("efficiency.json" in str(w.message) for w in rec) == 1
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*efficiency\\.json")
        FlashSim(muons=bare, jets=False, pileup_jets=False).inject(ev)  # cached: not again
    n_all = int(ak.sum(ak.num(muons)))
    # with a map (ε = 0.5 everywhere) about half the muons are reconstructed, silently
    from flashsim_coffea.objects import get_spec

    rules = get_spec("muons").rules  # a map in the spec's binning (load_bundle checks it)
    pt_edges, eta_edges = np.array(rules.efficiency_pt_edges), np.array(rules.efficiency_abseta_edges)
    shape = (len(pt_edges) - 1, len(eta_edges) - 1)
    EfficiencyMap("muons", pt_edges, eta_edges, np.full(shape, 0.5), np.full(shape, 100)).save(bare)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*efficiency\\.json")
        half = FlashSim(muons=bare, jets=False, pileup_jets=False).inject(ev).Muon
    assert 0.3 * n_all < int(ak.sum(ak.num(half))) < 0.7 * n_all


def test_a_new_object_needs_its_spec_and_nothing_else(tiny_models, ev, tmp_path):
    """An object FlashSim has never heard of — its spec defined and registered here, in the test —
    is trained, simulated from its Gen collection into its own reco collection, counted and keyed
    like the built-in ones: FlashSim learns about objects from the registry only."""
    import dataclasses

    from flashsim_coffea.flows.data import load_data
    from flashsim_coffea.flows.train import TINY, TrainConfig, train
    from flashsim_coffea.inject import Need
    from flashsim_coffea.objects import registry

    jets = registry.get_spec("jets")
    # NanoAOD has no rounding precision and no derived fields for a CaloJet collection: a spec of its own
    spec = dataclasses.replace(
        jets, name="calojets", reco="CaloJet", description="a test object: calorimeter jets from GenJets",
        targets=tuple(dataclasses.replace(t, dequantize="uniform") if t.dequantize == "rounding" else t for t in jets.targets),
        rules=dataclasses.replace(jets.rules, derived=()))
    registry.register_spec(spec)
    try:
        data = dataclasses.replace(load_data(tiny_models["jets"].parent / "jets.npz"), provenance={})
        train(spec, data, tmp_path / "calojets", TrainConfig(**TINY), progress=False)
        with pytest.warns(UserWarning, match="calojets: .* has no efficiency.json"):
            sim = FlashSim(models={"calojets": tmp_path / "calojets", "jets": False, "muons": False, "pileup_jets": False})
            out = sim.inject(ev, folds=2)
        assert list(sim.model_paths) == ["calojets"] and "CaloJet" in out.fields
        calo, gen = out.CaloJet, out.GenJet
        assert ak.all(out.Jet.pt == ev.Jet.pt[np.repeat(np.arange(len(ev)), 2)])  # the file's own jets stay
        assert ak.all(ak.num(calo) <= ak.num(gen)) and ak.sum(ak.num(calo)) > 0
        idx = calo.genJetIdx
        assert ak.all((idx >= 0) & (idx < ak.num(gen)))
        ratio = ak.to_numpy(ak.flatten(calo.pt / gen[idx].pt))
        assert 0.7 < np.median(ratio) < 1.3  # a jet-like response around its GenJet
        assert ak.all(calo.pt > spec.rules.min_pt)  # its rules: NanoAOD's jet threshold
        # the same draws as the built-in jets with the same flow (keyed noise); staging works on it too
        chunk = sim.prepare(ev, need={"CaloJet": Need(min_pt=40.0)})
        high = chunk.simulate("CaloJet", FoldBatch.all_folds(len(ev), 2), attach=False)
        np.testing.assert_array_equal(ak.to_numpy(ak.flatten(high.pt)), ak.to_numpy(ak.flatten(calo.pt[calo.pt > 40.0])))
        assert chunk.info["CaloJet"]["n_gen_below_min_pt"] > 0
    finally:
        registry._REGISTRY.pop("calojets", None)
        registry._BUILT.pop("calojets", None)


def test_the_flashsim_module_names_no_object():
    """FlashSim learns about objects from the registry only: the code of flashsim_coffea/inject.py
    (docstrings aside) names no registered object, reco collection or Gen collection."""
    import ast
    import re
    from pathlib import Path

    import flashsim_coffea.inject as module
    from flashsim_coffea.objects.registry import get_spec, known_specs

    tree = ast.parse(Path(module.__file__).read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    code = ast.unparse(tree)
    names = set()
    for name in known_specs():
        spec = get_spec(name)
        names |= {spec.name, spec.reco, spec.simulated.name, spec.simulated.prefix, *(c.name for c in spec.collections)}
    found = sorted(n for n in names if re.search(rf"\b{re.escape(n)}\b", code))
    assert found == [], f"flashsim_coffea/inject.py names {found} in its code"
