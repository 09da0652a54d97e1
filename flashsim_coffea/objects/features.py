"""Conditioning features: declarative recipes computed column-wise from Gen collections.

Each feature is a frozen dataclass with ``compute(objs, ctx) -> jagged array`` aligned with
the simulated Gen objects ``objs`` (one value per object, no Python loop over events) and
``branches(ctx_spec)`` naming the NanoAOD branches it reads. Kinds:

    Field(name, field)                    the Gen object's own field, e.g. GenJet pt
    Bit(name, field, bit)                 (field >> bit) & 1, e.g. GenPart_statusFlags bits
    EventBranch(name, branch)             an event-level branch broadcast to objects (Pileup_nPU)
    Neighbour(name, collection, rank, quantity, max_dr, default)
        the rank-th closest object (0 = closest) of another Gen collection within
        ΔR < max_dr of the Gen object; quantity ∈ {dr, deta, dphi, pt, eta, phi, mass,
        activity, dr_rest} with deta = η_neighbour − η_object, dphi = φ_neighbour − φ_object wrapped
        to [−π, π) and activity = max(pT_neighbour − pT_object, 0)/pT_object (the neighbour's
        pT beyond the object's own, relative: for a GenJet that contains a Gen muon, the Gen
        activity around the muon that its isolation sums) and dr_rest = ΔR·pT_neighbour/
        max(pT_neighbour − pT_object, 10⁻³ pT_neighbour), the object's distance to the axis of
        the neighbour without it (the pT-weighted centroid in (η, φ): for a GenJet that contains
        a muon, the axis of NanoAOD's Muon_jetPtRelv2, pT_rel ≈ pT_μ·dr_rest at small angles);
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
from flashsim_coffea.nanoaod.pairs import pairs_within, rank_in_group

from .gen import branch
from .transforms import Identity, Transform, transform_from_dict

if TYPE_CHECKING:  # pragma: no cover
    from .spec import GenContext

__all__ = ["Feature", "Field", "Bit", "EventBranch", "Neighbour", "NeighbourTable", "feature_from_dict", "register_feature"]


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


_QUANTITIES = ("dr", "deta", "dphi", "pt", "eta", "phi", "mass", "activity", "dr_rest")


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
        return ctx.neighbours(self.collection, self.max_dr).ranked(self.quantity, self.rank, self.default)

    def branches(self, ctx_spec):
        return ctx_spec.collection(self.collection).branches()


class NeighbourTable:
    """The objects' neighbours in another collection within ΔR < max_dr, as flat pairs.

    Pairs (object, neighbour) of one event — flat indices into the objects and the others,
    each flattened event by event — sorted by object, then ΔR (ties: the lower neighbour index
    first), with each pair's rank (0 = closest). Quantities (``Neighbour`` docstring) are
    computed for the pairs a feature asks for. Built on flat numpy arrays: awkward's nested
    cartesian product and doubly-jagged padding cost ~15 % of a FlashSim chunk.
    """

    def __init__(self, objs: ak.Array, others: ak.Array, max_dr: float):
        self.counts = ak.to_numpy(ak.num(objs, axis=1)).astype(np.int64)
        self._o = {f: ak.to_numpy(ak.flatten(objs[f], axis=1)) for f in ("pt", "eta", "phi")}
        self._n = {f: ak.to_numpy(ak.flatten(others[f], axis=1)) for f in ("pt", "eta", "phi")}
        self._n["mass"] = (ak.to_numpy(ak.flatten(others["mass"], axis=1)) if "mass" in ak.fields(others)
                           else np.zeros_like(self._n["pt"]))
        ia, ib = pairs_within(self.counts, ak.to_numpy(ak.num(others, axis=1)))
        dr = delta_r(self._o["eta"][ia], self._o["phi"][ia], self._n["eta"][ib], self._n["phi"][ib])
        keep = dr < max_dr
        ia, ib, dr = ia[keep], ib[keep], dr[keep]
        order = np.lexsort((ib, dr, ia))
        self.obj, self.other, self.dr = ia[order], ib[order], dr[order]
        self.rank = rank_in_group(self.obj)

    def quantity(self, name: str, pairs: np.ndarray) -> np.ndarray:
        """``name`` for the pairs ``pairs`` (indices into the sorted pairs)."""
        o, n = self.obj[pairs], self.other[pairs]
        if name == "dr":
            return self.dr[pairs]
        if name == "deta":
            return self._n["eta"][n] - self._o["eta"][o]
        if name == "dphi":
            return delta_phi(self._n["phi"][n], self._o["phi"][o])
        if name == "activity":
            return np.maximum(self._n["pt"][n] - self._o["pt"][o], 0.0) / self._o["pt"][o]
        if name == "dr_rest":
            pt_n = self._n["pt"][n]
            return self.dr[pairs] * pt_n / np.maximum(pt_n - self._o["pt"][o], 1e-3 * pt_n)
        return self._n[name][n]

    def ranked(self, name: str, rank: int, default: float) -> ak.Array:
        """``name`` of each object's rank-th closest neighbour (``default`` without one), jagged
        like the objects."""
        pairs = np.flatnonzero(self.rank == rank)
        values = self.quantity(name, pairs)
        out = np.full(int(self.counts.sum()), default, dtype=np.result_type(values.dtype, np.float32))
        out[self.obj[pairs]] = values
        return ak.unflatten(out, self.counts)


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
