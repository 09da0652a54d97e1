"""Conditional validation tables (flashsim_coffea.validation.conditional): noise floors per cell,
flags beyond 2× the floor, low-stat cells, and their place in the `flashsim validate` report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flashsim_coffea.objects import get_spec
from flashsim_coffea.objects.extract import Extracted
from flashsim_coffea.validation.conditional import (BTAG_WP, MIN_COUNT, TABLES, cell_quantities,
                                                    conditional_markdown, conditional_tables)
from flashsim_coffea.validation.samples import ValidationSamples

K = 5


def _extracted(spec, cols: dict[str, np.ndarray], gen_pt: np.ndarray) -> Extracted:
    n = len(gen_pt)
    cond = np.zeros((n, len(spec.conditioning_names)))
    targets = np.zeros((n, len(spec.target_names)))
    for name, v in cols.items():
        if name in spec.conditioning_names:
            cond[:, spec.conditioning_names.index(name)] = v
        else:
            targets[:, spec.target_names.index(name)] = v
    return Extracted(cond, targets, {}, {"pt": gen_pt})


def _muon_samples(rng, n=60_000, widen=1.0, n_low=10):
    """Synthetic muons: R, K FlashSim folds (ptRatio spread × ``widen``) and K reference′ draws on
    the same Gen objects; only ``n_low`` muons with Gen pT in 5–10 GeV (a low-stat row)."""
    spec = get_spec("muons")
    pt = np.concatenate([np.exp(rng.uniform(np.log(10), np.log(300), n - n_low)), rng.uniform(5, 10, n_low)])
    eta = rng.uniform(-2.4, 2.4, n)
    prompt = (rng.random(n) < 0.9).astype(float)
    sigma = 0.01 + 0.0001 * pt + 0.01 * (np.abs(eta) > 1.2)

    def draw(scale=1.0):
        return 1.0 + scale * sigma * rng.standard_normal(n)

    def sample(ratio):
        return _extracted(spec, {"GenMuon_pt": pt, "GenMuon_eta": eta, "GenMuon_isPrompt": prompt, "ptRatio": ratio}, pt)

    ref = sample(draw())
    flash = [sample(draw(widen)).targets for _ in range(K)]
    ref2 = [sample(draw()) for _ in range(K)]
    return spec, ValidationSamples(ref, flash, ref2, {})


def _values(table, q):
    return [c[q] for c in table["cells"] if not c["low_stats"] and c[q]["ratio"] is not None]


def test_cell_quantities_definitions():
    v = cell_quantities([1.0, 3.0], 1.5, [1.0, 2.5, 1.5])
    assert v == {"flash": 2.0, "ref": 1.5, "floor": pytest.approx(0.5), "deviation": 0.5, "ratio": pytest.approx(1.0)}
    assert cell_quantities([1.0], 1.0, [1.0])["ratio"] == 1.0  # 0 / 0
    assert cell_quantities([2.0], 1.0, [1.0])["ratio"] == float("inf")


def test_muon_response_table_shape_and_keys():
    spec, s = _muon_samples(np.random.default_rng(0), n=20_000)
    tables = conditional_tables(spec, s)
    assert set(tables) == {"muon_response", "muon_isolation", "muon_id_iso"}  # the jet tables need jet columns
    assert tables["muon_id_iso"]["quantities"] == ["tightId", "pfIsoId_tight", "tight_and_iso", "highPtId_global",
                                                   "miniIso_0.1"]
    t = tables["muon_response"]
    table = next(x for x in TABLES if x.name == "muon_response")
    n_cells = np.prod([len(edges) - 1 for _, edges, _ in table.bins])
    assert len(t["cells"]) == n_cells and t["quantities"] == ["median", "w68", "w95"]
    assert t["axes"] == ["GenMuon_pt", "|GenMuon_eta|"]
    for c in t["cells"]:
        assert set(c) >= {"bin", "label", "n_ref", "n_flash", "n_ref2", "low_stats", "median", "w68", "w95"}
        assert set(c["bin"]) == {"GenMuon_pt", "|GenMuon_eta|"}
        for q in t["quantities"]:
            assert set(c[q]) == {"flash", "ref", "floor", "deviation", "ratio", "flagged"}
    # prompt muons only: the cells count ~90 % of the muons
    assert 0.85 < sum(c["n_ref"] for c in t["cells"]) / 20_000 < 0.95
    # metrics.json-ready: strict JSON after NaN → null
    json.loads(json.dumps(tables, allow_nan=True))


def test_perfect_model_flags_almost_nothing():
    spec, s = _muon_samples(np.random.default_rng(1))
    t = conditional_tables(spec, s)["muon_response"]
    vals = [v for q in t["quantities"] for v in _values(t, q)]
    assert len(vals) > 60
    assert np.mean([v["flagged"] for v in vals]) < 0.1
    assert 0.4 < np.median([v["ratio"] for v in vals]) < 1.5


def test_widened_response_flags_the_widths():
    """FlashSim ptRatio spread × 1.3: the 68 % and 95 % widths are flagged, the median is not."""
    spec, s = _muon_samples(np.random.default_rng(2), widen=1.3)
    t = conditional_tables(spec, s)["muon_response"]
    for q in ("w68", "w95"):
        assert np.mean([v["flagged"] for v in _values(t, q)]) > 0.8, q
    assert np.mean([v["flagged"] for v in _values(t, "median")]) < 0.15
    md = "\n".join(conditional_markdown({"muon_response": t}))
    assert "## Conditional tables" in md and "⚠" in md and "| w68 |" in md


def test_low_stat_cells_are_marked_and_never_flagged():
    spec, s = _muon_samples(np.random.default_rng(3), n=20_000, widen=3.0)
    t = conditional_tables(spec, s)["muon_response"]
    low = [c for c in t["cells"] if c["low_stats"]]
    assert low and all(c["n_ref"] < MIN_COUNT for c in low)
    assert any(c["bin"]["GenMuon_pt"] == [5.0, 10.0] for c in low)
    assert not any(c[q]["flagged"] for c in low for q in t["quantities"])
    assert t["n_flagged"] > 0  # the widened high-stat cells are
    md = "\n".join(conditional_markdown({"muon_response": t}))
    assert "*low stats*" in md


def _isolation_samples(rng, blur: bool, n=60_000):
    """Prompt muons whose pfRelIso04_all = (0.6 A L + U)/pT (A: the Gen activity in the closest
    GenJet, L lognormal, U a UE term); the FlashSim folds ignore A (``blur``: its draws are those
    of muons with the same pT but another muon's activity) or use it (a perfect model)."""
    spec = get_spec("muons")
    pt = np.exp(rng.uniform(np.log(20), np.log(150), n))
    act = np.where(rng.random(n) < 0.2, 0.0, pt * rng.exponential(0.08, n))  # absolute A in GeV
    jet_pt = np.where(act > 0, pt + act, 0.0)

    def iso(a):
        return (0.6 * a * np.exp(0.3 * rng.standard_normal(n)) + 0.4 * rng.exponential(1.0, n)) / pt

    def sample(values):
        return _extracted(spec, {"GenMuon_pt": pt, "GenMuon_isPrompt": np.ones(n), "ClosestGenJet_pt": jet_pt,
                                 "pfRelIso04_all": values}, pt)

    ref = sample(iso(act))
    flash = [sample(iso(rng.permutation(act) if blur else act)).targets for _ in range(K)]
    return spec, ValidationSamples(ref, flash, [sample(iso(act)) for _ in range(K)], {})


@pytest.mark.slow  # ~11 s of tables
def test_isolation_vs_gen_activity_flags_a_model_that_ignores_it():
    """Same marginal-ish isolation, wrong dependence on the activity around the muon: the pass
    rates of the loose cut are flagged in the activity bins; a perfect model is not flagged."""
    spec, s = _isolation_samples(np.random.default_rng(7), blur=True)
    t = conditional_tables(spec, s)["muon_isolation"]
    assert t["axes"] == ["GenMuon_activity", "GenMuon_pt"] and t["quantities"] == ["median", "pass_0.15", "pass_0.25"]
    assert np.mean([v["flagged"] for v in _values(t, "pass_0.25")]) > 0.6
    # no activity (A/pT < 0.02): the blurred model isolates too rarely there, too often at A/pT > 0.2
    cells = {tuple(c["bin"]["GenMuon_activity"]): c for c in t["cells"] if c["bin"]["GenMuon_pt"] == [20.0, 40.0]}
    assert cells[(0.0, 0.02)]["pass_0.25"]["flash"] < cells[(0.0, 0.02)]["pass_0.25"]["ref"]
    assert cells[(0.2, 0.5)]["pass_0.25"]["flash"] > cells[(0.2, 0.5)]["pass_0.25"]["ref"]
    spec, s = _isolation_samples(np.random.default_rng(8), blur=False)
    t = conditional_tables(spec, s)["muon_isolation"]
    vals = [v for q in t["quantities"] for v in _values(t, q)]
    assert len(vals) > 20 and np.mean([v["flagged"] for v in vals]) < 0.15


def _jet_samples(rng, n=40_000, b_shift=0.0):
    spec = get_spec("jets")
    pt = np.exp(rng.uniform(np.log(20), np.log(400), n))
    eta = rng.uniform(-4.7, 4.7, n)
    flav = rng.choice([0.0, 4.0, 5.0], n, p=[0.6, 0.15, 0.25])

    def draw(shift=0.0):
        ratio = 1 + 0.1 * rng.standard_normal(n)
        p_tag = np.where(flav == 5, 0.8, np.where(flav == 4, 0.3, 0.05)) + np.where(flav == 5, shift, 0.0)
        tag = np.where(rng.random(n) < p_tag, rng.uniform(0.75, 1.0, n), rng.uniform(0.0, 0.04, n))
        puid = np.where(rng.random(n) < 0.9, 7.0, 0.0)
        jetid = np.where(rng.random(n) < 0.95, 6.0, 0.0)
        return {"GenJet_pt": pt, "GenJet_eta": eta, "GenJet_hadronFlavour": flav, "ptRatio": ratio,
                "btagDeepFlavB": tag, "puId": puid, "jetId": jetid}

    ref = _extracted(spec, draw(), pt)
    flash = [_extracted(spec, draw(b_shift), pt).targets for _ in range(K)]
    ref2 = [_extracted(spec, draw(), pt) for _ in range(K)]
    return spec, ValidationSamples(ref, flash, ref2, {})


def test_jet_tables_btag_and_id_rates():
    spec, s = _jet_samples(np.random.default_rng(4))
    tables = conditional_tables(spec, s)
    assert set(tables) == {"jet_response", "btag_eff", "jet_id", "jet_energy"}
    assert tables["jet_energy"]["quantities"] == ["rawFactor_median", "energy_id"]
    assert tables["btag_eff"]["quantities"] == [f"eff_{k}" for k in BTAG_WP]
    assert {c["bin"]["GenJet_hadronFlavour"] for c in tables["btag_eff"]["cells"]} == {"b", "c", "light"}
    assert tables["jet_id"]["quantities"] == ["puId_loose", "jetId_tight"]
    b_cell = next(c for c in tables["btag_eff"]["cells"] if c["bin"]["GenJet_hadronFlavour"] == "b" and not c["low_stats"])
    assert b_cell["eff_T"]["ref"] == pytest.approx(0.8, abs=0.05)
    high = [c for c in tables["jet_id"]["cells"] if c["bin"]["GenJet_pt"][0] >= 100 and not c["low_stats"]]
    assert all(c["puId_loose"]["ref"] == 1.0 for c in high)  # puId is not applied above 50 GeV
    assert all(0.9 < c["jetId_tight"]["ref"] < 1.0 for c in high)
    vals = [v for t in tables.values() for q in t["quantities"] for v in _values(t, q)]
    assert np.mean([v["flagged"] for v in vals]) < 0.1
    # a FlashSim b efficiency 5 points high: flagged in the b cells, not in c or light
    spec, s = _jet_samples(np.random.default_rng(5), b_shift=0.05)
    t = conditional_tables(spec, s)["btag_eff"]
    by = {f: [c["eff_M"]["flagged"] for c in t["cells"] if c["bin"]["GenJet_hadronFlavour"] == f and not c["low_stats"]]
          for f in ("b", "c", "light")}
    assert np.mean(by["b"]) > 0.8 and np.mean(by["c"] + by["light"]) < 0.2


@pytest.mark.slow  # the shipped muons model on a bundled sample (~15 s)
def test_validate_report_has_conditional_tables(tmp_path):
    """`run_validation` writes the tables to metrics.json (key `conditional`) and index.md, the
    existing report content unchanged (shipped muons model, a small bundled DY sample)."""
    import torch

    from flashsim_coffea.flows import load_model, shipped_model_path
    from flashsim_coffea.samples import sample_path
    from flashsim_coffea.validation import run_validation

    torch.set_num_threads(1)
    spec = get_spec("muons")
    model = load_model(shipped_model_path("muons"), "muons")
    m = run_validation(spec, model, [str(sample_path("dy_incl"))], tmp_path, ref_seed=202, resimulate=201,
                       max_events=3000, floor_draws=2)
    assert set(m) == {"targets", "c2st_auc", "conditional"}
    assert set(m["conditional"]) == {"muon_response", "muon_isolation", "muon_id_iso", "muon_efficiency", "muon_efficiency_prompt"}
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["conditional"]["muon_response"]["quantities"] == ["median", "w68", "w95"]
    index = (tmp_path / "index.md").read_text()
    assert "| ptRatio |" in index and "## Conditional tables" in index and "| median |" in index
    assert index.index("| ptRatio |") < index.index("## Conditional tables")


def test_efficiency_tables_floor_and_broken_efficiency(tiny_models, generated, tmp_path):
    """Reconstruction efficiency vs Gen pT × |η|, flavour and nearby muons: a re-drawn reference
    flags (almost) nothing; FlashSim with a flat 50 % efficiency map is flagged at high pT."""
    import shutil

    import uproot

    from flashsim_coffea.efficiency import EfficiencyMap
    from flashsim_coffea.inject import FlashSim
    from flashsim_coffea.reference.resimulate import resimulate_events
    from flashsim_coffea.validation.conditional import (EFFICIENCY_TABLES, efficiency_table,
                                                        efficiency_table_from_draws)

    path, _ = generated("ttbar", 400, seed=11)
    events = uproot.open(path)["Events"].arrays(library="ak")
    seeds = [301, 302, 303]
    # reference vs reference: "FlashSim" = the reference re-drawn with other seeds
    other = [resimulate_events(events, s)["Jet_genJetIdx"] for s in (401, 402, 403)]
    ref2 = [resimulate_events(events, s) for s in seeds]
    t = efficiency_table_from_draws("jets", events, ref2, other)
    assert set(t) == {"jet_efficiency", "jet_efficiency_flavour", "jet_efficiency_muon"}
    for name, tab in t.items():
        table = next(x for x in EFFICIENCY_TABLES if x.name == name)
        n_cells = np.prod([len(table.categories[c]) if c in table.categories else len(e) - 1 for c, e, _ in table.bins])
        assert len(tab["cells"]) == n_cells and tab["quantities"] == ["eff"]
        for c in tab["cells"]:
            assert set(c["eff"]) == {"flash", "ref", "floor", "deviation", "ratio", "flagged"}
    assert {c["bin"]["GenJet_hadronFlavour"] for c in t["jet_efficiency_flavour"]["cells"]} == {"b", "c", "light"}
    assert {c["bin"]["GenJet_nearMuon"] for c in t["jet_efficiency_muon"]["cells"]} == {"yes", "no"}
    vals = [v for tab in t.values() for v in _values(tab, "eff")]
    assert len(vals) > 10 and np.mean([v["flagged"] for v in vals]) < 0.15
    high = [c for c in t["jet_efficiency"]["cells"] if c["bin"]["GenJet_pt"][0] >= 50 and not c["low_stats"]]
    assert high and all(c["eff"]["ref"] > 0.8 for c in high)
    json.loads(json.dumps(t, allow_nan=True))

    # FlashSim with every efficiency 0.5: flagged in the high-pT cells
    broken = tmp_path / "jets"
    shutil.copytree(tiny_models["jets"], broken)
    rules = get_spec("jets").rules
    pt_e, eta_e = np.asarray(rules.efficiency_pt_edges), np.asarray(rules.efficiency_abseta_edges)
    shape = (len(pt_e) - 1, len(eta_e) - 1)
    EfficiencyMap("jets", pt_e, eta_e, np.full(shape, 0.5), np.ones(shape)).save(broken)
    sim = FlashSim(jets=broken, muons=False, pileup_jets=False)
    t = efficiency_table("jets", events, sim, seeds)
    high = [c for c in t["jet_efficiency"]["cells"] if c["bin"]["GenJet_pt"][0] >= 50 and not c["low_stats"]]
    assert high and all(c["eff"]["flagged"] for c in high)
    assert all(0.3 < c["eff"]["flash"] < 0.7 for c in high)
    md = "\n".join(conditional_markdown(t))
    assert "⚠" in md and "| eff |" in md


def test_muon_efficiency_table_shape(tiny_models, generated):
    import uproot

    from flashsim_coffea.inject import FlashSim
    from flashsim_coffea.validation.conditional import efficiency_table

    path, _ = generated("ttbar", 400, seed=11)
    events = uproot.open(path)["Events"].arrays(library="ak")
    t = efficiency_table("muons", events, FlashSim(jets=False, muons=tiny_models["muons"]), [301, 302], min_count=5)
    assert set(t) == {"muon_efficiency", "muon_efficiency_prompt"}
    assert {c["bin"]["GenMuon_isPrompt"] for c in t["muon_efficiency_prompt"]["cells"]} == {"yes", "no"}
    assert sum(c["n_ref"] for c in t["muon_efficiency"]["cells"]) > 0
