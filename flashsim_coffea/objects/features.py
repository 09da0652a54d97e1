"""Conditioning features: declarative recipes computed column-wise from Gen collections.

Each feature is a frozen dataclass with ``compute(objs, ctx) -> jagged array`` aligned with
the simulated Gen objects ``objs`` (one value per object, no Python loop over events) and
``branches(ctx_spec)`` naming the NanoAOD branches it reads. Kinds:

    Field(name, field)                    the Gen object's own field, e.g. GenJet pt
    Bit(name, field, bit)                 (field >> bit) & 1, e.g. GenPart_statusFlags bits
    EventBranch(name, branch)             an event-level branch broadcast to objects (Pileup_nPU)
    Neighbour(name, collection, rank, quantity, max_dr, default)
        the rank-th closest object (0 = closest) of another Gen collection within
        ΔR < max_dr of the Gen object; quantity ∈ {dr, deta, dphi, pt, eta, phi, mass} with
        deta = η_neighbour − η_object and dphi = φ_neighbour − φ_object wrapped to [−π, π);
        ``default`` when there is no such neighbour.

Every feature carries a ``transform`` applied before standardisation (e.g. Log for pt).
User features subclass :class:`Feature` and call :func:`register_feature` so that cards
containing them can be loaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import awkward as ak
import numpy as np

from flashsim_coffea.nanoaod.conventions import delta_phi, delta_r

from .gen import branch
from .transforms import Identity, Transform, transform_from_dict

if TYPE_CHECKING:  # pragma: no cover
    from .spec import GenContext

__all__ = ["Feature", "Field", "Bit", "EventBranch", "Neighbour", "feature_from_dict", "register_feature"]


@dataclass(frozen=True)
class Feature:
    name: str
    transform: Transform = field(default_factory=Identity, kw_only=True)

    def compute(self, objs: ak.Array, ctx: "GenContext") -> ak.Array:  # pragma: no cover
        raise NotImplementedError

    def branches(self, ctx_spec) -> list[str]:
        return []

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "transform"}
        return {"type": type(self).__name__, **d, "transform": self.transform.to_dict()}


@dataclass(frozen=True)
class Field(Feature):
    field: str = "pt"

    def compute(self, objs, ctx):
        return objs[self.field]

    def branches(self, ctx_spec):
        return []  # the simulated collection's fields are read by GenCollection.load


@dataclass(frozen=True)
class Bit(Feature):
    field: str = "statusFlags"
    bit: int = 0

    def compute(self, objs, ctx):
        return (objs[self.field] >> self.bit) & 1


@dataclass(frozen=True)
class EventBranch(Feature):
    branch: str = "Pileup_nPU"

    def compute(self, objs, ctx):
        ev = ak.values_astype(branch(ctx.events, self.branch), np.float64)
        return ak.broadcast_arrays(ev, objs[ak.fields(objs)[0]])[0]

    def branches(self, ctx_spec):
        return [self.branch]


_QUANTITIES = ("dr", "deta", "dphi", "pt", "eta", "phi", "mass")


@dataclass(frozen=True)
class Neighbour(Feature):
    collection: str = "GenMuon"
    rank: int = 0
    quantity: str = "dr"
    max_dr: float = 0.4
    default: float = 0.5

    def __post_init__(self):
        if self.quantity not in _QUANTITIES:
            raise ValueError(f"Neighbour quantity must be one of {_QUANTITIES}, got {self.quantity!r}")

    def compute(self, objs, ctx):
        table = ctx.neighbours(self.collection, self.max_dr)
        col = table[self.quantity]
        padded = ak.pad_none(col, self.rank + 1, axis=2)[:, :, self.rank]
        return ak.fill_none(padded, self.default)

    def branches(self, ctx_spec):
        return ctx_spec.collection(self.collection).branches()


def neighbour_table(objs: ak.Array, others: ak.Array, max_dr: float) -> ak.Array:
    """For each object, the records of ``others`` within ΔR < max_dr, sorted by ΔR.

    Doubly-jagged (event, object, neighbour) record array with fields dr, deta, dphi, pt,
    eta, phi, mass (mass = 0 when the other collection has none).
    """
    pairs = ak.cartesian({"o": objs, "n": others}, axis=1, nested=True)
    o, n = pairs["o"], pairs["n"]
    dr = delta_r(o.eta, o.phi, n.eta, n.phi)
    mass = n.mass if "mass" in ak.fields(n) else ak.zeros_like(n.pt)
    table = ak.zip(
        {
            "dr": dr,
            "deta": n.eta - o.eta,
            "dphi": delta_phi(n.phi, o.phi),
            "pt": n.pt,
            "eta": n.eta,
            "phi": n.phi,
            "mass": mass,
        }
    )
    table = table[dr < max_dr]
    return table[ak.argsort(table.dr, axis=2)]


_TYPES: dict[str, type[Feature]] = {c.__name__: c for c in (Field, Bit, EventBranch, Neighbour)}


def register_feature(cls: type[Feature]) -> type[Feature]:
    """Class decorator making a user feature loadable from checkpoint cards."""
    _TYPES[cls.__name__] = cls
    return cls


def feature_from_dict(d: dict) -> Feature:
    d = dict(d)
    name = d.pop("type")
    if name not in _TYPES:
        from flashsim_coffea.errors import UserError

        raise UserError(f"unknown feature type {name!r} in a spec/card; known: {', '.join(_TYPES)} "
                        "(import the module that defines it, decorated with @register_feature, before loading)")
    cls = _TYPES[name]
    d["transform"] = transform_from_dict(d["transform"])
    return cls(**d)
