"""``flashsim closure`` and :mod:`flashsim_coffea.closure` on the bundled VBF H→μμ sample (2000 events)."""

from __future__ import annotations

import json
from pathlib import Path

import hist
import numpy as np
import pytest
import uproot

from flashsim_coffea.closure import (
    SOURCES,
    SUMMARY_KEYS,
    ClosureConfig,
    ClosureOutputs,
    chi2_table,
    compare_outputs,
    run_closure,
    run_outputs,
    write_report,
)
from flashsim_coffea.stats import chi2_ndf, chi2_pooled
from flashsim_coffea.errors import MissingBranchesError, UserError
from flashsim_coffea.samples import sample_path

REF = sample_path("vbf_hmm")
#: the seed that drew the bundled sample's reference response (flashsim_coffea/samples/__init__.py)
REF_OWN_SEED = 104


def _cfg(tmp_path, **kw) -> ClosureConfig:
    kw.setdefault("output", tmp_path / "out")
    kw.setdefault("ref", REF)
    return ClosureConfig(executor="iterative", progress=False, figures=False, **kw)


def _copy(src: Path, dst: Path, drop: str | None = None, stop: int | None = None) -> Path:
    """``src``'s Events (without the branches starting with ``drop``, first ``stop`` entries) in a new file."""
    from flashsim_coffea.nanoaod.io import NanoAODWriter, is_counter

    tree = uproot.open(src)["Events"]
    names = [n for n in tree.keys() if not is_counter(n, tree.keys()) and not (drop and n.startswith(drop))]
    writer = NanoAODWriter(dst)
    writer.extend(tree.arrays(names, entry_stop=stop, how=dict))
    writer.close()
    return dst


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Processor outputs: fullsim on REF, on two more reference draws (seeds 11, 12) and flashsim on REF."""
    from flashsim_coffea.reference.resimulate import resimulate_file

    folder = tmp_path_factory.mktemp("closure_runs")
    draws = {s: folder / f"ref_{s}.root" for s in (11, 12)}
    for s, path in draws.items():
        resimulate_file(REF, path, s, progress=False)
    out11 = run_outputs(_cfg(folder), draws[11])
    out12 = run_outputs(_cfg(folder), draws[12])
    return {"ref": out11.reference, "ref11": out11.reference2, "ref12": out12.reference2, "flash": out11.flashsim,
            "draws": draws}


def test_chi2_of_a_histogram_with_itself_is_zero(runs):
    h = hist.Hist(hist.axis.Regular(10, 0, 1), storage=hist.storage.Weight())
    h.fill(np.random.default_rng(1).uniform(size=200))
    c = chi2_ndf(h.values(), h.variances(), h.values(), h.variances())
    assert c.chi2 == 0 and c.ndf == 10
    same = ClosureOutputs(runs["ref"], runs["ref"], runs["ref"])
    rows = chi2_table(same)
    assert rows and all(r["chi2_flashsim"] == 0 and r["chi2_floor"] == 0 for r in rows)
    assert all(np.isnan(r["ratio"]) and not r["above_goal"] for r in rows)


def test_pooled_chi2():
    """Unit weights: the demo's χ²; one side with N folds: ≈ ndf in sparse bins, where observed variances inflate it."""
    a, b = np.array([10.0, 5.0, 0.0, 3.0]), np.array([8.0, 5.0, 2.0, 0.0])
    assert chi2_pooled(a, a, b, b).chi2 == pytest.approx(chi2_ndf(a, a, b, b).chi2) == pytest.approx(4 / 18 + 4 / 2 + 9 / 3)
    assert chi2_pooled(a, a, b, b).ndf == 4 and chi2_pooled(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3)).ndf == 0
    rng = np.random.default_rng(5)
    mu = 156 * np.diff(np.linspace(0, 1, 31) ** 2)  # ~the VBF sideband: 156 events in 30 bins
    r_obs, r_pool = [], []
    for _ in range(300):
        ref, ref2 = rng.poisson(mu).astype(float), rng.poisson(mu).astype(float)
        f20 = rng.poisson(20 * mu) / 20.0  # a perfect FlashSim with 20 folds: variances content/20
        r_obs.append(chi2_ndf(f20, f20 / 20, ref, ref).chi2 / chi2_ndf(ref2, ref2, ref, ref).chi2)
        r_pool.append(chi2_pooled(f20, f20 / 20, ref, ref).chi2 / chi2_pooled(ref2, ref2, ref, ref).chi2)
    assert np.median(r_obs) > 2.2 and 0.85 < np.median(r_pool) < 1.2


def test_reference_closure_with_itself_is_within_the_floor(runs):
    """FlashSim replaced by the reference itself: χ² 0 ≤ floor; replaced by a third draw: about the floor."""
    s = compare_outputs(ClosureOutputs(runs["ref"], runs["ref11"], runs["ref"]))
    assert all(r["chi2_flashsim"] == 0 and r["chi2_flashsim"] <= r["chi2_floor"] for r in s["chi2"])
    assert all(r["ratio"] <= 1 or np.isnan(r["ratio"]) for r in s["chi2"])
    assert s["chi2_summary"]["above_target"] == [] and s["chi2_summary"]["above_goal"] == []
    assert all(r["ratio_flashsim"]["value"] == 1 for r in s["cutflow"] if r["reference"]["eff"] > 0)
    assert s["mass_rms"]["rel_diff_flashsim"] == 0
    third = compare_outputs(ClosureOutputs(runs["ref"], runs["ref11"], runs["ref12"]))
    assert 0.5 < third["chi2_summary"]["median_ratio"] < 2.0
    for row in third["cutflow"]:
        assert abs(row["ratio_flashsim"]["value"] - 1) <= 3 * row["ratio_flashsim"]["err"] + 1e-12


def test_flashsim_closure_numbers(runs):
    s = compare_outputs(ClosureOutputs(runs["ref"], runs["ref11"], runs["flash"]))
    assert [r["step"] for r in s["cutflow"]][0] == "all"
    effs = [r["flashsim"]["eff"] for r in s["cutflow"]]
    assert effs[0] == 1 and all(a >= b for a, b in zip(effs, effs[1:]))
    assert {r["region"] for r in s["yields"]} == {"presel", "SR", "SB"}
    assert s["chi2_summary"]["compared"] > 50 and np.isfinite(s["chi2_summary"]["median_ratio"])
    assert all(r["ndf_flashsim"] > 0 for r in s["chi2"] if r["region"] == "presel")
    m = s["mass_rms"]
    assert all(2 < m[k]["rms"] < 6 for k in SOURCES) and abs(m["rel_diff_floor"]) < 0.25


def test_second_draw_differs_and_seeds_are_honoured(runs, tmp_path):
    from flashsim_coffea.reference.resimulate import resimulate_file

    pt = {k: uproot.open(p)["Events"]["Jet_pt"].array() for k, p in (("ref", REF), *runs["draws"].items())}
    pt = {k: v.tolist() for k, v in pt.items()}
    assert len(pt["ref"]) == len(pt[11]) == len(pt[12]) == 2000
    assert pt["ref"] != pt[11] and pt[11] != pt[12] and pt["ref"] != pt[12]
    assert runs["ref"]["cutflow"] != runs["ref11"]["cutflow"] != runs["ref12"]["cutflow"]
    again = resimulate_file(REF, tmp_path / "again.root", 11, progress=False)["output"]
    assert uproot.open(again)["Events"]["Jet_pt"].array().tolist() == pt[11]  # the same seed: the same draw
    s = compare_outputs(ClosureOutputs(runs["ref"], runs["ref11"], runs["flash"]))
    assert all(r["chi2_floor"] > 0 for r in s["chi2"] if r["region"] == "presel")


def test_command_end_to_end(tmp_path, capsys):
    from flashsim_coffea.cli import main

    out = tmp_path / "closure"
    assert main(["closure", str(REF), "-o", str(out), "--executor", "iterative", "--ref-seed", "77",
                 "--no-figures", "--no-progress", "--dataset", "vbf", "--folds", "2", "--mass-draws", "2"]) == 0
    printed = capsys.readouterr().out
    assert "chi2 ratio FlashSim/floor" in printed and "m_mumu RMS" in printed
    assert "FlashSim 2 folds vs 4 reference draws pooled" in printed
    s = json.loads((out / "summary.json").read_text())
    assert set(SUMMARY_KEYS) <= set(s)
    assert s["dataset"] == "vbf" and s["events"] == 2000 and s["inputs"]["ref2_seed"] == 77
    assert set(s["cutflow"][0]) == {"step", "flashsim", "reference", "reference2", "ratio_flashsim", "ratio_floor"}
    assert set(s["chi2"][0]) >= {"region", "variable", "chi2_flashsim", "ndf_flashsim", "chi2_floor", "ndf_floor", "ratio",
                                 "above_target", "above_goal"}
    assert set(s["chi2_summary"]) >= {"median_ratio", "worst", "above_target", "above_goal"}
    assert set(s["mass_rms"]) >= {"flashsim", "reference", "reference2", "rel_diff_flashsim", "rel_diff_floor"}
    pooled = s["mass_rms"]["pooled"]
    assert pooled["draws"] == 4 and pooled["folds"] == 2 and s["settings"]["mass_draws"] == 2
    assert len(set(pooled["rms_draws"])) == 4 and pooled["rms_draws"][:2] == [s["mass_rms"]["reference"]["rms"],
                                                                              s["mass_rms"]["reference2"]["rms"]]
    assert 0 < pooled["err"] < 0.2 and abs(pooled["rel_diff"]) < 0.2
    assert (out / "summary.md").read_text().startswith("# Closure") and "reference draws pooled" in (out / "summary.md").read_text()
    assert not list(out.glob(".ref2-*"))  # the temporary reference′ (and the extra draws) are removed
    # the output folder now exists: refused without --force
    assert main(["closure", str(REF), "-o", str(out), "--no-figures", "--no-progress"]) == 2
    assert "--force" in capsys.readouterr().err


def test_given_ref2_and_figures(runs, tmp_path):
    cfg = _cfg(tmp_path, ref2=runs["draws"][11])
    s = run_closure(cfg)
    assert s["inputs"]["ref2"] == str(runs["draws"][11]) and s["inputs"]["ref2_seed"] is None
    outputs = ClosureOutputs(runs["ref"], runs["ref11"], runs["flash"])
    s = write_report(s, outputs, tmp_path / "out", hists=[("presel", "mass")])
    assert s["figures"] == ["figures/cutflow.png", "figures/presel_mass.png"]
    assert all((tmp_path / "out" / f).stat().st_size > 1000 for f in s["figures"])


def test_clear_errors(runs, tmp_path):
    with pytest.raises(UserError, match="same draw"):
        run_closure(_cfg(tmp_path, ref_seed=REF_OWN_SEED))
    with pytest.raises(UserError, match="is REF itself"):
        run_closure(_cfg(tmp_path, ref2=REF))
    short = _copy(runs["draws"][11], tmp_path / "short.root", stop=500)
    with pytest.raises(UserError, match="same events"):
        run_closure(_cfg(tmp_path, ref2=short))
    no_gen = _copy(REF, tmp_path / "no_gen.root", drop="GenPart_")
    with pytest.raises(MissingBranchesError, match="GenPart_pt"):
        run_closure(_cfg(tmp_path, ref=no_gen))
    with pytest.raises(UserError, match="folds"):
        run_closure(_cfg(tmp_path, folds=0))
    with pytest.raises(UserError, match="mass-draws"):
        run_closure(_cfg(tmp_path, mass_draws=-1))
    with pytest.raises(UserError, match=f"repeat the draw of seed {REF_OWN_SEED}"):
        run_closure(_cfg(tmp_path, ref_seed=REF_OWN_SEED - 2, mass_draws=3))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        run_closure(_cfg(tmp_path, output=tmp_path / "full"))
    assert not (tmp_path / "out").exists()  # nothing written before the checks passed


def test_flashsim_models_are_recorded(tmp_path):
    from flashsim_coffea.closure import flashsim_models

    default = flashsim_models(_cfg(tmp_path))
    assert {"jets", "muons"} <= set(default) and all(len(m["weights_sha256"] or "x" * 64) == 64 for m in default.values())
    assert "pileup_jets" not in flashsim_models(_cfg(tmp_path, pileup_jets_model=False))


def test_pooled_mass_rms(runs):
    """Many draws: the reference pooled is the RMS of the summed histograms, σ_Δ from the draws' spread."""
    from flashsim_coffea.closure import pooled_mass_rms

    assert pooled_mass_rms(ClosureOutputs(runs["ref"], runs["ref11"], runs["flash"])) is None
    h12 = runs["ref12"]["hists"]["presel"]["mass"]
    p = pooled_mass_rms(ClosureOutputs(runs["ref"], runs["ref11"], runs["flash"], folds=1, mass_draws=[h12]))
    hs = [runs[k]["hists"]["presel"]["mass"] for k in ("ref", "ref11", "ref12")]
    total = hs[0] + hs[1] + hs[2]
    x, w = total.axes[0].centers, total.values()
    mean = (w * x).sum() / w.sum()
    assert p["reference_pooled"] == pytest.approx(np.sqrt((w * (x - mean) ** 2).sum() / w.sum()), rel=1e-12)
    assert p["draws"] == 3 and p["sigma_draw"] == pytest.approx(np.std(p["rms_draws"], ddof=1))
    assert p["err"] == pytest.approx(p["sigma_draw"] / p["reference_pooled"] * np.sqrt(1 + 1 / 3))
    # a reference draw in FlashSim's place: Δ is the draw's own deviation from the pool
    same = pooled_mass_rms(ClosureOutputs(runs["ref"], runs["ref11"], runs["ref12"], mass_draws=[h12]))
    assert same["flashsim_pooled"] == same["rms_draws"][2] and abs(same["rel_diff"]) < 3 * same["err"]


def test_folds_count_gen_events(runs, tmp_path):
    out = run_outputs(_cfg(tmp_path, folds=2), runs["draws"][11])
    s = compare_outputs(out)
    first, last = s["cutflow"][0], s["cutflow"][-1]
    assert first["flashsim"] == {"count": 2000.0, "eff": 1.0, "err": 0.0}
    assert 0.5 < last["ratio_flashsim"]["value"] < 1.5
    presel = s["yields"][0]
    assert presel["flashsim"]["err"] < presel["reference"]["err"]  # fold-weighted errors: smaller


def test_ratio_error_propagates_both_errors():
    from flashsim_coffea.stats import ratio_error

    r, e = ratio_error(90.0, 9.0, 100.0, 10.0)
    assert r == pytest.approx(0.9) and e == pytest.approx(0.9 * np.hypot(0.1, 0.1))
    assert ratio_error(0.0, 1.0, 10.0, 1.0) == (0.0, pytest.approx(0.1))  # an empty numerator: its error / b
    assert all(np.isnan(ratio_error(1.0, 1.0, 0.0, 0.0)))  # no denominator: undefined
