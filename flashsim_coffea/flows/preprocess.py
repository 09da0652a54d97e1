"""Preprocessing with exact inverses: transforms, dequantization, spikes, standardisation.

Targets, column by column (``e`` = encoded value before standardisation, u ~ U(0, 1)):

    ordinal  e = k + u − ½   with k the index of x in the admissible values
             decode: x = values[clip(rint(e), 0, K−1)]                  (snap to the set)
             quantile dequantization: e = Φ⁻¹(F_k + u (F_{k+1} − F_k)), F the cumulative
             training fractions of the values (fitted, ``ordinal_cdf``);
             decode: x = values[k] with F_k ≤ Φ(e) < F_{k+1}
    integer  e = f(n + u − ½), n = x (or x / step on a lattice; f the target's transform)
             decode: n = clip(rint(f⁻¹(e)), lo, hi), x = n (or n · step)  (no bridging)
    real     e = f(x); an exact spike value s → e = lo_s + u (hi_s − lo_s)
             decode: x = clip(f⁻¹(e), lo, hi), and x = s where e < cut_s

then y = (e − μ) / σ with μ, σ fitted on the training set. Conditioning features are
transformed by their feature transform and standardised the same way; at sampling time
non-finite conditioning rows are flagged and set to the training mean, and values outside
the training range are clamped into it (both counted). Sampled rows outside the training
support of the targets (widened by 2 %) are redrawn by the sampler. For every x in the admissible
domain and every u in (0, 1), decode(encode(x, u)) == x (to float64 rounding for reals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

from flashsim_coffea.objects.spec import ObjectSpec
from flashsim_coffea.objects.targets import Target

__all__ = ["Preprocessor", "encode_target", "decode_target", "needs_noise"]


def needs_noise(t: Target) -> bool:
    """Whether encoding the target uses uniform noise (dequantization or a spike band)."""
    return t.kind != "real" or t.spike is not None


#: quantile dequantization keeps Φ⁻¹ finite: cumulative fractions are clipped into [ε, 1 − ε]
CDF_EPS = 1e-7


def ordinal_cdf(t: Target, x: np.ndarray) -> list[float]:
    """Cumulative fractions F_0 = 0, F_1, …, F_K = 1 of the admissible values in ``x``."""
    k = np.searchsorted(np.asarray(t.values, dtype=np.float64), np.asarray(x, dtype=np.float64))
    counts = np.bincount(k, minlength=len(t.values))[: len(t.values)].astype(np.float64)
    return [0.0] + list(np.cumsum(counts) / max(counts.sum(), 1.0))


def _cdf(t: Target, cdf) -> np.ndarray:
    """The fitted cumulative fractions, or equal fractions when none were fitted (yet)."""
    f = np.asarray(cdf if cdf is not None else np.linspace(0.0, 1.0, len(t.values) + 1), dtype=np.float64)
    return np.clip(f, CDF_EPS, 1.0 - CDF_EPS)


def encode_target(t: Target, x: np.ndarray, u: np.ndarray | None, cdf=None) -> np.ndarray:
    """Encoded (not yet standardised) target; ``cdf``: fitted fractions for quantile ordinals."""
    x = np.asarray(x, dtype=np.float64)
    if needs_noise(t) and u is None:
        u = np.full(x.shape, 0.5)
    if t.kind == "ordinal":
        k = np.searchsorted(np.asarray(t.values, dtype=np.float64), x)
        if t.dequantize == "quantile":
            f = _cdf(t, cdf)
            return ndtri(f[k] + u * (f[k + 1] - f[k]))
        return k + u - 0.5
    if t.kind == "integer":
        return t.transform.forward(np.rint(t.lattice_index(x)) + u - 0.5)
    if t.spike is None:
        return t.transform.forward(x)
    s = t.spike
    is_spike = s.matches(x, t.bounds[0])
    e = t.transform.forward(np.where(is_spike, np.clip(x, *t.bounds), x))
    return np.where(is_spike, s.lo + u * (s.hi - s.lo), e)


def decode_target(t: Target, e: np.ndarray, cdf=None) -> np.ndarray:
    e = np.asarray(e, dtype=np.float64)
    if t.kind == "ordinal":
        values = np.asarray(t.values, dtype=np.float64)
        if t.dequantize == "quantile":
            return values[np.searchsorted(_cdf(t, cdf)[1:-1], ndtr(e), side="right")]
        return values[np.clip(np.rint(e), 0, len(values) - 1).astype(np.int64)]
    lo, hi = t.bounds
    if t.kind == "integer":
        n = np.clip(np.rint(t.transform.inverse(e)), t.lattice_index(lo), t.lattice_index(hi))
        return n * t.step if t.step > 0 else n
    x = np.clip(t.transform.inverse(e), lo, hi)
    if t.spike is not None:
        x = np.where(e < t.spike.cut, t.spike.value, x)
    return x


#: support margin of sampling: standardised real targets may exceed the training range by this
#: fraction of its width on each side (:meth:`Preprocessor.in_support`)
SUPPORT_MARGIN = 0.02


@dataclass
class Preprocessor:
    """Fitted standardisation of one spec (see module docstring for the formulas)."""

    spec: ObjectSpec
    cond_mean: np.ndarray
    cond_std: np.ndarray
    cond_min: np.ndarray
    cond_max: np.ndarray
    targ_mean: np.ndarray
    targ_std: np.ndarray
    targ_min: np.ndarray | None = None  # support of the standardised training targets
    targ_max: np.ndarray | None = None
    ordinal_cdf: dict[str, list[float]] | None = None  # quantile-dequantized ordinals: fitted fractions

    # -- fitting --------------------------------------------------------------------------
    @classmethod
    def fit(cls, spec: ObjectSpec, cond: np.ndarray, targets: np.ndarray, u: np.ndarray | None = None) -> "Preprocessor":
        ec = cls._transform_cond(spec, cond)
        cdfs = cls.fit_ordinal_cdf(spec, targets)
        et = cls._encode_targets_raw(spec, targets, u, cdfs)
        cstd = ec.std(axis=0)
        tstd = np.where(et.std(axis=0) > 1e-12, et.std(axis=0), 1.0)
        tmean = et.mean(axis=0)
        return cls(
            spec,
            ec.mean(axis=0),
            np.where(cstd > 1e-12, cstd, 1.0),
            ec.min(axis=0),
            ec.max(axis=0),
            tmean,
            tstd,
            (et.min(axis=0) - tmean) / tstd,
            (et.max(axis=0) - tmean) / tstd,
            cdfs or None,
        )

    @staticmethod
    def fit_ordinal_cdf(spec: ObjectSpec, targets: np.ndarray) -> dict[str, list[float]]:
        """Cumulative value fractions of every quantile-dequantized ordinal target."""
        targets = np.asarray(targets, dtype=np.float64)
        return {t.name: ordinal_cdf(t, targets[:, j]) for j, t in enumerate(spec.targets) if t.dequantize == "quantile"}

    @staticmethod
    def _transform_cond(spec: ObjectSpec, cond: np.ndarray) -> np.ndarray:
        """(N, C) float64 transformed conditioning, in column (Fortran) order: one contiguous
        column per feature (see :meth:`ObjectSpec.conditioning_matrix`)."""
        cond = np.asarray(cond, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.stack([f.transform.forward(cond[:, j]) for j, f in enumerate(spec.conditioning)], axis=0).T

    @staticmethod
    def _encode_targets_raw(spec: ObjectSpec, targets: np.ndarray, u: np.ndarray | None, cdfs=None) -> np.ndarray:
        targets = np.asarray(targets, dtype=np.float64)
        cdfs = cdfs or {}
        cols = [encode_target(t, targets[:, j], None if u is None else u[:, j], cdfs.get(t.name))
                for j, t in enumerate(spec.targets)]
        return np.stack(cols, axis=1)

    # -- conditioning ---------------------------------------------------------------------
    def encode_cond(self, cond: np.ndarray) -> tuple[np.ndarray, dict]:
        """Standardised float32 conditioning (N, C), in column order like its input (use
        ``np.ascontiguousarray`` for row-major), and counts of non-finite / out-of-range rows."""
        e = self._transform_cond(self.spec, cond)
        finite = np.isfinite(e)
        bad_rows = ~finite.all(axis=1)
        e = np.where(finite, e, self.cond_mean)
        out_of_range = (e < self.cond_min) | (e > self.cond_max)
        e = np.clip(e, self.cond_min, self.cond_max)
        y = (e - self.cond_mean) / self.cond_std
        info = {
            "nonfinite_cond": bad_rows,
            "n_nonfinite_cond": int(bad_rows.sum()),
            "n_out_of_range_cond": int(out_of_range.any(axis=1).sum()),
        }
        return y.astype(np.float32), info

    # -- targets --------------------------------------------------------------------------
    def encode_targets(self, targets: np.ndarray, u: np.ndarray | None = None) -> np.ndarray:
        """Standardised float64 targets; ``u`` (N, T) uniforms for dequantization/spikes."""
        return (self._encode_targets_raw(self.spec, targets, u, self.ordinal_cdf) - self.targ_mean) / self.targ_std

    def max_value(self, name: str, margin: float = SUPPORT_MARGIN) -> float:
        """Largest raw value of target ``name`` that sampling can return: for a real target the
        upper edge of the support :meth:`in_support` accepts, decoded (every transform is
        increasing) and clipped to the target's bounds (its spike value included); for integer
        and ordinal targets their largest value. An exact bound — e.g. reco pT ≤ ptRatio_max ·
        Gen pT — that lets an analysis skip objects that cannot pass its cuts."""
        j = self.spec.target_names.index(name)
        t = self.spec.targets[j]
        if t.kind == "ordinal":
            return float(max(t.values))
        lo, hi = t.bounds
        if self.targ_max is None or t.kind != "real":
            return float(hi)
        width = self.targ_max[j] - self.targ_min[j]
        e = (self.targ_max[j] + margin * width) * self.targ_std[j] + self.targ_mean[j]
        inside = lambda v: bool(t.transform.valid(np.array([v]))[0])  # noqa: E731
        if not inside(e):  # the edge lies beyond the transform's image (arctan: π/2): bisect to it
            a, b = float(self.targ_mean[j]), e
            for _ in range(200):
                mid = 0.5 * (a + b)
                a, b = (mid, b) if inside(mid) else (a, mid)
            e = a
        x = min(float(t.transform.inverse(np.array([e]))[0]), float(hi))
        return max(x, float(t.spike.value)) if t.spike is not None else x

    def in_support(self, y: np.ndarray, margin: float = SUPPORT_MARGIN) -> np.ndarray:
        """Rows whose standardised *real* targets lie within the training support widened by
        ``margin`` × its width on each side, and inside their transform's image (arctan:
        |e| < π/2); the sampler redraws the others.

        Integer/ordinal targets are snapped and a spike's band decodes to one value, so they
        cannot produce extreme values: those columns (and the lower side of spike columns)
        are not restricted.
        """
        if self.targ_min is None or self.targ_max is None:
            return np.ones(len(y), dtype=bool)
        width = self.targ_max - self.targ_min
        lo, hi = self.targ_min - margin * width, self.targ_max + margin * width
        real = np.array([t.kind == "real" for t in self.spec.targets])
        spike = np.array([t.spike is not None for t in self.spec.targets])
        lo = np.where(real & ~spike, lo, -np.inf)
        hi = np.where(real, hi, np.inf)
        ok = ((y >= lo) & (y <= hi)).all(axis=1)
        e = y * self.targ_std + self.targ_mean
        for j, t in enumerate(self.spec.targets):
            if t.kind == "real":
                valid = t.transform.valid(e[:, j])
                if t.spike is not None:
                    valid |= e[:, j] < t.spike.cut  # decodes to the spike value
                ok &= valid
        return ok

    def decode_targets(self, y: np.ndarray) -> np.ndarray:
        """Raw targets (N, T) float64 from standardised values: inverse, snapping, bounds."""
        # (T, N) with contiguous rows, one per target; the result is (N, T) in column order
        e = np.ascontiguousarray(np.asarray(y).T, dtype=np.float64) * self.targ_std[:, None] + self.targ_mean[:, None]
        cdfs = self.ordinal_cdf or {}
        return np.stack([decode_target(t, e[j], cdfs.get(t.name)) for j, t in enumerate(self.spec.targets)], axis=0).T

    # -- serialisation --------------------------------------------------------------------
    _ARRAYS = ("cond_mean", "cond_std", "cond_min", "cond_max", "targ_mean", "targ_std", "targ_min", "targ_max")

    def to_dict(self) -> dict:
        d = {k: [float(v) for v in getattr(self, k)] for k in self._ARRAYS if getattr(self, k) is not None}
        if self.ordinal_cdf:
            d["ordinal_cdf"] = {k: [float(x) for x in v] for k, v in self.ordinal_cdf.items()}
        return d

    @classmethod
    def from_dict(cls, spec: ObjectSpec, d: dict) -> "Preprocessor":
        pre = cls(spec, *(np.asarray(d[k], dtype=np.float64) if k in d else None for k in cls._ARRAYS))
        pre.ordinal_cdf = d.get("ordinal_cdf") or None
        missing = [t.name for t in spec.targets if t.dequantize == "quantile" and t.name not in (pre.ordinal_cdf or {})]
        if missing:
            from flashsim_coffea.errors import UserError

            raise UserError(f"preprocessing of spec {spec.name!r} lacks the fitted value fractions of {', '.join(missing)}")
        return pre
