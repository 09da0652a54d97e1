"""Validation: metrics definitions and an end-to-end report on a small synthetic held-out file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flashsim_coffea.flows import TINY, TrainConfig, train
from flashsim_coffea.objects import get_spec
from flashsim_coffea.objects.extract import extract_synthetic
from flashsim_coffea.validation import c2st_auc, w1_table


def test_w1_table_ratio_and_floor():
    rng = np.random.default_rng(0)
    ref, ref2 = rng.normal(size=(20000, 1)), rng.normal(size=(20000, 1))
    good, bad = rng.normal(size=(20000, 1)), rng.normal(0.3, 1.0, size=(20000, 1))
    t_good = w1_table(["x"], good, ref, ref2)["x"]
    t_bad = w1_table(["x"], bad, ref, ref2)["x"]
    assert set(t_good) == {"w1", "w1_floor", "ratio"}
    assert t_good["ratio"] < 3 and t_bad["ratio"] > 10
    assert t_bad["w1"] == pytest.approx(0.3, abs=0.03)


def test_w1_table_averages_draws_and_steadies_a_boolean_floor():
    """W1 and floor are means over K draws; for a boolean (floor = |p̂′ − p̂|, half-normal) the
    single-draw floor is often near 0 and the ratio of a perfect model explodes (10–90 % range of
    the ratio 0.2–6); K = 8 draws on each side keep it near 1 (0.6–1.7)."""
    rng = np.random.default_rng(3)
    n, p = 20000, 0.006
    ref = (rng.random((n, 1)) < p).astype(float)
    draws = lambda: [(rng.random((n, 1)) < p).astype(float) for _ in range(8)]  # noqa: E731
    single, averaged = [], []
    for _ in range(40):
        flash, ref2 = draws(), draws()
        single.append(w1_table(["b"], flash[0], ref, ref2[0])["b"]["ratio"])
        averaged.append(w1_table(["b"], flash, ref, ref2)["b"]["ratio"])
    one = w1_table(["b"], flash, ref, ref2)["b"]
    assert one["w1"] == pytest.approx(np.mean([abs(f.mean() - ref.mean()) for f in flash]))
    assert one["w1_floor"] == pytest.approx(np.mean([abs(r.mean() - ref.mean()) for r in ref2]))
    spread = lambda r: np.percentile(r, 90) / np.percentile(r, 10)  # noqa: E731
    assert spread(averaged) < spread(single) / 5 and 0.7 < np.median(averaged) < 1.4


def test_reference_prime_seeds_never_repeat_the_reference_seed():
    from flashsim_coffea.errors import UserError
    from flashsim_coffea.validation.samples import reference_prime_seeds

    assert reference_prime_seeds(202, 3, resimulate=201) == [202, 203, 204]
    with pytest.raises(UserError, match="R′ would equal R"):
        reference_prime_seeds(202, 3, resimulate=203)
    with pytest.raises(UserError, match="floor-draws"):
        reference_prime_seeds(202, 0)


def test_c2st_auc_separates_only_different_samples():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4000, 3)), rng.normal(size=(4000, 3))
    c = b.copy()
    c[:, 0] += 1.0
    assert abs(c2st_auc(a, b, max_iter=30) - 0.5) < 0.05
    assert c2st_auc(a, c, max_iter=30) > 0.7


def _write_heldout(path, n_events, gen_seed, ref_seed):
    from flashsim_coffea.nanoaod.io import NanoAODWriter
    from flashsim_coffea.reference import respond
    from flashsim_coffea.generate.synthetic import synthetic_gen

    gen = synthetic_gen(n_events, seed=gen_seed)
    w = NanoAODWriter(path)
    w.extend({**gen, **respond(gen, seed=ref_seed), "genWeight": np.ones(n_events, np.float32)})
    w.close()
    return path


@pytest.mark.slow  # trains a model and validates it (~15 s)
def test_validate_end_to_end(tmp_path):
    from flashsim_coffea.cli import main

    torch.set_num_threads(1)
    spec = get_spec("jets")
    data, prov = extract_synthetic(spec, 3000, gen_seed=5, ref_seed=11)
    from flashsim_coffea.flows.data import TrainingData

    td = TrainingData(data.cond, data.targets, data.keys, data.gen, prov)
    train(spec, td, tmp_path / "model", TrainConfig(**TINY), progress=False)
    heldout = _write_heldout(tmp_path / "heldout.root", 800, gen_seed=77, ref_seed=12)
    rc = main(["validate", "jets", str(heldout), "--model", str(tmp_path / "model"), "-o", str(tmp_path / "report"),
               "--floor-draws", "2"])
    assert rc == 0
    m = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(m) == {"targets", "c2st_auc", "conditional"} and set(m["targets"]) == set(spec.target_names)
    assert {"jet_response", "btag_eff", "jet_id"} <= set(m["conditional"])
    for v in m["targets"].values():
        assert set(v) == {"w1", "w1_floor", "ratio"} and v["w1"] >= 0 and v["w1_floor"] >= 0
    assert 0.0 <= m["c2st_auc"] <= 1.0
    index = (tmp_path / "report" / "index.md").read_text()
    assert "| ptRatio |" in index and "plots/roc_btagDeepB.png" in index and "contour_qgl_vs_nConstituents" in index
    assert (tmp_path / "report" / "plots" / "nConstituents.png").stat().st_size > 1000
    prov = json.loads((tmp_path / "report" / "provenance.json").read_text())
    assert prov["reference_prime_seeds"] == [90210, 90211] and prov["flashsim_folds"] == [0, 1]
    # model for another spec -> clear error (exit status 2); the old --input spelling still parses
    assert main(["validate", "muons", "--input", str(heldout), "--model", str(tmp_path / "model"), "-o", str(tmp_path / "r2")]) == 2


def test_validate_defaults_to_the_shipped_model_and_says_so(tmp_path, monkeypatch, capsys):
    """`flashsim validate jets FILE -o D` (no --model) validates the shipped jets model, as
    `flashsim run` uses it, and prints which model it used."""
    import flashsim_coffea.validation as validation
    from flashsim_coffea.cli import main
    from flashsim_coffea.flows import shipped_model_path

    seen = {}

    def fake_run_validation(spec, model, files, out_dir, **kw):
        seen.update(spec=spec.name, model=model.path, files=list(files), out=str(out_dir))
        return {"targets": {"ptRatio": {"w1": 1.0, "w1_floor": 1.0, "ratio": 1.0}}, "c2st_auc": 0.5}

    monkeypatch.setattr(validation, "run_validation", fake_run_validation)
    heldout = tmp_path / "heldout.root"
    heldout.touch()
    assert main(["validate", "jets", str(heldout), "-o", str(tmp_path / "report")]) == 0
    out = capsys.readouterr().out
    assert seen["spec"] == "jets" and seen["files"] == [str(heldout)] and seen["out"] == str(tmp_path / "report")
    assert Path(seen["model"]).resolve() == shipped_model_path("jets").resolve()
    assert str(shipped_model_path("jets")) in out and "shipped jets model" in out
    # the old spelling: still accepted, with a deprecation note
    assert main(["validate", "muons", "--input", str(heldout), "-o", str(tmp_path / "r2")]) == 0
    assert seen["spec"] == "muons" and seen["files"] == [str(heldout)]
    assert "--input is deprecated" in capsys.readouterr().err
    # no input file -> one clear error line, exit status 2
    assert main(["validate", "jets", "-o", str(tmp_path / "r3")]) == 2
    assert "input FILE.root" in capsys.readouterr().err


def test_validate_pileup_jets_on_generated_pileup_events(tmp_path, capsys):
    """``flashsim validate pileup_jets``: no input files, held-out pile-up-only events generated here,
    R and R′ drawn with --resimulate / --ref-seed (defaults 201 / 202); report, metrics and figure."""
    from flashsim_coffea.cli import main

    out = tmp_path / "pu"
    assert main(["validate", "pileup_jets", "-o", str(out), "--events", "1500", "--gen-seed", "3"]) == 0
    assert "pile-up jets FlashSim" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} >= {"report.md", "metrics.json", "pileup_jets.png"}
    m = json.loads((out / "metrics.json").read_text())
    assert (m["events"], m["gen_seed"], m["ref_seed"], m["ref_seed2"]) == (1500, 3000, 201, 202)
    assert m["jets"]["F"] > 0 and set(m["w1"]) >= {"pt", "eta", "qgl"}
    # files, or options of the file-based validation, are refused with one clear line
    assert main(["validate", "pileup_jets", "a.root", "-o", str(tmp_path / "x")]) == 2
    assert "input files do not apply" in capsys.readouterr().err
    assert main(["validate", "pileup_jets", "-o", str(tmp_path / "x"), "--resimulate", "5", "--ref-seed", "5"]) == 2
    assert "must differ" in capsys.readouterr().err
    assert main(["validate", "jets", "a.root", "-o", str(tmp_path / "x"), "--events", "10"]) == 2
    assert "--events and --gen-seed are for pileup_jets" in capsys.readouterr().err


def test_validate_without_a_shipped_model_for_the_spec_asks_for_model():
    from flashsim_coffea.commands.validate import _shipped
    from flashsim_coffea.errors import UserError

    with pytest.raises(UserError, match="give --model"):
        _shipped("no_such_spec")


def _strings(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)
    elif isinstance(x, str):
        yield x


@pytest.mark.parametrize("name", ["jets", "muons", "dnn"])
def test_shipped_cards_record_no_absolute_paths(name):
    """A shipped model card names its inputs by file name: no training machine's path."""
    import re

    from flashsim_coffea.flows import shipped_model_path

    card = json.loads((shipped_model_path(name) / "card.json").read_text())
    bad = [s for s in _strings(card) if s.startswith(("/", "~", "\\")) or re.match(r"^[A-Za-z]:[\\/]", s)]
    assert not bad, f"absolute paths in {name}/card.json: {sorted(set(bad))}"


def test_reference_and_flashsim_compared_as_stored_nanoaod_values():
    """Validation compares NanoAOD values: the reference R keeps its stored (rounded) muon η, φ
    — no rounding cells filled as for training — and FlashSim passes through the same rounding."""
    from conftest import real_file
    from flashsim_coffea.flows import load_model, shipped_model_path
    from flashsim_coffea.nanoaod.precision import round_mantissa
    from flashsim_coffea.validation.samples import build_samples

    spec = get_spec("muons")
    s = build_samples(spec, load_model(shipped_model_path("muons"), "muons"), [str(real_file("nano_dy.root"))],
                      ref_seed=202, resimulate=201)
    names = spec.target_names
    for mat, gen in ((s.ref.targets, s.ref.gen), (s.flash, s.ref.gen), (s.ref2.targets, s.ref2.gen)):
        for name, field in (("etaMinusGen", "eta"), ("phiMinusGen", "phi")):
            reco = (gen[field] + mat[:, names.index(name)]).astype(np.float32)
            if field == "phi":
                reco = np.where(reco > np.pi, reco - 2 * np.pi, np.where(reco < -np.pi, reco + 2 * np.pi, reco)).astype(np.float32)
            assert np.mean(round_mantissa(reco, 12) == reco) > 0.99, name
