"""flashsim_coffea.plotting: ratio maths against hand values, FoldHist errors, files written."""

from __future__ import annotations

import hist
import numpy as np
import pytest

from flashsim_coffea import plotting as pl
from flashsim_coffea.hists import FoldHist


def test_ratio_hand_values():
    a, va = np.array([10.0, 4.0, 0.0, 3.0]), np.array([10.0, 4.0, 0.0, 1.0])
    b, vb = np.array([5.0, 4.0, 2.0, 0.0]), np.array([5.0, 16.0, 4.0, 0.0])
    r = pl.ratio(a, va, b, vb)
    np.testing.assert_allclose(r.value[:3], [2.0, 1.0, 0.0])
    np.testing.assert_allclose(r.num_err[:3], [np.sqrt(10) / 5, 0.5, 0.0])
    np.testing.assert_allclose(r.den_band[:3], [np.sqrt(5) / 5, 1.0, 1.0])
    # full error: |r| sqrt(va/a² + vb/b²) where a > 0; sqrt(va)/b when a = 0
    np.testing.assert_allclose(r.err[:2], [2 * np.sqrt(10 / 100 + 5 / 25), 1 * np.sqrt(4 / 16 + 16 / 16)])
    np.testing.assert_allclose(r.err[2], 0.0)
    assert np.isnan(r.value[3]) and np.isnan(r.num_err[3]) and np.isnan(r.den_band[3]) and np.isnan(r.err[3])


def test_ratio_without_variances_and_relative_error():
    r = pl.ratio([1.0, 2.0], None, [2.0, 2.0], None)
    np.testing.assert_allclose(r.value, [0.5, 1.0])
    np.testing.assert_allclose(r.err, [0.0, 0.0])
    rel = pl.relative_error(np.array([4.0, 0.0, 10.0]), np.array([4.0, 1.0, 25.0]))
    np.testing.assert_allclose(rel[[0, 2]], [0.5, 0.5])
    assert np.isnan(rel[1])
    assert np.isnan(pl.relative_error(np.array([1.0]), None)).all()


def test_hist_data_weighted_and_foldhist():
    ax = hist.axis.Regular(4, 0, 4, name="x")
    h = hist.Hist(ax, storage=hist.storage.Weight())
    h.fill(x=[0.5, 0.5, 2.5, 9.0], weight=[2.0, 1.0, 3.0, 5.0])  # 9.0 → overflow, excluded
    v, var, edges = pl.hist_data(h)
    np.testing.assert_allclose(v, [3, 0, 3, 0])
    np.testing.assert_allclose(var, [5, 0, 9, 0])
    np.testing.assert_allclose(edges, [0, 1, 2, 3, 4])
    # FoldHist, N = 2: event 1 has both folds in bin 0, event 2 one fold in bin 0, one in bin 1
    fh = FoldHist(ax, folds=2)
    fh.fill(x=[0.5, 0.5, 0.5, 1.5], key=np.array([1, 1, 2, 2]), weight=np.full(4, 0.5))  # each copy: w_ev / 2
    v, var, _ = pl.hist_data(fh)
    np.testing.assert_allclose(v, [1.5, 0.5, 0, 0])  # Σ_ev pdf_i^ev
    np.testing.assert_allclose(var, [1.0 + 0.25, 0.25, 0, 0])  # Σ_ev pdf²
    s = pl.series(fh, "FlashSim folds 2")
    assert s.color == pl.COLORS["FlashSim"]
    np.testing.assert_allclose(s.errors, np.sqrt([1.25, 0.25, 0, 0]))
    n = pl.normalized(s)
    assert n.values.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(n.variances, s.variances / 4)
    with pytest.raises(ValueError):
        pl.hist_data(hist.Hist(ax, hist.axis.Regular(2, 0, 1, name="y")))


def _h(values, seed=0):
    rng = np.random.default_rng(seed)
    h = hist.Hist(hist.axis.Regular(20, -3, 3, name="x", label="x [GeV]"), storage=hist.storage.Weight())
    h.fill(x=rng.normal(size=values))
    return h


def test_compare_and_relative_error_plot_write_files(tmp_path):
    full, flash = _h(2000, 1), _h(2000, 2)
    fig = pl.compare([pl.series(full, "FullSim", histtype="errorbar"), pl.series(flash, "FlashSim")],
                     xlabel="x [GeV]", title="test", log=True, path=tmp_path / "cmp.png")
    assert fig is not None
    out = tmp_path / "cmp.png"
    assert out.stat().st_size > 5000 and out.read_bytes()[:4] == b"\x89PNG"
    pl.compare([pl.series(full, "FullSim", histtype="errorbar"), pl.series(flash, "FlashSim"),
                pl.series(flash, "Gen", linestyle="--")], density=True, path=tmp_path / "three")
    assert (tmp_path / "three.png").is_file()
    pl.relative_error_plot([pl.series(full, "FlashSim folds 1"), pl.series(flash, "FlashSim folds 25", color="g")],
                           xlabel="x", path=tmp_path / "rel.png")
    assert (tmp_path / "rel.png").stat().st_size > 5000


def test_histogram_from_values_clips_tails_and_drops_nan():
    s = pl.histogram([0.5, 1.5, 1.5, -3.0, 7.0, np.nan], [0, 1, 2], "FlashSim", weights=[1, 2, 3, 1, 1, 1])
    np.testing.assert_allclose(s.values, [2.0, 6.0])  # -3 → first bin, 7 → last bin, NaN dropped
    np.testing.assert_allclose(s.variances, [2.0, 4 + 9 + 1])
    assert s.color == pl.COLORS["FlashSim"]
    s = pl.histogram([-3.0, 0.5], [0, 1], "x", clip=False)
    np.testing.assert_allclose(s.values, [1.0])


# --------------------------------------------------------------------------- labels
def _texts(fig) -> list[str]:
    """Every text of a figure: labels, titles, legends, tick labels, annotations."""
    import matplotlib.text

    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]


@pytest.fixture
def figure_texts(monkeypatch):
    """Collects the texts of every figure saved while the test runs."""
    import matplotlib.figure

    seen: list[list[str]] = []
    savefig = matplotlib.figure.Figure.savefig

    def recording(fig, *args, **kwargs):
        seen.append(_texts(fig))
        return savefig(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording)
    return seen


def _assert_project_label(texts: list[str]) -> None:
    joined = " | ".join(texts)
    assert "CMS" not in joined.upper(), joined
    assert pl.LABEL_NAME in texts and pl.LABEL_TEXT in texts, joined


def test_project_label_names_the_project_not_an_experiment():
    import matplotlib.pyplot as plt

    pl.use_style()
    for kwargs, right in (({"title": "signal region"}, "signal region (13 TeV)"), ({}, "(13 TeV)"),
                          ({"title": "nano_dy", "com": None}, "nano_dy")):
        fig, ax = plt.subplots()
        pl.project_label(ax, **kwargs)
        texts = _texts(fig)
        _assert_project_label(texts)
        assert right in texts and (kwargs.get("com", 13) is not None or "(13 TeV)" not in " ".join(texts))
        plt.close(fig)
    assert not hasattr(pl, "cms_label")


@pytest.mark.slow  # renders every demo figure (~35 s)
def test_no_figure_says_cms(tmp_path, figure_texts):
    """The plotting helpers, the validation plots and every demo figure: the project's label,
    never "CMS" (nothing here is the collaboration's simulation)."""
    from flashsim_coffea.validation import plots as vp

    full, flash = _h(2000, 1), _h(2000, 2)
    pl.compare([pl.series(full, "FullSim", histtype="errorbar"), pl.series(flash, "FlashSim")], title="t",
               path=tmp_path / "a.png")
    pl.relative_error_plot([pl.series(full, "FlashSim folds 1"), pl.series(flash, "FlashSim folds 25")], path=tmp_path / "b.png")
    rng = np.random.default_rng(0)
    n = 3000
    x, y = rng.normal(size=n), rng.normal(size=n)
    flav = rng.choice([0, 4, 5], size=n)
    tag_f, tag_r = rng.random(n), rng.random(n)
    vp.style()
    vp.hist1d(tmp_path / "h.png", "ptRatio", x, y, rng.normal(size=n), "nano_dy")
    vp.contours(tmp_path / "c.png", "x", "y", x, y, y, x, "nano_dy")
    vp.profile(tmp_path / "p.png", "pt", "ptRatio", np.exp(x) + 20, y, x, "nano_dy")
    vp.flavour_hist(tmp_path / "f.png", "btagDeepB", flav, tag_f, tag_r, "nano_dy")
    vp.roc(tmp_path / "r.png", "btagDeepB", flav, tag_f, tag_r, "nano_dy")
    n_plain = len(figure_texts)
    assert n_plain == 7

    _demo_figures(tmp_path / "demo")
    assert len(figure_texts) > n_plain + 10
    for texts in figure_texts:
        _assert_project_label(texts)


def _demo_figures(folder):
    """all_figures of the demo on made-up histograms of every process, region and variable shown."""
    from flashsim_coffea.analysis.variables import axis_for
    from flashsim_coffea.demo import config
    from flashsim_coffea.demo.figures import all_figures
    from flashsim_coffea.demo.results import VariationResult
    from flashsim_coffea.demo.runs import DemoOutputs, SingleEvent
    from flashsim_coffea.stats import Chi2, as_arrays

    rng = np.random.default_rng(5)
    keys = {(c.region, c.var) for c in config.COMPARISONS} | set(config.SIGNAL_VS_DY) | {
        (r, v) for r, v, _ in config.UPSAMPLING_HISTS} | set(config.VARIATION_HISTS)

    def filled(region, var):
        ax = axis_for(var)
        h = hist.Hist(ax, storage=hist.storage.Weight())
        lo, hi = ax.edges[0], ax.edges[-1]
        h.fill(rng.uniform(lo, hi, size=500), weight=rng.uniform(0.5, 1.5, size=500))
        return h

    def output():
        hists: dict = {}
        for region, var in keys:
            hists.setdefault(region, {})[var] = filled(region, var)
        return {p: {"hists": hists} for p in config.PROCESSES}

    single = SingleEvent(process=config.SIGNAL, entry=0, event_id={"run": 1, "luminosityBlock": 2, "event": 3}, folds=100,
                         output={"hists": {"SR": {"dnn_atanh": filled("SR", "dnn_atanh")}}, "sumw": 100.0},
                         fraction_selected=0.5, fraction_sr=0.3, fullsim_dnn=1.2, gen_dnn=1.4)
    outputs = DemoOutputs(fullsim=output(), gen=output(), flashsim=output(), flashsim_folds=output(), single=single)
    variations = {}
    for region, var in config.VARIATION_HISTS:
        h = as_arrays(filled(region, var))
        variations[f"{region}/{var}"] = VariationResult(region, var, h, h, h, Chi2(3.0, 4))
    figs = all_figures(outputs, {"upsampling": {}}, variations, 25, folder)
    assert figs["single_event"] and figs["variation"] and figs["upsampling"] and figs["signal_vs_dy"]
