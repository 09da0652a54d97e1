"""Simulated (target) variables: how each is derived from reco and Gen, and rebuilt.

A :class:`Target` relates a NanoAOD reco branch ``<Reco>_<branch>`` to its Gen object:

    relation   target t from reco r and Gen g       reco r rebuilt from t and g
    direct     t = r                                 r = t
    ratio      t = r / g                             r = t · g
    diff       t = r − g                             r = g + t
    dphi       t = wrap(r − g)                       r = wrap(g + t),   wrap into [−π, π)

and declares its kind:

    real     continuous; ``bounds`` clip it (also the physical range after sampling)
    integer  integers in [bounds]; uniformly dequantized n + u, u ∈ [−½, ½) for training,
             snapped back by rounding (e.g. nConstituents ≥ 1: no "bridging"); with
             ``step`` > 0 the values lie on a lattice x = n·step (jet area = ghost area × n)
             and n = x / step is what is dequantized and snapped
    ordinal  one of ``values`` (jetId {0,2,6}, puId {0,4,6,7}, booleans {0,1}); the ordinal
             index k is dequantized k + u and snapped back to the nearest admissible value;
             with ``dequantize="quantile"`` instead Φ⁻¹(F_k + u·p_k), F_k the training
             fraction below value k and p_k that of k (a smooth, standard-normal marginal: a
             rare 1 % value is a tail, not an isolated box), decoded by which [F_k, F_k+p_k)
             holds Φ(e); with ``classify=True`` the value is finally drawn by the model's
             *discrete head* (:mod:`flashsim_coffea.flows.head`), jointly with the spec's
             other classified targets, from p(values | conditioning, other targets)

An optional :class:`Spike` moves an exactly repeated value (tagger sentinel −1, a zero spike
in isolations) to a uniform band [lo, hi) *below* the transformed regular values; after
sampling any encoded value < cut becomes that value again. With ``below=True`` every value
under the lower bound is the sentinel (real Run-2 CMS files write −10 for CSVv2 and −2 for
DeepCSV B, the project's reference response −1): extraction maps them all to ``value``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .gen import wrap_phi
from .transforms import Identity, Transform, transform_from_dict

__all__ = ["Spike", "Target", "RELATIONS", "KINDS", "DEQUANTIZATIONS"]

RELATIONS = ("direct", "ratio", "diff", "dphi")
KINDS = ("real", "integer", "ordinal")
DEQUANTIZATIONS = ("uniform", "quantile")


@dataclass(frozen=True)
class Spike:
    """Exact value ``value`` ↔ uniform band [lo, hi) of the transformed axis; decoded when < cut."""

    value: float
    lo: float
    hi: float
    cut: float
    below: bool = False

    def matches(self, x: np.ndarray, lower_bound: float) -> np.ndarray:
        """Which raw values are this spike: x == value, or x < lower_bound when ``below``."""
        hit = x == self.value
        return (hit | (x < lower_bound)) if self.below else hit

    def __post_init__(self):
        if not (self.lo < self.hi <= self.cut):
            raise ValueError(f"Spike needs lo < hi <= cut, got {self}")


@dataclass(frozen=True)
class Target:
    name: str
    branch: str
    relation: str = "direct"
    gen_field: str | None = None
    transform: Transform = field(default_factory=Identity)
    kind: str = "real"
    values: tuple[float, ...] = ()
    bounds: tuple[float, float] = (-np.inf, np.inf)
    spike: Spike | None = None
    dtype: str = "float32"
    step: float = 0.0
    dequantize: str = "uniform"
    classify: bool = False

    def __post_init__(self):
        if self.relation not in RELATIONS:
            raise ValueError(f"{self.name}: relation must be one of {RELATIONS}")
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}")
        if self.relation != "direct" and not self.gen_field:
            raise ValueError(f"{self.name}: relation {self.relation!r} needs gen_field")
        if self.dequantize not in DEQUANTIZATIONS or (self.dequantize != "uniform" and self.kind != "ordinal"):
            raise ValueError(f"{self.name}: dequantize must be one of {DEQUANTIZATIONS} ('quantile' only for ordinals)")
        if self.classify and self.kind != "ordinal":
            raise ValueError(f"{self.name}: only ordinal targets can be drawn by the discrete head (classify=True)")
        if self.kind == "ordinal" and (len(self.values) < 2 or list(self.values) != sorted(self.values)):
            raise ValueError(f"{self.name}: ordinal targets need >= 2 sorted admissible values")
        if self.spike is not None and np.isfinite(self.bounds[0]):
            if not self.transform.forward(np.float64(self.bounds[0])) > self.spike.cut:
                raise ValueError(f"{self.name}: spike band must lie below the transformed lower bound")

    def lattice_index(self, x):
        """n = x / step for lattice targets (x itself otherwise)."""
        return x / self.step if self.step > 0 else x

    # -- reco <-> target ------------------------------------------------------------------
    def from_reco(self, reco, gen=None):
        """Target value t from the reco branch value r (and Gen value g for relative targets)."""
        if self.relation == "direct":
            return reco
        if self.relation == "ratio":
            return reco / gen
        if self.relation == "diff":
            return reco - gen
        return wrap_phi(reco - gen)

    def to_reco(self, t, gen=None):
        """Reco branch value r rebuilt from target t (inverse of :meth:`from_reco`)."""
        if self.relation == "direct":
            return t
        if self.relation == "ratio":
            return t * gen
        if self.relation == "diff":
            return gen + t
        return wrap_phi(gen + t)

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["transform"] = self.transform.to_dict()
        d["values"] = list(self.values)
        d["bounds"] = [_jsonable(b) for b in self.bounds]
        if not self.step:
            del d["step"]  # keeps the JSON (and spec hashes) of non-lattice targets unchanged
        if self.dequantize == "uniform":
            del d["dequantize"]  # likewise
        if not self.classify:
            del d["classify"]  # likewise
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Target":
        d = dict(d)
        d["transform"] = transform_from_dict(d["transform"])
        d["values"] = tuple(d["values"])
        d["bounds"] = tuple(float(b) for b in d["bounds"])
        d["spike"] = Spike(**d["spike"]) if d.get("spike") else None
        return cls(**d)


def _jsonable(x: float):
    """JSON has no inf: encode ±inf as the strings float() reads back."""
    return x if np.isfinite(x) else ("inf" if x > 0 else "-inf")
