"""Counter-based random numbers keyed on object identity.

Every random draw in flashsim-coffea (the reference detector response and the FlashSim base
noise) is a pure function of ``(seed, stream, key_1, ..., key_k)`` where the keys identify the
object, e.g. ``(run, luminosityBlock, event, object index, fold)``. The same object therefore
gets the same numbers whatever the batch size, the chunking or the executor: there is no
generator state to carry between chunks.

The hash is SplitMix64's finaliser (Steele, Lea & Flood 2014), applied as a sponge:

    h_0 = mix(seed ⊕ φ·(stream + 1)),   h_{j+1} = mix(h_j ⊕ (key_j + φ·(j + 1)))

with φ = 0x9E3779B97F4A7C15 (golden ratio · 2^64) and all arithmetic modulo 2^64. It is
written in numpy (vectorized over arrays of keys) rather than taken from
``numpy.random.Philox`` because numpy's bit generators are *sequential* streams: keying them
per object would need one generator object per event, i.e. a Python loop over events.

Uniforms use the top 53 bits: ``u = (h >> 11 + 0.5) · 2^-53`` ∈ (0, 1) (never 0 or 1), and
Gaussians are ``Φ^{-1}(u)`` (``scipy.special.ndtri``), which keeps one uniform per normal.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy.special import ndtri

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))

from .errors import UserError

__all__ = ["SEED_MAX", "check_seed", "stream_id", "hash_keys", "uniform", "normal", "poisson"]

#: seeds are 1..SEED_MAX (Pythia's range, so one seed can drive the generator and the response)
SEED_MAX = 900_000_000


def check_seed(seed: int) -> None:
    """A UserError unless 1 ≤ ``seed`` ≤ :data:`SEED_MAX`."""
    if not 1 <= seed <= SEED_MAX:
        raise UserError(f"--seed {seed} is outside Pythia's range 1..{SEED_MAX}")


def stream_id(name: str) -> int:
    """Stable 32-bit id of a named random stream (CRC32 of the name)."""
    return zlib.crc32(name.encode())


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: z ^= z>>30; z *= M1; z ^= z>>27; z *= M2; z ^= z>>31 (mod 2^64)."""
    z = z ^ (z >> _S30)
    z = z * _M1
    z = z ^ (z >> _S27)
    z = z * _M2
    return z ^ (z >> _S31)


def _as_u64(key) -> np.ndarray:
    a = np.asarray(key)
    if a.dtype.kind == "f":
        raise TypeError(f"random keys must be integers, got dtype {a.dtype}")
    # negative ints (e.g. -1 indices) wrap modulo 2^64, which is still a unique key
    return a.astype(np.int64, copy=False).view(np.uint64) if a.dtype.kind == "i" else a.astype(np.uint64)


def hash_keys(seed: int, stream: int | str, *keys) -> np.ndarray:
    """64-bit hash of (seed, stream, keys...), broadcasting the key arrays against each other."""
    if isinstance(stream, str):
        stream = stream_id(stream)
    with np.errstate(over="ignore"):
        h = _mix(np.uint64(seed % 2**64) ^ (_GOLDEN * np.uint64(stream + 1)))
        h = np.asarray(h, dtype=np.uint64)
        for j, k in enumerate(keys):
            h = _mix(h ^ (_as_u64(k) + _GOLDEN * np.uint64(j + 1)))
    return np.asarray(h, dtype=np.uint64)


def uniform(seed: int, stream: int | str, *keys) -> np.ndarray:
    """Uniform(0, 1) floats (float64, open interval) keyed on (seed, stream, keys...)."""
    h = hash_keys(seed, stream, *keys)
    return ((h >> _S11).astype(np.float64) + 0.5) * (2.0**-53)


def normal(seed: int, stream: int | str, *keys) -> np.ndarray:
    """Standard normal floats, z = Φ^{-1}(u) with u = uniform(seed, stream, keys...)."""
    return ndtri(uniform(seed, stream, *keys))


def poisson(mean: np.ndarray, seed: int, stream: int | str, *keys) -> np.ndarray:
    """Poisson(mean) integers by inversion of the CDF at u = uniform(seed, stream, keys...).

    Exact sequential inversion for mean ≤ 50: k is the smallest integer with
    F(k) = Σ_{j≤k} e^{-μ} μ^j / j! ≥ u, accumulated with p_k = p_{k-1}·μ/k on the still-active
    entries only (``scipy.stats.poisson.ppf`` gives the same numbers but is ~20× slower).
    Above μ = 50, the normal approximation round(μ + √μ·Φ^{-1}(u)) (CDF error < 1e-3 there).
    """
    u = uniform(seed, stream, *keys)
    shape = u.shape
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), shape).ravel()
    u = u.ravel()
    out = np.zeros(u.shape, dtype=np.int64)
    big = mean > 50.0
    if np.any(big):
        m = mean[big]
        out[big] = np.maximum(np.rint(m + np.sqrt(m) * ndtri(u[big])), 0).astype(np.int64)
    idx = np.flatnonzero(~big)
    mu = mean[idx]
    pmf = np.exp(-mu)
    cdf = pmf.copy()
    uu = u[idx]
    k = 0
    while idx.size:
        active = uu > cdf * (1.0 + 1e-12)
        out[idx[~active]] = k
        idx, mu, pmf, cdf, uu = idx[active], mu[active], pmf[active], cdf[active], uu[active]
        k += 1
        pmf = pmf * mu / k
        cdf = cdf + pmf
        if k > 400:  # unreachable for mean <= 50 except for u within 1e-12 of 1
            out[idx] = k
            break
    return out.reshape(shape)
