"""Access to Gen-level collections, for flat uproot arrays and for coffea NanoEvents alike.

``branch(events, "GenJet_pt")`` returns ``events["GenJet_pt"]`` when the array has flat
NanoAOD branch names (``uproot``) and ``events["GenJet"]["pt"]`` for NanoEvents. A
:class:`GenCollection` selects the Gen objects a spec simulates or conditions on (e.g. the
status-1 Gen muons out of ``GenPart``) and keeps each object's index in its source
collection in the field ``index`` (the index that ``Muon_genPartIdx`` points to).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import awkward as ak
import numpy as np

__all__ = ["branch", "has_branch", "GenCollection"]


def has_branch(events, name: str) -> bool:
    fields = ak.fields(events)
    if name in fields:
        return True
    coll, _, field = name.partition("_")
    return coll in fields and field in ak.fields(events[coll])


def branch(events, name: str) -> ak.Array:
    """NanoAOD branch ``name`` (``Coll_field`` or an event-level name) from flat or nested events."""
    if name in ak.fields(events):
        return events[name]
    coll, _, field = name.partition("_")
    return events[coll][field]


@dataclass(frozen=True)
class GenCollection:
    """A selection of Gen objects.

    name:     how specs refer to it (e.g. ``"GenMuon"``)
    prefix:   the NanoAOD collection it is read from (e.g. ``"GenPart"``)
    fields:   branches read (without prefix)
    abs_pdg_id / status: optional selection ``|pdgId| == abs_pdg_id`` and ``status == status``
    with_charge: add ``charge = −sign(pdgId)`` (true for charged leptons: pdgId 13 is μ⁻)
    """

    name: str
    prefix: str
    fields: tuple[str, ...]
    abs_pdg_id: int | None = None
    status: int | None = None
    with_charge: bool = False

    def branches(self) -> list[str]:
        f = list(self.fields)
        if self.abs_pdg_id is not None or self.with_charge:
            f.append("pdgId")
        if self.status is not None:
            f.append("status")
        return sorted({f"{self.prefix}_{x}" for x in f})

    def load(self, events) -> ak.Array:
        """Jagged record array of the selected objects, with ``index`` into ``prefix``."""
        cols = {f: branch(events, f"{self.prefix}_{f}") for f in self.fields}
        first = next(iter(cols.values()))
        cols["index"] = ak.local_index(first, axis=1)
        if self.abs_pdg_id is not None or self.with_charge:
            pdg = branch(events, f"{self.prefix}_pdgId")
            cols["pdgId"] = pdg
        if self.status is not None:
            cols["status"] = branch(events, f"{self.prefix}_status")
        objs = ak.zip(cols, depth_limit=2)
        mask = ak.ones_like(cols["index"], dtype=bool)
        if self.abs_pdg_id is not None:
            mask = mask & (abs(objs.pdgId) == self.abs_pdg_id)
        if self.status is not None:
            mask = mask & (objs.status == self.status)
        objs = objs[mask]
        if self.with_charge:
            objs = ak.with_field(objs, -np.sign(objs.pdgId), "charge")
        return objs

    def to_dict(self) -> dict:
        d = asdict(self)
        d["fields"] = list(self.fields)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GenCollection":
        d = dict(d)
        d["fields"] = tuple(d["fields"])
        return cls(**d)
