"""Invertible element-wise transforms of target and conditioning variables.

Every transform is a frozen dataclass with ``forward`` and an exact ``inverse``
(``inverse(forward(x)) == x`` to float64 rounding on the transform's domain), and serialises
to JSON as ``{"type": <class name>, **fields}`` so that checkpoint cards can rebuild it.

    Identity:            y = x
    Arctan(scale, shift): y = arctan(scale · (x − shift)),   x = tan(y) / scale + shift
    Log(eps):            y = log(x + eps),                  x = exp(y) − eps
    Log1p:               y = log(1 + x),                    x = exp(y) − 1
    Asinh(scale, shift): y = asinh(scale · (x − shift)),    x = sinh(y) / scale + shift
    Logit(lo, hi, eps):  y = log((x − lo + e) / (hi − x + e)),  x = lo − e + σ(y)·(w + 2e)
                         (w = hi − lo, e = eps·w, σ the logistic function)

``Arctan.inverse`` clamps y to (−π/2, π/2) first, so a sample beyond the image never gives
±inf; ``Log.inverse`` cannot overflow for |y| < 700 and callers clip to bounds afterwards;
``Logit.inverse`` maps every real y into (lo − e, hi + e).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Transform", "Identity", "Arctan", "Asinh", "Log", "Log1p", "Logit", "transform_from_dict"]

_HALF_PI = np.pi / 2


@dataclass(frozen=True)
class Transform:
    """Base class: identity. Subclasses override ``forward`` and ``inverse``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float64)

    def valid(self, y: np.ndarray) -> np.ndarray:
        """Whether y lies in the image of ``forward`` (samples outside it are redrawn)."""
        return np.ones(np.shape(y), dtype=bool)

    def to_dict(self) -> dict:
        return {"type": type(self).__name__, **asdict(self)}


@dataclass(frozen=True)
class Identity(Transform):
    """y = x."""


@dataclass(frozen=True)
class Arctan(Transform):
    """y = arctan(scale · (x − shift)); compresses long tails into (−π/2, π/2)."""

    scale: float = 1.0
    shift: float = 0.0

    def forward(self, x):
        return np.arctan(self.scale * (np.asarray(x, dtype=np.float64) - self.shift))

    def inverse(self, y):
        y = np.clip(np.asarray(y, dtype=np.float64), -_HALF_PI + 1e-7, _HALF_PI - 1e-7)
        return np.tan(y) / self.scale + self.shift

    def valid(self, y):
        return np.abs(y) < _HALF_PI - 1e-7


@dataclass(frozen=True)
class Asinh(Transform):
    """y = asinh(scale · (x − shift)): linear for |x − shift| ≲ 1/scale, logarithmic beyond
    (y ≈ ±log(2·scale·|x − shift|)). For a narrow core with long two-sided tails (the muon pT
    response: core 1–2 %, tails to ±50 %) a large ``scale`` pulls the tails in so that the
    *standardised* values fit inside the flow's spline range (``tail_bound``); unlike ``Arctan``
    it has no asymptote, so a small margin beyond the training range stays a small range of x."""

    scale: float = 1.0
    shift: float = 0.0

    def forward(self, x):
        return np.arcsinh(self.scale * (np.asarray(x, dtype=np.float64) - self.shift))

    def inverse(self, y):
        return np.sinh(np.clip(np.asarray(y, dtype=np.float64), -700.0, 700.0)) / self.scale + self.shift


@dataclass(frozen=True)
class Log(Transform):
    """y = log(x + eps) for x > −eps (positive, right-skewed variables)."""

    eps: float = 1e-3

    def forward(self, x):
        return np.log(np.asarray(x, dtype=np.float64) + self.eps)

    def inverse(self, y):
        return np.exp(np.clip(np.asarray(y, dtype=np.float64), -700.0, 700.0)) - self.eps


@dataclass(frozen=True)
class Log1p(Transform):
    """y = log(1 + x) for x > −1."""

    def forward(self, x):
        return np.log1p(np.asarray(x, dtype=np.float64))

    def inverse(self, y):
        return np.expm1(np.clip(np.asarray(y, dtype=np.float64), -700.0, 700.0))


@dataclass(frozen=True)
class Logit(Transform):
    """y = log((x − lo + e) / (hi − x + e)), e = eps·(hi − lo): a score in [lo, hi] whose
    peaks sit at its ends (a classifier output σ(latent)) becomes the latent, unbounded and
    smooth — a b tagger σ(N(3.2, 1.4)) turns into a Gaussian. ``eps`` keeps the ends finite
    (x = lo ↔ y ≈ log eps) and spaces the stored values next to them (10-bit precision:
    1 − 2⁻¹¹·k) by ≲ 0.4 in y for eps = 1e-3."""

    lo: float = 0.0
    hi: float = 1.0
    eps: float = 1e-3

    def forward(self, x):
        x = np.asarray(x, dtype=np.float64)
        e = self.eps * (self.hi - self.lo)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(x - self.lo + e) - np.log(self.hi - x + e)

    def inverse(self, y):
        e = self.eps * (self.hi - self.lo)
        s = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(y, dtype=np.float64)))  # σ(y) without overflow
        return self.lo - e + s * (self.hi - self.lo + 2.0 * e)


_TYPES: dict[str, type[Transform]] = {c.__name__: c for c in (Transform, Identity, Arctan, Asinh, Log, Log1p, Logit)}


def register_transform(cls: type[Transform]) -> type[Transform]:
    """Class decorator making a user transform loadable from checkpoint cards."""
    _TYPES[cls.__name__] = cls
    return cls


def transform_from_dict(d: dict) -> Transform:
    d = dict(d)
    name = d.pop("type")
    if name not in _TYPES:
        from flashsim_coffea.errors import UserError

        raise UserError(f"unknown transform type {name!r} in a spec/card; known: {', '.join(_TYPES)} "
                        "(import the module that defines it, decorated with @register_transform, before loading)")
    cls = _TYPES[name]
    return cls(**d)
