"""``flashsim demo``: statistics against hand values, bad input, and a run on tiny inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from flashsim_coffea.cli import main
from flashsim_coffea.demo import DemoConfig, run_demo
from flashsim_coffea.demo.inputs import check_models, prepare_output, resolve_samples
from flashsim_coffea.stats import Hist1D, chi2_ndf, mean_rel_error
from flashsim_coffea.errors import UserError

MODELS = Path(__file__).resolve().parents[1] / "flashsim_coffea" / "models"


def shipped_flows_present() -> bool:
    """Shipped jets and muons flows that load for the current specs (their own tests check them;
    here, without usable ones, the demo runs on the tiny models)."""
    from flashsim_coffea.flows.sampler import load_model

    try:
        for name in ("jets", "muons"):
            load_model(MODELS / name, name)
    except (UserError, OSError):
        return False
    return True


# --------------------------------------------------------------------------- statistics
def test_chi2_ndf_hand_values():
    c = chi2_ndf(np.array([10.0, 5.0, 0.0]), np.array([10.0, 5.0, 0.0]), np.array([8.0, 5.0, 0.0]), np.array([6.0, 5.0, 0.0]))
    assert c.ndf == 2  # the empty bin does not count
    assert c.chi2 == pytest.approx(4.0 / 16.0)
    assert c.per_ndf == pytest.approx(0.125)
    assert math.isnan(chi2_ndf(np.zeros(2), np.zeros(2), np.zeros(2), np.zeros(2)).per_ndf)


def test_mean_rel_error_hand_values():
    edges = np.arange(4.0)
    a = Hist1D(np.array([4.0, 16.0, 0.0]), np.array([4.0, 16.0, 0.0]), edges)
    b = Hist1D(np.array([4.0, 16.0, 1.0]), np.array([1.0, 4.0, 1.0]), edges)
    # bins filled in both: 0 and 1; σ/content = (0.5, 0.25) and (0.25, 0.125)
    assert mean_rel_error(a, b) == pytest.approx([37.5, 18.75])


# --------------------------------------------------------------------------- bad input
def test_output_folder_not_empty_or_not_writable(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty.*--force"):
        prepare_output(DemoConfig(output=busy))
    assert prepare_output(DemoConfig(output=busy, force=True)) == busy
    assert (busy / "notes.txt").exists()  # --force replaces only the report's own files
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        prepare_output(DemoConfig(output=blocker))
    with pytest.raises(UserError, match="cannot write"):
        prepare_output(DemoConfig(output=blocker / "sub"))


def test_cli_refuses_non_empty_folder_before_work(tmp_path, capsys):
    (tmp_path / "x").write_text("x")
    assert main(["demo", "-o", str(tmp_path), "--samples", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "flashsim demo: error:" in err and "not empty" in err


def test_missing_bundled_samples_name_package_path(tmp_path, monkeypatch):
    import flashsim_coffea.samples as samples

    monkeypatch.setattr(samples, "sample_dir", lambda: tmp_path / "pkgdata")
    with pytest.raises(UserError, match="pkgdata"):
        resolve_samples(DemoConfig(output=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_missing_models_name_package_path(tmp_path, monkeypatch):
    import flashsim_coffea.flows.sampler as sampler

    def missing(name):
        raise UserError(f"no shipped model {name!r} in {MODELS}")

    monkeypatch.setattr(sampler, "shipped_model_path", missing)
    with pytest.raises(UserError, match="flashsim_coffea/models"):
        check_models(DemoConfig())
    with pytest.raises(UserError, match="card.json"):
        check_models(DemoConfig(models={"jets": tmp_path, "muons": tmp_path}))
    with pytest.raises(UserError, match="folds"):
        run_demo(DemoConfig(output=tmp_path / "o", folds=1))


def test_models_loaded_before_work(demo_models, tmp_path):
    models = demo_models or {n: MODELS / n for n in ("jets", "muons")}
    # the muons flow given as the jets model: a clear error from check_models, before any output exists
    with pytest.raises(UserError, match="spec"):
        run_demo(DemoConfig(output=tmp_path / "o", models={"jets": models["muons"], "muons": models["muons"]},
                            samples={}, processes=()))
    assert not (tmp_path / "o").exists()
    assert check_models(DemoConfig(models=models)) == models


# --------------------------------------------------------------------------- a whole run
@pytest.fixture(scope="module")
def tiny_samples(generated) -> dict[str, Path]:
    sizes = {"vbf_hmm": 150, "vbf_hmm_alt": 150, "ewk_mumujj": 50, "dy": 50, "ttbar": 30, "dy_incl": 60, "ttbar_mumu": 40,
             "ttbar_mumu_vbf": 40}
    process = {"dy_incl": "dy", "ttbar_mumu_vbf": "ttbar_mumu"}  # unfiltered here: the filters cost Pythia time
    return {p: generated(process.get(p, p), n, seed=30 + i)[0] for i, (p, n) in enumerate(sizes.items())}


@pytest.fixture(scope="module")
def demo_models(request) -> dict[str, Path] | None:
    if shipped_flows_present():
        return None
    return request.getfixturevalue("tiny_models")


@pytest.fixture(scope="module")
def demo_full(tiny_samples, demo_models, tmp_path_factory):
    """(report folder, summary, the texts of every figure saved during the run)."""
    import matplotlib.figure
    import matplotlib.text

    out = tmp_path_factory.mktemp("demo") / "report"
    cfg = DemoConfig(output=out, samples=tiny_samples, models=demo_models, folds=5, single_event_folds=200,
                     executor="iterative", chunksize=500, progress=False)
    texts: dict[str, list[str]] = {}
    savefig = matplotlib.figure.Figure.savefig

    def recording(fig, path, *args, **kwargs):
        texts[Path(path).name] = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
        return savefig(fig, path, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(matplotlib.figure.Figure, "savefig", recording)
        summary = run_demo(cfg)
    return out, summary, texts


@pytest.fixture(scope="module")
def demo_run(demo_full):
    return demo_full[:2]


def test_report_image_links_relative_to_report(tmp_path, monkeypatch):
    from flashsim_coffea.demo.report import _img

    monkeypatch.chdir(tmp_path)
    assert _img(Path("rep/figures/a.png"), Path("rep")) == "![a](figures/a.png)"
    assert _img(tmp_path / "rep" / "figures" / "a.png", Path("rep")) == "![a](figures/a.png)"


def test_demo_outputs_exist(demo_run):
    out, summary = demo_run
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["variation_chi2_ndf"] == pytest.approx(summary["variation_chi2_ndf"])
    md = (out / "summary.md").read_text()
    for f in summary["figures"]:
        path = out / f
        assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG", f
        assert f"]({f})" in md, f"{f} not embedded in summary.md"
    names = {Path(f).name for f in summary["figures"]}
    assert {"upsampling_dnn_atanh.png", "upsampling_log_zstar.png", "single_event_dnn.png", "variation_SR_dnn_atanh.png",
            "vbf_hmm_SR_dnn_atanh.png", "dy_presel_mass.png", "signal_vs_dy_rpt.png"} <= names
    assert "χ²/ndf" in md and "Cutflows" in md and "FlashSim-driven variation" in md


def test_demo_numbers_are_sane(demo_run):
    _, s = demo_run
    assert {"vbf_hmm/SR/dnn_atanh", "dy/SR/rpt", "vbf_hmm/presel/mass"} <= set(s["chi2_ndf"])
    # upsampling reduces the mean statistical error
    up = s["upsampling"]
    for short in ("dnn", "zstar"):
        assert 0 < up[f"{short}_error_folds5"] < up[f"{short}_error_folds1"] <= 100
    # FlashSim-driven variation vs FullSim: finite and reasonable
    assert 0 <= s["variation_chi2_ndf"] < 5
    # cutflows conserve events and Gen yields are sane
    for mode, per in s["cutflow"].items():
        for p, cf in per.items():
            counts = list(cf.values())
            assert counts == sorted(counts, reverse=True) and counts[0] == s["samples"][p]["events"], (mode, p)
    single = s["single_event"]
    assert 0 <= single["fraction_sr"] <= single["fraction_selected"] + 1e-12 and single["fraction_selected"] <= 1
    assert single["folds"] == 200
    ratio = s["flash_full_yield_ratio"]["vbf_hmm/presel"]
    if shipped_flows_present():  # trained models: FlashSim yields near FullSim's (loose: ~50 events here)
        assert 0.6 < ratio < 1.67
        for p in ("vbf_hmm", "vbf_hmm_alt"):
            flash, full = s["yields"][p]["FlashSim"]["SR"], s["yields"][p]["FullSim"]["SR"]
            assert abs(flash - full) <= 0.3 * full + 3 * np.sqrt(flash + full), (p, flash, full)
        assert s["chi2_ndf"]["vbf_hmm/presel/mass"] < 5
    else:  # seconds-trained tiny flows: only a finite, positive yield
        assert 0 < ratio < 5
    # every ratio carries its statistical error: the two yields' errors in quadrature
    y, e = s["yields"]["vbf_hmm"], s["yield_errors"]["vbf_hmm"]
    rel = np.hypot(e["FlashSim"]["presel"] / y["FlashSim"]["presel"], e["FullSim"]["presel"] / y["FullSim"]["presel"])
    assert s["flash_full_yield_ratio_err"]["vbf_hmm/presel"] == pytest.approx(ratio * rel, rel=1e-9)
    assert 0 < e["FullSim"]["presel"] <= y["FullSim"]["presel"]  # unit weights: √N ≤ N
    total = s["expected_events"]["regions"]["SR"]["total"]
    assert np.isfinite(total["ratio_err"]) and total["ratio_err"] > 0
    # FlashSim's counts summed over each run, in the report (not warned per chunk)
    counts = s["flashsim_counts"]["vbf_hmm"]
    assert counts["Muon"]["n_gen"] > 0 and counts["Jet"]["n_reco"] > 0


def test_events_option_generates_once_and_caches(tiny_samples, tmp_path, monkeypatch):
    import shutil

    import flashsim_coffea.generate.driver as driver

    calls = []

    def fake_generate(process, n, seed, output, workers=1, filter_name=None, force=False, progress=True):
        calls.append((process, n, seed, filter_name))
        shutil.copy(tiny_samples[process], output)

    monkeypatch.setattr(driver, "generate", fake_generate)
    cfg = DemoConfig(output=tmp_path / "out", events=150, processes=("vbf_hmm", "vbf_hmm_alt"), progress=False)
    got = resolve_samples(cfg, log=lambda *_: None)
    assert got == {p: tmp_path / "out" / "samples" / f"{p}.root" for p in ("vbf_hmm", "vbf_hmm_alt")}
    assert calls == [("vbf_hmm", 150, 104, None), ("vbf_hmm_alt", 150, 105, None)]  # the bundled seeds
    resolve_samples(cfg, log=lambda *_: None)
    assert len(calls) == 2  # cached: same number of events already there
    prepare_output(cfg)  # the samples cache does not make the folder "not empty"


STACKS = {"stack_SR_mass.png", "stack_SR_dnn_atanh.png", "stack_presel_mass.png"}


def test_stack_figures_first_with_expected_events_table(demo_run):
    out, s = demo_run
    names = {Path(f).name for f in s["figures"]}
    assert STACKS <= names
    md = (out / "summary.md").read_text()
    first = md.index("## Expected events, L = 137 fb⁻¹")
    assert first < md.index("## Samples") < md.index("## Headline numbers")  # the report starts with it
    table = md[first:md.index("## Samples")]
    assert "| process | in stack | σ [pb] | FullSim | FlashSim | FlashSim / FullSim |" in table
    for name in ("VBF H→μμ", "tt̄ → μν μν", "DY μμ + jets", "**total (stacked)**"):
        assert f"| {name} |" in table, name
    for name in STACKS:
        assert f"](figures/{name})" in table, name
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["expected_events"]["regions"]["SR"]["total"]["FullSim"] == pytest.approx(
        s["expected_events"]["regions"]["SR"]["total"]["FullSim"])


def test_expected_events_are_sigma_lumi_normalised(demo_run, tiny_samples):
    """σ·L·(Σw in the SR)/Σw recomputed from the file for one process; the stack excludes the variation
    and the inclusive tt̄, and its total is the sum of its processes."""
    import uproot

    _, s = demo_run
    exp = s["expected_events"]
    assert exp["lumi_fb"] == 137.0 and s["settings"]["lumi_fb"] == 137.0
    runs = uproot.open(tiny_samples["vbf_hmm"])["Runs"].arrays(library="np")
    xsec, sumw = float(runs["XSecPb"][0]), float(runs["genEventSumw"].sum())
    sr = exp["regions"]["SR"]["processes"]
    for mode in ("FullSim", "FlashSim"):
        hand = xsec * 137.0 * 1000.0 * s["yields"]["vbf_hmm"][mode]["SR"] / sumw
        assert sr["vbf_hmm"][mode] == pytest.approx(hand, rel=1e-9), mode
    assert sr["vbf_hmm"]["xsec_pb"] == pytest.approx(xsec)
    stack = exp["stack"]["SR"]
    assert "vbf_hmm_alt" not in stack and "ttbar" not in stack and {"vbf_hmm", "ttbar_mumu_vbf"} <= set(stack)
    assert {"dy_incl", "ttbar_mumu"} <= set(exp["stack"]["presel"]) and sum(p.startswith("dy") for p in stack) == 1
    assert sum(p.startswith("ttbar") for p in stack) == 1
    total = exp["regions"]["SR"]["total"]
    assert total["FullSim"] == pytest.approx(sum(sr[p]["FullSim"] for p in stack))
    assert total["FlashSim"] == pytest.approx(sum(sr[p]["FlashSim"] for p in stack))


def test_no_demo_figure_says_cms(demo_full):
    _, s, texts = demo_full
    assert STACKS <= set(texts) and len(texts) == len(s["figures"])
    for name, t in texts.items():
        joined = " | ".join(t)
        assert "CMS" not in joined.upper(), (name, joined)
        assert "flashsim-coffea" in t, name
