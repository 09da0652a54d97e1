"""Reconstruction efficiency maps and their use in the injection."""

from __future__ import annotations

import shutil

import awkward as ak
import numpy as np
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

from flashsim_coffea.efficiency import EfficiencyMap, measure, measure_files
from flashsim_coffea.inject import FlashSim


def test_measure_recovers_a_known_efficiency():
    rng = np.random.default_rng(3)
    pt = rng.uniform(10, 300, 200_000)
    eta = rng.uniform(-4.7, 4.7, 200_000)
    true = np.where(np.abs(eta) > 2.5, 0.8, 0.95) * np.where(pt > 40, 1.0, 0.9)
    m = measure("jets", pt, eta, rng.random(pt.size) < true)
    probe_pt, probe_eta = np.array([30.0, 50.0, 150.0, 150.0]), np.array([0.5, 0.5, 0.2, 3.5])
    assert np.allclose(m(probe_pt, probe_eta), [0.855, 0.95, 0.95, 0.8], atol=0.02)
    # low-pT bins are measured too (the matched fraction, the reco threshold included)
    assert np.isclose(m(np.array([12.0]), np.array([0.1]))[0], 0.855, atol=0.03)


def test_measure_on_generated_file_matches_reference_behaviour(generated):
    path, _ = generated("ttbar", 300, seed=9)
    m = measure_files("jets", [str(path)])
    assert m.counts.sum() > 2000
    hi = m.pt_edges[:-1] >= 40  # well above threshold: the reference's own inefficiency

    def mean(cols):
        return np.sum(m.values[hi][:, cols] * m.counts[hi][:, cols]) / np.sum(m.counts[hi][:, cols])

    assert mean([0]) > 0.95 and mean([2, 3]) < mean([0]) - 0.02  # worse forward
    mu = measure_files("muons", [str(path)])
    assert mu(np.array([30.0]), np.array([3.0]))[0] == 0.0  # outside the muon system


def test_injection_applies_the_map_per_fold(tiny_models, generated, tmp_path):
    model_dir = tmp_path / "jets"
    shutil.copytree(tiny_models["jets"], model_dir)
    m = measure("jets", np.array([50.0]), np.array([0.0]), np.array([True]))
    m.values[:] = 0.5
    m.save(model_dir)
    assert EfficiencyMap.load(model_dir).values.max() == 0.5
    path, _ = generated("vbf_hmm", 100)
    ev = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema, mode="virtual").events()
    full = FlashSim(jets=tiny_models["jets"], muons=False, pileup_jets=False).inject(ev, folds=4)
    half = FlashSim(jets=model_dir, muons=False, pileup_jets=False).inject(ev, folds=4)
    frac = ak.sum(ak.num(half.Jet)) / ak.sum(ak.num(full.Jet))
    assert 0.4 < frac < 0.6
    assert ak.all(ak.num(half.Jet) <= ak.num(full.Jet))  # efficiency only removes objects
    # folds of one object are reconstructed independently, and chunking does not matter
    again = FlashSim(jets=model_dir, muons=False, pileup_jets=False).inject(ev[40:], folds=4)
    assert ak.all(again.Jet.pt == half[160:].Jet.pt)
