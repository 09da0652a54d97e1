"""Invertible element-wise transforms of target and conditioning variables.

Every transform is a frozen dataclass with ``forward`` and an exact ``inverse``
(``inverse(forward(x)) == x`` to float64 rounding on the transform's domain), and serialises
to JSON as ``{"type": <class name>, **fields}`` so that checkpoint cards can rebuild it.

    Identity:            y = x
    Arctan(scale, shift): y = arctan(scale · (x − shift)),   x = tan(y) / scale + shift
    Log(eps):            y = log(x + eps),                  x = exp(y) − eps
    Log1p:               y = log(1 + x),                    x = exp(y) − 1

``Arctan.inverse`` clamps y to (−π/2, π/2) first, so a sample beyond the image never gives
±inf; ``Log.inverse`` cannot overflow for |y| < 700 and callers clip to bounds afterwards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Transform", "Identity", "Arctan", "Log", "Log1p", "transform_from_dict"]

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


_TYPES: dict[str, type[Transform]] = {c.__name__: c for c in (Transform, Identity, Arctan, Log, Log1p)}


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
