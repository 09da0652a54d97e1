"""FoldHist against a direct evaluation of the upsampling formulas (DESIGN.md)."""

from __future__ import annotations

import pickle

import hist
import numpy as np
import pytest
from coffea.processor import accumulate

from flashsim_coffea.hists import FoldHist, fill_any, fold_hist_or_hist


def _folded_sample(rng: np.random.Generator, n_events: int, folds: int, integer_weights: bool):
    """n_events Gen events, each repeated ``folds`` times, with per-fold values near a per-event mean."""
    event = rng.choice(10**9, size=n_events, replace=False)
    run = rng.integers(1, 3, size=n_events)
    w_ev = rng.integers(-2, 4, size=n_events).astype(float) if integer_weights else rng.normal(1, 0.5, n_events)
    mean = rng.uniform(-0.2, 1.2, size=n_events)
    cat = rng.choice(np.array(["a", "b"]), size=n_events)
    rep = lambda a: np.repeat(a, folds)  # noqa: E731
    x = rep(mean) + rng.normal(0, 0.1, n_events * folds)
    x[rng.random(x.size) < 0.01] = np.nan
    perm = rng.permutation(x.size)  # folds of an event need not be adjacent
    return {k: v[perm] for k, v in dict(run=rep(run), event=rep(event), w=rep(w_ev), x=x, cat=rep(cat)).items()}


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
        w = sample["w"][sel][0]
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
    for c in ("a", "b"):
        exp_val = sum(_direct(ch, axis, folds)[0][c] for ch in chunks)
        exp_var = sum(_direct(ch, axis, folds)[1][c] for ch in chunks)
        np.testing.assert_allclose(total.to_hist()[{"cat": c}].values(flow=True), exp_val, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(total.to_hist()[{"cat": c}].variances(flow=True), exp_var, rtol=1e-12, atol=1e-12)
    # values()/variances() agree with to_hist()
    np.testing.assert_array_equal(total.values(), total.to_hist().values())
    np.testing.assert_array_equal(total.variances(), total.to_hist().variances())


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


def test_chunking_and_order_independent_exactly():
    """Integer weights: the stored sums are exact, so any chunking/order gives identical bins."""
    rng = np.random.default_rng(3)
    s = _folded_sample(rng, 400, 5, integer_weights=True)
    axis = hist.axis.Regular(8, 0.0, 1.0, name="x")
    order = np.argsort(s["event"], kind="stable")
    s = {k: v[order] for k, v in s.items()}  # keep folds of one event together for splitting
    bounds = np.flatnonzero(np.diff(s["event"])) + 1

    def run(splits):
        parts = []
        for sl in np.split(np.arange(s["x"].size), splits):
            h = FoldHist(axis, folds=5)
            h.fill(key=s["event"][sl], weight=s["w"][sl], x=s["x"][sl])
            parts.append(h)
        return accumulate(parts[::-1] if len(parts) % 2 else parts)

    a, b = run(bounds[::7]), run(bounds[::50])
    assert a == b
    np.testing.assert_array_equal(a.values(flow=True), b.values(flow=True))


def test_pickle_add_identity_and_errors():
    axis = hist.axis.Regular(4, 0.0, 1.0, name="x")
    h = FoldHist(axis, folds=2)
    h.fill(key=np.array([1, 1, 2, 2]), weight=np.array([1.0, 1.0, 2.0, 2.0]), x=np.array([0.1, 0.1, 0.1, 0.6]))
    # event 1: both folds in bin 0 -> S=2 ; event 2: one fold per bin -> S=2 each
    np.testing.assert_allclose(h.values(), [2.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(h.variances(), [1.0 + 1.0, 0.0, 1.0, 0.0])
    h2 = pickle.loads(pickle.dumps(h))
    assert h2 == h
    s = h + h2
    np.testing.assert_allclose(s.values(), 2 * h.values())
    np.testing.assert_allclose(h.values(), h2.values())  # inputs not mutated by +
    assert (h + h.identity()) == h
    with pytest.raises(ValueError, match="folds"):
        h + FoldHist(axis, folds=3)
    with pytest.raises(ValueError, match="positive"):
        FoldHist(axis, folds=0)
    with pytest.raises(ValueError, match="axes"):
        h.fill(key=np.array([1]), y=np.array([0.2]))
    with pytest.raises(TypeError, match="integers"):
        h.fill(key=np.array([1.5]), x=np.array([0.2]))
    with pytest.raises(ValueError, match="needs key"):
        h.fill(key=None, x=np.array([0.2]))
    h.fill(key=np.array([], dtype=int), x=np.array([]))  # empty fill is a no-op


def test_fill_any_helpers():
    axis = hist.axis.Regular(4, 0.0, 1.0, name="x")
    plain = fold_hist_or_hist(axis, folds=1)
    assert isinstance(plain, hist.Hist)
    folded = fold_hist_or_hist(axis, folds=4)
    assert isinstance(folded, FoldHist)
    for h in (plain, folded):
        fill_any(h, key=np.arange(4), weight=np.ones(4), x=np.full(4, 0.3))
    assert plain.values()[1] == 4.0
    assert folded.values()[1] == 1.0


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
        h.fill(x=np.array([0.1, 0.6]), key=np.array([ev, ev]), weight=np.array([1.0, 1.0]))
        hs.append(h)
    total = sum(hs)
    assert isinstance(total, FoldHist) and total.values().sum() == pytest.approx(3.0)
    np.testing.assert_array_equal(total.values(), (hs[0] + hs[1] + hs[2]).values())
    assert hs[0].values().sum() == pytest.approx(1.0)  # inputs unchanged
    with pytest.raises(TypeError):
        hs[0] + 1


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
