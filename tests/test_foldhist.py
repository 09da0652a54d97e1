"""FoldHist against a direct evaluation of the upsampling formulas (docs/analysis.md, "Upsampling"), and FoldHist as a
real ``hist.Hist``: plotting, slicing, projections, arithmetic, uproot, pickling, accumulation."""

from __future__ import annotations

import pickle

import hist
import numpy as np
import pytest
from coffea.processor import accumulate

from flashsim_coffea.hists import FoldHist, fill_any, fold_hist_or_hist


def _folded_sample(rng: np.random.Generator, n_events: int, folds: int, integer_weights: bool):
    """n_events Gen events, each repeated ``folds`` times, with per-fold values near a per-event mean;
    ``w``: the weight of each copy, w_ev / folds (a folded sample's), ``w_ev``: its event's."""
    event = rng.choice(10**9, size=n_events, replace=False)
    run = rng.integers(1, 3, size=n_events)
    w_ev = rng.integers(-2, 4, size=n_events).astype(float) if integer_weights else rng.normal(1, 0.5, n_events)
    mean = rng.uniform(-0.2, 1.2, size=n_events)
    cat = rng.choice(np.array(["a", "b"]), size=n_events)
    rep = lambda a: np.repeat(a, folds)  # noqa: E731
    x = rep(mean) + rng.normal(0, 0.1, n_events * folds)
    x[rng.random(x.size) < 0.01] = np.nan
    perm = rng.permutation(x.size)  # folds of an event need not be adjacent
    cols = dict(run=rep(run), event=rep(event), w=rep(w_ev) / folds, w_ev=rep(w_ev), x=x, cat=rep(cat))
    return {k: v[perm] for k, v in cols.items()}


def _direct(sample: dict, axis: hist.axis.Regular, folds: int):
    """Content Σ_ev w pdf_i and variance Σ_ev (w pdf_i)² by an explicit loop over events."""
    nb = axis.size + 2
    val = {c: np.zeros(nb) for c in ("a", "b")}
    var = {c: np.zeros(nb) for c in ("a", "b")}
    ids = set(zip(sample["run"], sample["event"]))
    for run, ev in ids:
        sel = (sample["run"] == run) & (sample["event"] == ev)
        idx = axis.index(sample["x"][sel]) + 1
        c = sample["cat"][sel][0]
        w = sample["w_ev"][sel][0]
        counts = np.bincount(idx, minlength=nb)
        val[c] += w * counts / folds
        var[c] += (w * counts / folds) ** 2
    return val, var


@pytest.mark.parametrize("folds", [1, 3, 25])
@pytest.mark.parametrize("integer_weights", [True, False])
def test_formula_several_chunks(folds, integer_weights):
    rng = np.random.default_rng(folds * 7 + integer_weights)
    axis = hist.axis.Regular(8, 0.0, 1.0, name="x")
    cat = hist.axis.StrCategory(["a", "b"], name="cat")
    chunks = [_folded_sample(rng, n, folds, integer_weights) for n in (50, 1, 120)]
    parts = []
    for ch in chunks:
        h = FoldHist(cat, axis, folds=folds)
        h.fill(key=(ch["run"], ch["event"]), weight=ch["w"], x=ch["x"], cat=ch["cat"])
        parts.append(h)
    total = accumulate(parts)
    assert isinstance(total, FoldHist) and total.folds == folds
    for c in ("a", "b"):
        exp_val = sum(_direct(ch, axis, folds)[0][c] for ch in chunks)
        exp_var = sum(_direct(ch, axis, folds)[1][c] for ch in chunks)
        np.testing.assert_allclose(total.to_hist()[{"cat": c}].values(flow=True), exp_val, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(total.to_hist()[{"cat": c}].variances(flow=True), exp_var, rtol=1e-12, atol=1e-12)
    # values()/variances() agree with to_hist(), a plain hist.Hist that keeps the folds
    plain = total.to_hist()
    assert type(plain) is hist.Hist and plain.folds == folds
    np.testing.assert_array_equal(total.values(flow=True), plain.values(flow=True))
    np.testing.assert_array_equal(total.variances(flow=True), plain.variances(flow=True))


def test_folds1_identical_to_weighted_hist():
    rng = np.random.default_rng(1)
    s = _folded_sample(rng, 300, 1, integer_weights=False)
    axis = hist.axis.Regular(8, 0.0, 1.0, name="x")
    fh = FoldHist(axis, folds=1)
    fh.fill(key=s["event"], weight=s["w"], x=s["x"])
    ref = hist.Hist(axis, storage=hist.storage.Weight()).fill(x=s["x"], weight=s["w"])
    assert fh.to_hist() == ref
    np.testing.assert_array_equal(fh.values(flow=True), ref.values(flow=True))
    np.testing.assert_array_equal(fh.variances(flow=True), ref.variances(flow=True))


@pytest.mark.parametrize("folds", [1, 5])
def test_chunking_and_order_independent(folds):
    """Any chunking/order gives the same bins: bit for bit for folds = 1 (integer weights: exact
    sums), to floating-point rounding for folds > 1 (each (event, bin) adds S/N, rounded once)."""
    rng = np.random.default_rng(3)
    s = _folded_sample(rng, 400, folds, integer_weights=True)
    axis = hist.axis.Regular(8, 0.0, 1.0, name="x")
    order = np.argsort(s["event"], kind="stable")
    s = {k: v[order] for k, v in s.items()}  # keep folds of one event together for splitting
    bounds = np.flatnonzero(np.diff(s["event"])) + 1

    def run(splits):
        parts = []
        for sl in np.split(np.arange(s["x"].size), splits):
            h = FoldHist(axis, folds=folds)
            h.fill(key=s["event"][sl], weight=s["w"][sl], x=s["x"][sl])
            parts.append(h)
        return accumulate(parts[::-1] if len(parts) % 2 else parts)

    a, b = run(bounds[::7]), run(bounds[::50])
    assert isinstance(a, FoldHist) and a.folds == b.folds == folds and a.axes == b.axes
    if folds == 1:
        assert a == b
        np.testing.assert_array_equal(a.values(flow=True), b.values(flow=True))
        np.testing.assert_array_equal(a.variances(flow=True), b.variances(flow=True))
    else:
        np.testing.assert_allclose(a.values(flow=True), b.values(flow=True), rtol=1e-12, atol=0)
        np.testing.assert_allclose(a.variances(flow=True), b.variances(flow=True), rtol=1e-12, atol=0)
    # against the exact integer sums Σ S_ev and Σ S_ev² of the unscaled event weights, / N and / N²
    val, var = np.zeros(axis.size + 2), np.zeros(axis.size + 2)
    for ev in np.unique(s["event"]):
        m = s["event"] == ev
        S = np.bincount(axis.index(s["x"][m]) + 1, weights=s["w_ev"][m], minlength=axis.size + 2)
        val, var = val + S, var + S**2
    np.testing.assert_allclose(a.values(flow=True), val / folds, rtol=1e-13, atol=0)
    np.testing.assert_allclose(a.variances(flow=True), var / folds**2, rtol=1e-13, atol=0)


def test_pickle_add_and_errors():
    axis = hist.axis.Regular(4, 0.0, 1.0, name="x")
    h = FoldHist(axis, folds=2, label="events", name="m")
    h.fill(key=np.array([1, 1, 2, 2]), weight=np.array([0.5, 0.5, 1.0, 1.0]), x=np.array([0.1, 0.1, 0.1, 0.6]))
    # event 1 (w_ev = 1): both folds in bin 0 -> S = 1; event 2 (w_ev = 2): one fold per bin -> S = 1 each
    np.testing.assert_allclose(h.values(), [2.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(h.variances(), [1.0 + 1.0, 0.0, 1.0, 0.0])
    assert isinstance(h, hist.Hist) and h.storage_type is hist.storage.Weight and (h.name, h.label) == ("m", "events")
    blob = pickle.dumps(h)
    h2 = pickle.loads(blob)
    assert type(h2) is FoldHist and h2.folds == 2 and h2 == h and (h2.name, h2.label) == ("m", "events")
    # the fill-refusal list is not pickled: the unpickled copy accepts event 1, h refuses it
    assert "_filled" not in h.__getstate__()[1] and "_filled" not in h.__dict__
    with pytest.raises(ValueError, match="already filled"):
        h.fill(key=np.array([1]), x=np.array([0.2]))
    h2.fill(key=np.array([1]), x=np.array([0.2]))
    np.testing.assert_allclose(h2.values(), [2.5, 0.0, 1.0, 0.0])
    h2 = pickle.loads(blob)
    s = h + h2
    assert type(s) is FoldHist and s.folds == 2
    np.testing.assert_allclose(s.values(), 2 * h.values())
    np.testing.assert_allclose(h.values(), h2.values())  # inputs not mutated by +
    assert (h + h.copy().reset()) == h
    assert h != h.to_hist() and h.to_hist() == h.to_hist()  # a FoldHist equals only FoldHists of its folds
    with pytest.raises(ValueError, match="2 and 3 folds"):
        h + FoldHist(axis, folds=3)
    with pytest.raises(ValueError, match="2 and 3 folds"):
        accumulate([h, FoldHist(axis, folds=3)])
    with pytest.raises(ValueError, match="positive"):
        FoldHist(axis, folds=0)
    with pytest.raises(ValueError, match="axes"):
        h.fill(key=np.array([1]), y=np.array([0.2]))
    with pytest.raises(TypeError, match="integers"):
        h.fill(key=np.array([1.5]), x=np.array([0.2]))
    with pytest.raises(ValueError, match="needs key"):
        h.fill(key=None, x=np.array([0.2]))
    h.fill(key=np.array([], dtype=int), x=np.array([]))  # empty fill is a no-op
    np.testing.assert_allclose(h.values(), [2.0, 0.0, 1.0, 0.0])


def test_foldhist_and_plain_hist_do_not_mix():
    """A plain hist.Hist has no folds: adding it to a FoldHist (either order) is refused."""
    axis = hist.axis.Regular(4, 0.0, 1.0, name="x")
    h = FoldHist(axis, folds=3).fill(key=np.array([1, 1, 1]), x=np.array([0.1, 0.1, 0.6]))
    plain = hist.Hist(axis, storage=hist.storage.Weight()).fill(x=[0.1])
    for combine in (lambda: h + plain, lambda: plain + h, lambda: h.__iadd__(plain), lambda: sum([h, plain])):
        with pytest.raises(ValueError, match="to_hist"):
            combine()
    np.testing.assert_allclose(h.values(), [2 / 3, 0.0, 1 / 3, 0.0])  # unchanged
    np.testing.assert_allclose((h.to_hist() + plain).values(), [5 / 3, 0.0, 1 / 3, 0.0])


def test_reset_clears_the_event_list():
    h = FoldHist(hist.axis.Regular(4, 0.0, 1.0, name="x"), folds=2)
    h.fill(key=np.array([1, 1]), x=np.array([0.1, 0.6]))
    h.reset()
    assert h.values(flow=True).sum() == 0
    h.fill(key=np.array([1, 1]), x=np.array([0.1, 0.1]))  # event 1 again: fine after reset
    np.testing.assert_allclose(h.values(), [1.0, 0.0, 0.0, 0.0])


def test_old_pickles_load_as_the_fold_weighted_histogram():
    """A FoldHist pickled before it was a hist.Hist ({"folds", "_h"}: Σ S and Σ S², no 1/N;
    unpickled as ``FoldHist.__new__(FoldHist)`` and ``__setstate__(state)``)."""
    axis = hist.axis.Regular(4, 0.0, 1.0, name="x")
    raw = hist.Hist(axis, storage=hist.storage.Weight()).fill(x=[0.1, 0.1, 0.6], weight=[4.0, 2.0, 2.0])

    class Old:
        def __reduce__(self):
            return FoldHist.__new__, (FoldHist,), {"folds": 2, "_h": raw}

    h = pickle.loads(pickle.dumps(Old()))
    assert type(h) is FoldHist and h.folds == 2
    np.testing.assert_allclose(h.values(flow=True), raw.values(flow=True) / 2)
    np.testing.assert_allclose(h.variances(flow=True), raw.variances(flow=True) / 4)
    np.testing.assert_allclose(raw.values(), [6.0, 0.0, 2.0, 0.0])  # the pickled object untouched


def test_fill_any_helpers():
    axis = hist.axis.Regular(4, 0.0, 1.0, name="x")
    plain = fold_hist_or_hist(axis, folds=1)
    assert type(plain) is hist.Hist  # not a FoldHist: folds = 1 is a plain weighted histogram
    folded = fold_hist_or_hist(axis, folds=4)
    assert type(folded) is FoldHist and folded.folds == 4
    for h in (plain, folded):
        fill_any(h, key=np.arange(4), weight=np.ones(4), x=np.full(4, 0.3))
    assert plain.values()[1] == 4.0
    assert folded.values()[1] == 4.0 and folded.variances()[1] == 4.0  # four events, one copy each


def test_second_fill_of_an_event_is_refused_and_changes_nothing():
    """Filling the folds of an event in two calls would halve its variance: refused, histogram unchanged."""
    h = FoldHist(hist.axis.Regular(4, 0, 1, name="x"), folds=2)
    h.fill(x=np.array([0.1, 0.2]), key=(np.array([1, 1]), np.array([7, 7])))
    before = (h.values(flow=True).copy(), h.variances(flow=True).copy())
    with pytest.raises(ValueError, match="already filled"):
        h.fill(x=np.array([0.3, 0.9]), key=(np.array([1, 2]), np.array([7, 8])))
    np.testing.assert_array_equal(h.values(flow=True), before[0])
    np.testing.assert_array_equal(h.variances(flow=True), before[1])
    h.fill(x=np.array([0.9]), key=(np.array([2]), np.array([8])))  # another event is fine
    assert h.values(flow=True).sum() == pytest.approx(1.5)


def test_sum_of_foldhists():
    hs = []
    for ev in (1, 2, 3):
        h = FoldHist(hist.axis.Regular(4, 0, 1, name="x"), folds=2)
        h.fill(x=np.array([0.1, 0.6]), key=np.array([ev, ev]), weight=np.array([0.5, 0.5]))  # w_ev = 1
        hs.append(h)
    total = sum(hs)
    assert isinstance(total, FoldHist) and total.folds == 2 and total.values().sum() == pytest.approx(3.0)
    np.testing.assert_array_equal(total.values(), (hs[0] + hs[1] + hs[2]).values())
    assert hs[0].values().sum() == pytest.approx(1.0)  # inputs unchanged
    inplace = hs[0].copy()
    inplace += hs[1]
    assert type(inplace) is FoldHist and inplace.folds == 2
    np.testing.assert_array_equal(inplace.values(), (hs[0] + hs[1]).values())


def _two_events(folds=4):
    """Event 1 (w = 0.5): folds at x 0.1, 0.1, 0.3, 0.9; event 2 (w = 1.5): 0.3, 0.6, 0.6, 0.6; the
    weight of each copy is w / folds."""
    x = np.array([0.1, 0.1, 0.3, 0.9, 0.3, 0.6, 0.6, 0.6])
    key, w = np.repeat([1, 2], folds), np.repeat([0.5, 1.5], folds) / folds
    return x, key, w


def test_histplot_shows_the_fold_weighted_values_and_errors():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    x, key, w = _two_events()
    fh = FoldHist(hist.axis.Regular(4, 0, 1, name="x"), folds=4).fill(x=x, key=key, weight=w)
    # S = Σ of the copies' weights per bin: event 1 (0.25, 0.125, 0, 0.125), event 2 (0, 0.375, 1.125, 0)
    np.testing.assert_allclose(fh.values(), [0.25, 0.5, 1.125, 0.125])
    np.testing.assert_allclose(fh.variances(), [0.0625, 0.015625 + 0.140625, 1.265625, 0.015625])
    fig, ax = plt.subplots()
    try:
        art = mplhep.histplot(fh, ax=ax)[0]
        np.testing.assert_allclose(art.stairs.get_data().values, fh.values())
        segments = art.errorbar.lines[2][0].get_segments()  # one vertical bar per bin: value ∓ error
        lo, hi = np.array([s[0][1] for s in segments]), np.array([s[1][1] for s in segments])
        np.testing.assert_allclose(lo, fh.values() - np.sqrt(fh.variances()))
        np.testing.assert_allclose(hi, fh.values() + np.sqrt(fh.variances()))
    finally:
        plt.close(fig)


def test_rebin_keeps_foldhist_and_adds_bins():
    """``h[::2j]`` is a FoldHist with the folds; values are those of the coarse binning. Variances
    of merged bins add, i.e. folds of one event in two merged bins count as independent there."""
    x, key, w = _two_events()
    fine = FoldHist(hist.axis.Regular(4, 0, 1, name="x"), folds=4).fill(x=x, key=key, weight=w)
    coarse = fine[::2j]
    assert type(coarse) is FoldHist and coarse.folds == 4 and coarse.axes[0].size == 2
    np.testing.assert_allclose(coarse.values(), [0.75, 1.25])
    np.testing.assert_allclose(coarse.variances(), [0.0625 + 0.15625, 1.265625 + 0.015625])
    refill = FoldHist(hist.axis.Regular(2, 0, 1, name="x"), folds=4).fill(x=x, key=key, weight=w)
    np.testing.assert_allclose(coarse.values(), refill.values())
    # event 1 has folds in both fine bins of [0, 0.5): its correlation is lost by the rebin
    assert coarse.variances()[0] < refill.variances()[0]
    assert coarse.variances()[1] == pytest.approx(refill.variances()[1])


def test_project_of_a_2d_foldhist():
    x, key, w = _two_events()
    cat = np.array(["a", "b", "a", "a", "b", "b", "a", "b"])
    fh = FoldHist(hist.axis.StrCategory(["a", "b"], name="c"), hist.axis.Regular(4, 0, 1, name="x"), folds=4)
    fh.fill(c=cat, x=x, key=key, weight=w)
    proj = fh.project("x")
    assert type(proj) is FoldHist and proj.folds == 4 and [ax.name for ax in proj.axes] == ["x"]
    np.testing.assert_allclose(proj.values(flow=True), fh.values(flow=True).sum(axis=0))
    np.testing.assert_allclose(proj.variances(flow=True), fh.variances(flow=True).sum(axis=0))
    one = FoldHist(hist.axis.Regular(4, 0, 1, name="x"), folds=4).fill(x=x, key=key, weight=w)
    np.testing.assert_allclose(proj.values(), one.values())
    by_cat = fh[{"c": "b"}]
    assert type(by_cat) is FoldHist and by_cat.folds == 4
    np.testing.assert_allclose(by_cat.values(), [0.125, 0.375, 0.75, 0.0])


def test_scaling_scales_values_and_variances():
    x, key, w = _two_events()
    fh = FoldHist(hist.axis.Regular(4, 0, 1, name="x"), folds=4).fill(x=x, key=key, weight=w)
    for scaled in (fh * 2, 2 * fh):
        assert type(scaled) is FoldHist and scaled.folds == 4
        np.testing.assert_allclose(scaled.values(flow=True), 2 * fh.values(flow=True))
        np.testing.assert_allclose(scaled.variances(flow=True), 4 * fh.variances(flow=True))
    np.testing.assert_allclose(fh.values(), [0.25, 0.5, 1.125, 0.125])  # unchanged


def test_uproot_writes_the_fold_weighted_histogram(tmp_path):
    import uproot

    x, key, w = _two_events()
    fh = FoldHist(hist.axis.Regular(4, 0, 1, name="x"), folds=4).fill(x=x, key=key, weight=w)
    with uproot.recreate(tmp_path / "h.root") as f:
        f["h"] = fh
    with uproot.open(tmp_path / "h.root") as f:
        values, edges = f["h"].to_numpy()
        errors = f["h"].errors()
    np.testing.assert_allclose(values, fh.values())
    np.testing.assert_allclose(edges, fh.axes[0].edges)
    np.testing.assert_allclose(errors, np.sqrt(fh.variances()))
    assert not np.allclose(errors**2, values)  # not Poisson errors of the values


def test_fold_filler_restores_event_major_order():
    """Entries collected from fold batches fill exactly as one batch holding every fold."""
    from flashsim_coffea.hists import FoldFiller

    rng = np.random.default_rng(3)
    n, folds = 50, 4
    entry, fold = np.repeat(np.arange(n), folds), np.tile(np.arange(folds), n)
    x, w = rng.uniform(0, 1, n * folds), rng.normal(1, 0.3, n * folds)
    key = (np.ones(n * folds, dtype=np.int64), 100 + entry)
    one = FoldHist(hist.axis.Regular(5, 0, 1, name="x"), folds=folds).fill(x=x, key=key, weight=w)
    filler = FoldFiller(folds)
    for lo, hi in ((2, 4), (0, 2)):  # batches in any order
        m = (fold >= lo) & (fold < hi)
        filler.add("SR", entry[m], fold[m], tuple(k[m] for k in key), w[m], x=x[m])
    h = FoldHist(hist.axis.Regular(5, 0, 1, name="x"), folds=folds)
    filler.fill("SR", {"x": h})
    np.testing.assert_array_equal(h.values(flow=True), one.values(flow=True))
    np.testing.assert_array_equal(h.variances(flow=True), one.variances(flow=True))
