"""Per-event ``Pileup_*`` branches with a 2018-like profile.

* ``nTrueInt`` (the Poisson mean of in-time interactions) ~ Gamma(k = 7.1, θ = 4.5), mean 32,
  RMS 12 — close to the 2018 MC profile — floored to integers as in 2018 MC.
* ``nPU`` ~ Poisson(nTrueInt); out-of-time sums over the early/late bunch crossings
  ``sumEOOT`` ~ Poisson(12·nTrueInt), ``sumLOOT`` ~ Poisson(3·nTrueInt) (ratios read off real
  2018 NanoAOD).
* ``gpudensity`` (generated PU vertices per mm around the hard vertex) = 0.0095·nPU·G/4 with
  G ~ Gamma(4) (mean 0.0095·nPU), and ``pudensity`` (its reconstructed counterpart, an
  integer count in NanoAOD) ~ Poisson(3·gpudensity).

These are approximations with the right scale and correlations (every Pileup_* grows with
nTrueInt), not CMS's generator-level pile-up mixing.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import gamma

from .. import noise

PROFILE_SHAPE, PROFILE_SCALE = 7.1, 4.5


def pileup_branches(seed: int, run: np.ndarray, lumi: np.ndarray, event: np.ndarray) -> dict[str, np.ndarray]:
    keys = (run, lumi, event)
    n_true = np.floor(gamma.ppf(noise.uniform(seed, "pileup.nTrueInt", *keys), PROFILE_SHAPE, scale=PROFILE_SCALE))
    n_true = np.clip(n_true, 0, 99)
    n_pu = noise.poisson(n_true, seed, "pileup.nPU", *keys)
    g = gamma.ppf(noise.uniform(seed, "pileup.gpudensity", *keys), 4.0) / 4.0
    gpud = 0.0095 * n_pu * g
    return {
        "Pileup_nTrueInt": n_true.astype(np.float32),
        "Pileup_nPU": n_pu.astype(np.int32),
        "Pileup_pudensity": noise.poisson(3.0 * gpud, seed, "pileup.pudensity", *keys).astype(np.float32),
        "Pileup_gpudensity": gpud.astype(np.float32),
        "Pileup_sumEOOT": noise.poisson(12.0 * n_true, seed, "pileup.sumEOOT", *keys).astype(np.int32),
        "Pileup_sumLOOT": noise.poisson(3.0 * n_true, seed, "pileup.sumLOOT", *keys).astype(np.int32),
    }
