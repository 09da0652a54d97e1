"""Fidelity metrics: 1-D Wasserstein distances with a noise floor, classifier two-sample test.

Per target, with F_k (k = 1..K) FlashSim draws (upsampling folds), R the reference and R′_k
independently seeded reference draws, all on the same Gen objects:

    w1       = (1/K) Σ_k W1(F_k, R),   W1(F, R) = ∫ |CDF_F(x) − CDF_R(x)| dx
    w1_floor = (1/K) Σ_k W1(R′_k, R)   (what statistics and the reference's own randomness give)
    ratio    = w1 / w1_floor           (≈ 1 for a perfect model; > 1 measures mis-modelling)

K = 1 is the plain single-draw definition. A single W1(R′, R) is a noisy estimate of the floor —
for a boolean target it is |p̂′ − p̂|, half-normal, with its mode at 0, so one draw in ten falls
below 1/8 of its mean and blows the ratio up — averaging K draws on both sides keeps E[ratio] ≈ 1
for a perfect model and cuts the relative spread of the floor by √K.

C2ST: a gradient-boosted tree classifier (scikit-learn ``HistGradientBoostingClassifier``)
is trained to separate F from R on the targets + conditioning of half of the objects; its
ROC AUC on the other half is 0.5 when the two are indistinguishable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import wasserstein_distance

__all__ = ["w1_draws", "w1_table", "c2st_auc"]


def _draws(x: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    return [x] if isinstance(x, np.ndarray) else list(x)


def w1_draws(names: list[str], draws: np.ndarray | Sequence[np.ndarray], ref: np.ndarray) -> dict[str, list[float]]:
    """{name: [W1(draw_k[:, j], ref[:, j]) for each draw k]} for the columns of (N, T) matrices."""
    draws = _draws(draws)
    return {name: [float(wasserstein_distance(d[:, j], ref[:, j])) for d in draws] for j, name in enumerate(names)}


def w1_table(names: list[str], flash: np.ndarray | Sequence[np.ndarray], ref: np.ndarray,
             ref2: np.ndarray | Sequence[np.ndarray]) -> dict[str, dict[str, float]]:
    """{name: {"w1", "w1_floor", "ratio"}} for the columns of (N, T) matrices; ``flash`` and
    ``ref2`` are one matrix or a list of K draws each (averaged: see the module docstring)."""
    w1s, floors = w1_draws(names, flash, ref), w1_draws(names, ref2, ref)
    out = {}
    for name in names:
        w1, floor = float(np.mean(w1s[name])), float(np.mean(floors[name]))
        ratio = w1 / floor if floor > 0 else (1.0 if w1 == 0 else float("inf"))
        out[name] = {"w1": w1, "w1_floor": floor, "ratio": ratio}
    return out


def c2st_auc(a: np.ndarray, b: np.ndarray, seed: int = 0, max_per_class: int = 200_000, max_iter: int = 200) -> float:
    """ROC AUC of a classifier separating samples ``a`` from ``b`` (held-out half)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n = min(len(a), len(b), max_per_class)
    a = a[rng.permutation(len(a))[:n]]
    b = b[rng.permutation(len(b))[:n]]
    x = np.concatenate([a, b]).astype(np.float64)
    y = np.concatenate([np.zeros(n), np.ones(n)])
    perm = rng.permutation(2 * n)
    x, y = x[perm], y[perm]
    half = n
    clf = HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=0.1, early_stopping=True,
                                         validation_fraction=0.2, random_state=seed)
    from threadpoolctl import threadpool_limits

    # one OpenMP thread: on a shared, busy CPU spinning OpenMP workers slow the fit down ~10x
    with threadpool_limits(limits=1):
        clf.fit(x[:half], y[:half])
        return float(roc_auc_score(y[half:], clf.predict_proba(x[half:])[:, 1]))
