"""Simulated (target) variables: how each is derived from reco and Gen, and rebuilt.

A :class:`Target` relates a NanoAOD reco branch ``<Reco>_<branch>`` to its Gen object:

    relation   target t from reco r and Gen g       reco r rebuilt from t and g
    direct     t = r                                 r = t
    ratio      t = r / g                             r = t · g
    diff       t = r − g                             r = g + t
    dphi       t = wrap(r − g)                       r = wrap(g + t),   wrap into [−π, π)
    scaled     t = r / S(reco, gen)                   r = t · S(reco, gen)

where S is a registered :class:`Scale` of *other* reco values of the same object (rebuilt
first) and its Gen fields: a target that is (nearly) a function of other targets is modelled
as its ratio to that function. The muons' ip3d = √(dxy² + (dz/cosh η)²) and sip3d =
ip3d/√(dxyErr² + (dzErr/cosh η)²) hold to NanoAOD rounding (relative 3·10⁻⁴) in the
reference: as raw targets they confine the 22-dimensional density to a thin shell, and the
flow's likelihood gains ~8 nats per such direction by collapsing onto it instead of learning
the other targets; their ratio to S is a well-posed (standardised) target — the rounding
jitter here, the true deviation in real CMS files.

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

A real target with ``dequantize="rounding"`` is filled across the NanoAOD rounding cell of
its reco value at extraction: r' uniform over the values that round to r (|r| ± 2^(e − bits)/2
for |r| = m·2^e, ``NANOAOD_MANTISSA_BITS`` of the reco branch), u keyed on the object and
the reference draw, t = from_reco(r'). Muon η, φ are stored with 12 mantissa bits, a step
(1–5·10⁻⁴) close to the resolution of prompt muons: Δη, Δφ then take a handful of lattice
values per object and the flow's likelihood rewards collapsing onto lattices seen in
training; filled cells give it the smooth density whose rounding (applied after sampling,
as for every reco field) reproduces the lattice — P(round(r') = k) = P(r = k) exactly.

An optional :class:`Spike` moves an exactly repeated value (tagger sentinel −1, a zero spike
in isolations) to a uniform band [lo, hi) *below* the transformed regular values; after
sampling any encoded value < cut becomes that value again. With ``below=True`` every value
under the lower bound is the sentinel (real Run-2 CMS files write −10 for CSVv2 and −2 for
DeepCSV B, the project's reference response −1): extraction maps them all to ``value``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from flashsim_coffea.nanoaod.conventions import wrap_phi
from .transforms import Identity, Transform, transform_from_dict

__all__ = ["Spike", "Target", "Scale", "SCALES", "register_scale", "RELATIONS", "KINDS", "DEQUANTIZATIONS"]

RELATIONS = ("direct", "ratio", "diff", "dphi", "scaled")
KINDS = ("real", "integer", "ordinal")
DEQUANTIZATIONS = ("uniform", "quantile", "rounding")


@dataclass(frozen=True)
class Scale:
    """S(reco, gen) for ``relation="scaled"``: ``reco`` branches (without the collection
    prefix, other targets of the same spec) and ``gen`` fields of the simulated Gen object."""

    name: str
    reco: tuple[str, ...]
    gen: tuple[str, ...]
    fn: Callable[[dict, dict], np.ndarray]


#: registered scales by name (the spec JSON refers to them by name)
SCALES: dict[str, Scale] = {}


def register_scale(name: str, reco: tuple[str, ...], gen: tuple[str, ...] = ()):
    """Decorator registering ``fn(reco: dict, gen: dict) -> array`` as the scale ``name``."""

    def deco(fn):
        SCALES[name] = Scale(name, tuple(reco), tuple(gen), fn)
        return fn

    return deco


@register_scale("ip3d_from_dxy_dz", reco=("dxy", "dz"), gen=("eta",))
def _ip3d_from_dxy_dz(reco: dict, gen: dict) -> np.ndarray:
    """√(dxy² + (dz / cosh η_gen)²): the 3-D impact parameter from its transverse and longitudinal parts."""
    return np.hypot(reco["dxy"], reco["dz"] / np.cosh(gen["eta"]))


@register_scale("sip3d_from_errors", reco=("ip3d", "dxyErr", "dzErr"), gen=("eta",))
def _sip3d_from_errors(reco: dict, gen: dict) -> np.ndarray:
    """ip3d / √(dxyErr² + (dzErr / cosh η_gen)²): the 3-D significance from the 2-D errors."""
    return reco["ip3d"] / np.hypot(reco["dxyErr"], reco["dzErr"] / np.cosh(gen["eta"]))


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
    scale: str | None = None

    def __post_init__(self):
        if self.relation not in RELATIONS:
            raise ValueError(f"{self.name}: relation must be one of {RELATIONS}")
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {KINDS}")
        if self.relation == "scaled":
            if self.scale not in SCALES:
                raise ValueError(f"{self.name}: relation 'scaled' needs a registered scale; known: {', '.join(SCALES)}")
        elif self.relation != "direct" and not self.gen_field:
            raise ValueError(f"{self.name}: relation {self.relation!r} needs gen_field")
        if self.dequantize not in DEQUANTIZATIONS or (self.dequantize == "quantile" and self.kind != "ordinal") \
                or (self.dequantize == "rounding" and (self.kind != "real" or self.dtype != "float32")):
            raise ValueError(f"{self.name}: dequantize must be one of {DEQUANTIZATIONS} ('quantile' only for "
                             "ordinals, 'rounding' only for real float32 targets)")
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
    def scale_of(self, context: tuple[dict, dict]) -> np.ndarray:
        """S(reco, gen) of a ``scaled`` target; ``context`` = (reco branches, Gen fields)."""
        reco, gen = context
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(SCALES[self.scale].fn(reco, gen), dtype=np.float64)

    def from_reco(self, reco, gen=None, context: tuple[dict, dict] | None = None):
        """Target value t from the reco branch value r (and Gen value g for relative targets;
        ``context`` = (other reco branches, Gen fields) for ``scaled`` ones)."""
        if self.relation == "direct":
            return reco
        if self.relation == "ratio":
            with np.errstate(divide="ignore", invalid="ignore"):  # Gen value 0 -> inf: dropped as nonfinite
                return reco / gen
        if self.relation == "diff":
            return reco - gen
        if self.relation == "scaled":
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(self._sentinel(reco), reco, reco / self.scale_of(context))
        return wrap_phi(reco - gen)

    def _sentinel(self, x) -> np.ndarray:
        """Spike (sentinel) values, which ``scaled`` targets pass through unscaled."""
        x = np.asarray(x, dtype=np.float64)
        return self.spike.matches(x, self.bounds[0]) if self.spike is not None else np.zeros(x.shape, dtype=bool)

    def to_reco(self, t, gen=None, context: tuple[dict, dict] | None = None):
        """Reco branch value r rebuilt from target t (inverse of :meth:`from_reco`)."""
        if self.relation == "direct":
            return t
        if self.relation == "ratio":
            return t * gen
        if self.relation == "diff":
            return gen + t
        if self.relation == "scaled":
            return np.where(self._sentinel(t), t, t * self.scale_of(context))
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
        if self.scale is None:
            del d["scale"]  # likewise
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
