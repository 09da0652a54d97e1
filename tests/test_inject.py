"""FlashSim injection into coffea NanoEvents (tiny models; the shipped ones in integration tests)."""

from __future__ import annotations

import pickle

import awkward as ak
import numpy as np
import pytest
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from conftest import real_file
from flashsim_coffea.errors import MissingBranchesError, UserError
from flashsim_coffea.inject import FlashSim


def events_of(path, mode="virtual"):
    return NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=NanoAODSchema, mode=mode, metadata={"filename": str(path)}
    ).events()


@pytest.fixture(scope="module")
def sim(tiny_models):
    return FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"])


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
    # index fields that would point into the replaced collections are not carried over
    assert "muonIdx1" not in jets.fields and "jetIdx" not in muons.fields


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
    batches = list(sim.inject_batches(ev, folds=5, max_events=2 * len(ev)))
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
