"""FlashSim pile-up jets (``Jet_genJetIdx = −1``): spec, extraction, count model, injection, keys."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from flashsim_coffea.errors import UserError
from flashsim_coffea.flows.count import CountModel, fit_unmatched
from flashsim_coffea.folds import FoldBatch
from flashsim_coffea.inject import FlashSim
from flashsim_coffea.objects import ObjectSpec, get_spec
from flashsim_coffea.objects.extract import extract_pileup_synthetic, extract_unmatched_events, pileup_gen_events
from flashsim_coffea.objects.pileup_jets import COUNT_EDGES, COUNT_FEATURE
from flashsim_coffea.reference import respond
from flashsim_coffea.reference.fakes import FAKE_RATE_PER_INTERACTION

SPEC = "pileup_jets"


def events_of(path):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="virtual",
                                       metadata={"filename": str(path)}).events()


@pytest.fixture(scope="module")
def tiny_pileup(tmp_path_factory):
    """A tiny pile-up jet flow (seconds) + its count model, from 20k pile-up-only events."""
    from flashsim_coffea.flows.data import load_data, save_data
    from flashsim_coffea.flows.train import TINY, TrainConfig, train

    spec = get_spec(SPEC)
    folder = tmp_path_factory.mktemp("tiny_pileup")
    data, prov = extract_pileup_synthetic(spec, 20_000, gen_seed=7, ref_seeds=[13])
    o = data.objects
    npz = save_data(folder / "pu.npz", o.cond, o.targets, o.keys, o.gen, prov)
    train(spec, load_data(npz), folder / "model", TrainConfig(**TINY), progress=False)
    fit_unmatched(spec, data, COUNT_FEATURE, COUNT_EDGES).save(folder / "model")
    return folder / "model"


@pytest.fixture(scope="module")
def sim(tiny_models, tiny_pileup):
    return FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"], pileup_jets=tiny_pileup)


@pytest.fixture(scope="module")
def ev(generated):
    path, _ = generated("dy", 120, seed=5)
    return events_of(path)


# --------------------------------------------------------------------------- spec and extraction
def test_spec_is_registered_and_serialises():
    spec = get_spec(SPEC)
    assert spec.reco == "Jet" and spec.match == "genJetIdx"
    assert ObjectSpec.from_dict(spec.to_dict()).hash() == spec.hash()
    # every target of the jets spec's reco branches, as reco values directly
    assert {t.branch for t in spec.targets} == {t.branch for t in get_spec("jets").targets}
    assert all(t.relation in ("direct", "scaled") for t in spec.targets)
    assert set(spec.gen_branches()) >= {"Pileup_nTrueInt", "Pileup_nPU", "Pileup_sumEOOT", "run", "event"}


def test_extraction_takes_the_unmatched_jets_with_slot_keys():
    spec = get_spec(SPEC)
    gen = pileup_gen_events(3000, seed=3)
    # the pile-up-only events carry the generator's realistic, correlated Pileup_* branches
    assert np.corrcoef(gen["Pileup_nTrueInt"], gen["Pileup_sumEOOT"])[0, 1] > 0.9
    events = ak.Array({**gen, **respond(gen, seed=21)})
    data = extract_unmatched_events(spec, events)
    idx = events["Jet_genJetIdx"]
    np.testing.assert_array_equal(data.counts, ak.to_numpy(ak.sum(idx < 0, axis=1)))
    assert len(data.objects) == data.counts.sum() > 0  # nothing dropped here
    assert np.all(data.objects.keys["object"] < 0)
    first = np.concatenate([[0], np.cumsum(data.counts)])[:-1]
    np.testing.assert_array_equal(data.objects.keys["object"][first[data.counts > 0]], -1)
    pt = data.objects.targets[:, spec.target_names.index("pt")]
    np.testing.assert_allclose(pt, ak.to_numpy(ak.flatten(events["Jet_pt"][idx < 0])))
    assert np.all(pt > 15)


# --------------------------------------------------------------------------- count model
def test_count_model_reproduces_a_known_multiplicity():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 80, 400_000)
    n = rng.poisson(0.045 * x)
    model = CountModel.fit("t", "x", x, n, COUNT_EDGES, seed=3)
    centres = 0.5 * (np.asarray(COUNT_EDGES[:-1]) + np.asarray(COUNT_EDGES[1:]))
    ok = centres < 80
    np.testing.assert_allclose(model.mean(centres[ok]), 0.045 * centres[ok], atol=0.03)
    # drawn with keyed noise: the drawn multiplicity per bin matches, and is a pure function of the keys
    keys = {"run": np.ones(len(x), np.int64), "luminosityBlock": np.ones(len(x), np.int64),
            "event": np.arange(len(x), dtype=np.int64)}
    drawn, outside = model.draw(x, keys, 0)
    assert outside == 0
    for lo, hi in ((10, 20), (30, 40), (60, 70)):
        m = (x >= lo) & (x < hi)
        assert abs(drawn[m].mean() - n[m].mean()) < 0.03
        assert abs(drawn[m].var() - n[m].var()) < 0.06
    again, _ = model.draw(x[::-1], {k: v[::-1] for k, v in keys.items()}, 0)
    np.testing.assert_array_equal(again[::-1], drawn)
    other, _ = model.draw(x, keys, 1)
    assert np.mean(other != drawn) > 0.3
    back = CountModel.from_dict(model.to_dict())
    np.testing.assert_array_equal(back.draw(x, keys, 0)[0], drawn)


def test_count_model_fitted_on_the_reference_follows_its_rate():
    spec = get_spec(SPEC)
    data, _ = extract_pileup_synthetic(spec, 200_000, gen_seed=11, ref_seeds=[17])
    model = fit_unmatched(spec, data, COUNT_FEATURE, COUNT_EDGES)
    for x in (21.0, 33.0, 45.0):  # 2-wide bins: the reference's mean at the bin centre
        assert abs(model.mean(np.array([x]))[0] - FAKE_RATE_PER_INTERACTION * x) < 0.05


# --------------------------------------------------------------------------- injection
def _pileup(jets):
    return jets[jets.genJetIdx == -1]


def test_injected_pileup_jets(sim, ev):
    out = sim.inject(ev, folds=3)
    jets = out.Jet
    pu = _pileup(jets)
    assert ak.sum(ak.num(pu)) > 0 and ak.sum(ak.num(jets[jets.genJetIdx >= 0])) > 0
    assert ak.all(pu.pt > 15)
    assert ak.all(jets.pt[:, :-1] >= jets.pt[:, 1:])  # sorted together with the matched jets
    assert ak.all(pu.genJetIdxG == -1) and ak.all(ak.is_none(pu.matched_gen, axis=1))
    assert ak.all(pu.hadronFlavour == 0) and ak.all(pu.partonFlavour == 0)
    assert set(np.unique(ak.to_numpy(ak.flatten(pu.puId)))) <= {0, 4, 6, 7}
    assert set(np.unique(ak.to_numpy(ak.flatten(pu.jetId)))) <= {0, 2, 6}
    assert ak.all(abs(pu.eta) < 5.01)
    matched = jets[jets.genJetIdx >= 0]
    assert ak.all(matched.matched_gen.pt == out.GenJet.pt[matched.genJetIdx])
    # the count model's draw per (event, fold), less those that fell below 15 GeV
    chunk = sim.prepare(ev)
    batch = FoldBatch.all_folds(len(ev), 3)
    chunk.simulate("Jet", batch)
    info = chunk.info["Jet"]
    assert info["n_unmatched"] >= ak.sum(ak.num(pu)) > 0.8 * info["n_unmatched"]
    assert info["n_reco"] == ak.sum(ak.num(jets))


def _pu_rows(jets):
    """Pile-up jets per pair as sorted tuples (comparable across calls)."""
    pu = _pileup(jets)
    return [sorted(zip(a, b, c)) for a, b, c in zip(ak.to_list(pu.pt), ak.to_list(pu.eta), ak.to_list(pu.puId))]


def test_pileup_jets_are_keyed_on_event_and_fold(sim, ev):
    folds = 4
    batch = FoldBatch.all_folds(len(ev), folds)
    full = sim.prepare(ev).simulate("Jet", batch)
    rows = _pu_rows(full)
    # a subset of the pairs, and another chunking, give the same pile-up jets per pair
    mask = (np.arange(len(batch)) % 3) != 1
    sub = sim.prepare(ev).simulate("Jet", batch.subset(mask))
    assert _pu_rows(sub) == [r for r, m in zip(rows, mask) if m]
    part = sim.prepare(ev[37:]).simulate("Jet", FoldBatch.all_folds(len(ev) - 37, folds))
    assert _pu_rows(part) == rows[37 * folds:]
    assert ak.all(part.pt == full[37 * folds:].pt)
    # different per fold
    per_fold = [rows[f::folds] for f in range(folds)]
    assert per_fold[0] != per_fold[1]
    n = np.array([[len(r) for r in per_fold[f]] for f in range(folds)])
    assert np.any(n[0] != n[1])


def test_pileup_jets_switch(tiny_models, tiny_pileup, ev):
    off = FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"], pileup_jets=False).inject(ev)
    on = FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"], pileup_jets=tiny_pileup).inject(ev)
    assert ak.all(off.Jet.genJetIdx >= 0)
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(on.Jet[on.Jet.genJetIdx >= 0].pt)),
                                  ak.to_numpy(ak.flatten(off.Jet.pt)))  # matched jets untouched
    assert "Pileup_nTrueInt" in FlashSim(jets=tiny_models["jets"], muons=False, pileup_jets=tiny_pileup).required_branches()
    # without FlashSim jets the file's Jet collection is kept: no pile-up jets by default, an error if asked
    assert "pileup" not in repr(FlashSim(jets=False, muons=tiny_models["muons"]))
    with pytest.raises(UserError, match="needs FlashSim jets"):
        FlashSim(jets=False, muons=tiny_models["muons"], pileup_jets=tiny_pileup)


@pytest.mark.slow
def test_staged_processor_is_bit_identical_with_pileup_jets(generated, tiny_models, tiny_pileup):
    """Jets (matched + pile-up) simulated only for the dimuon pairs give the histograms of simulating every pair."""
    from flashsim_coffea.processors.vbf_hmumu import VBFHmmProcessor

    from flashsim_coffea.runner import run_processor
    from conftest import assert_same_output

    path, _ = generated("dy", 300, seed=6)
    sim = FlashSim(jets=tiny_models["jets"], muons=tiny_models["muons"], pileup_jets=tiny_pileup)
    fileset = {"dy": {"files": {str(path): "Events"}}}
    everything = run_processor(fileset, VBFHmmProcessor(mode="flashsim", folds=3, flashsim=sim, staged=False), chunksize=1000)
    assert everything["dy"]["flashsim"]["Jet"]["n_unmatched"] > 0
    staged = run_processor(fileset, VBFHmmProcessor(mode="flashsim", folds=3, flashsim=sim, max_fold_events=200),
                           chunksize=70)
    assert staged["dy"]["flashsim"]["Jet"]["n_unmatched"] < everything["dy"]["flashsim"]["Jet"]["n_unmatched"]
    assert_same_output(everything, staged)


# --------------------------------------------------------------------------- shipped model
def test_shipped_pileup_model(ev):
    from flashsim_coffea.flows.count import load_count_model
    from flashsim_coffea.flows.sampler import shipped_model_path

    path = shipped_model_path(SPEC)
    count = load_count_model(path)
    assert count is not None and count.feature == COUNT_FEATURE
    sim = FlashSim()  # the shipped jets, muons and pile-up jets
    assert "pileup_jets" in repr(sim)
    out = sim.inject(ev, folds=5)
    pu = _pileup(out.Jet)
    ntrue = np.repeat(ak.to_numpy(ev.Pileup.nTrueInt), 5)
    expected = FAKE_RATE_PER_INTERACTION * ntrue.sum()
    assert abs(ak.sum(ak.num(pu)) - expected) < 5 * np.sqrt(expected)
    assert ak.all(pu.pt > 15) and ak.mean(abs(ak.flatten(pu.eta)) > 2.5) > 0.4
