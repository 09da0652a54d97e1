"""The declarative object spec: what one flow conditions on, simulates and rebuilds.

An :class:`ObjectSpec` names

* ``reco``: the NanoAOD reco collection it produces (``Jet``),
* ``simulated``: the Gen collection with one flow sample per object (``GenJet``),
* ``match``: the reco branch pointing into the simulated Gen collection's *source*
  collection (``Jet_genJetIdx`` → GenJet, ``Muon_genPartIdx`` → GenPart),
* ``collections``: further Gen collections used by :class:`~.features.Neighbour` features,
* ``conditioning``: the ordered conditioning features, ``targets``: the ordered targets,
* ``copy_from_gen``: reco fields copied from the Gen object (muon ``charge``),
* ``rules``: what NanoAOD does around the flow's sample — Gen acceptance, reco threshold and
  acceptance, constant mass, Gen-copied defaults, efficiency binning (:class:`~.rules.RecoRules`).

The same object drives extraction, preprocessing, training, injection and validation.
:meth:`ObjectSpec.hash` is the SHA-256 of its canonical JSON (sorted keys), stored in
checkpoint cards so that a model is never used with another spec; ``rules`` are not hashed (the
flow does not depend on them).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass

import awkward as ak
import numpy as np

from flashsim_coffea import noise
from flashsim_coffea.nanoaod.conventions import EVENT_ID, schema_constants
from flashsim_coffea.nanoaod.derived import DERIVED, derive
from flashsim_coffea.nanoaod.precision import NANOAOD_MANTISSA_BITS, fill_rounding_cell, round_mantissa

from .features import Feature, NeighbourTable, feature_from_dict
from .gen import GenCollection, branch
from .rules import RecoRules
from .targets import SCALES, Target

__all__ = ["ObjectSpec", "GenContext"]


class GenContext:
    """Per-chunk cache of Gen collections and neighbour tables for one spec."""

    def __init__(self, spec: "ObjectSpec", events):
        self.spec, self.events = spec, events
        self._collections: dict[str, ak.Array] = {}
        self._neighbours: dict[tuple[str, float], NeighbourTable] = {}

    def collection(self, name: str) -> ak.Array:
        if name not in self._collections:
            self._collections[name] = self.spec.collection(name).load(self.events)
        return self._collections[name]

    def objects(self) -> ak.Array:
        return self.collection(self.spec.simulated.name)

    def subset(self, entries: np.ndarray) -> "GenContext":
        """The context of the events ``entries`` (indices): the collections loaded so far are
        sliced, not read and selected again."""
        sub = GenContext(self.spec, self.events[entries])
        sub._collections = {name: coll[entries] for name, coll in self._collections.items()}
        return sub

    def neighbours(self, name: str, max_dr: float) -> NeighbourTable:
        key = (name, float(max_dr))
        if key not in self._neighbours:
            self._neighbours[key] = NeighbourTable(self.objects(), self.collection(name), max_dr)
        return self._neighbours[key]


@dataclass(frozen=True)
class ObjectSpec:
    name: str
    reco: str
    simulated: GenCollection
    match: str
    conditioning: tuple[Feature, ...]
    targets: tuple[Target, ...]
    collections: tuple[GenCollection, ...] = ()
    copy_from_gen: tuple[tuple[str, str], ...] = ()
    description: str = ""
    rules: RecoRules = RecoRules()

    def __post_init__(self):
        for kind, items in (("conditioning", self.conditioning), ("target", self.targets)):
            names = [x.name for x in items]
            if len(set(names)) != len(names):
                raise ValueError(f"spec {self.name!r}: duplicate {kind} names")
        unknown = [f for f in self.rules.derived if f"{self.reco}_{f}" not in DERIVED]
        if unknown:
            raise ValueError(f"spec {self.name!r}: no derivation of {', '.join(f'{self.reco}_{f}' for f in unknown)} "
                             "in flashsim_coffea.nanoaod.derived.DERIVED; add one there or drop it from rules.derived")
        made = set(self._own_field_sources())
        for f in self.rules.derived:
            missing = [i for i in DERIVED[f"{self.reco}_{f}"].inputs if i not in made]
            if f in made or missing:
                raise ValueError(f"spec {self.name!r}: derived field {f} " + (f"needs {', '.join(missing)}, which the spec "
                                 "does not make" if missing else "is also drawn or copied"))
            made.add(f)
        for t in self.targets:
            if t.relation == "scaled":
                missing = set(SCALES[t.scale].reco) - {u.branch for u in self.targets if u is not t}
                if missing:
                    raise ValueError(f"spec {self.name!r}: scale {t.scale!r} of {t.name} needs reco targets "
                                     f"{', '.join(sorted(missing))}")
                later = [u.name for u in self.targets[self.targets.index(t) + 1:]
                         if u.relation == "scaled" and u.branch in SCALES[t.scale].reco]
                if later:  # the rebuild restores scaled targets in spec order
                    raise ValueError(f"spec {self.name!r}: {t.name} is scaled by the scaled target(s) "
                                     f"{', '.join(later)}, which must come before it")
            if t.dequantize == "rounding" and self.rounding_bits(t) >= 23:
                raise ValueError(f"spec {self.name!r}: {t.name} has dequantize='rounding' but "
                                 f"{self.reco_branch(t)} is stored at full float32 precision (NANOAOD_MANTISSA_BITS)")

    # -- names ------------------------------------------------------------------------------
    @property
    def conditioning_names(self) -> list[str]:
        return [f.name for f in self.conditioning]

    @property
    def target_names(self) -> list[str]:
        return [t.name for t in self.targets]

    @property
    def classified_names(self) -> list[str]:
        """Targets drawn by the discrete head (``Target.classify``), in spec order."""
        return [t.name for t in self.targets if t.classify]

    def collection(self, name: str) -> GenCollection:
        for c in (self.simulated, *self.collections):
            if c.name == name:
                return c
        raise KeyError(f"spec {self.name!r} has no Gen collection {name!r}")

    def reco_branch(self, t: Target) -> str:
        return f"{self.reco}_{t.branch}"

    # -- branches -----------------------------------------------------------------------------
    def gen_branches(self) -> list[str]:
        """Branches needed to compute the conditioning and rebuild reco objects."""
        out = set(EVENT_ID) | set(self.simulated.branches())
        for f in self.conditioning:
            out.update(f.branches(self))
        copied = {g for _, g in self.copy_from_gen}  # derived by the GenCollection (charge from pdgId)
        out.update(f"{self.simulated.prefix}_{g}" for g in self.rebuild_gen_fields() if g not in copied)
        return sorted(out)

    def reco_branches(self) -> list[str]:
        """Reco branches needed to extract training targets (incl. the match index)."""
        return sorted({f"{self.reco}_{self.match}"} | {self.reco_branch(t) for t in self.targets})

    # -- conditioning -------------------------------------------------------------------------
    def context(self, events) -> GenContext:
        return GenContext(self, events)

    def conditioning_jagged(self, ctx: GenContext) -> dict[str, ak.Array]:
        """Each conditioning feature as a jagged array aligned with ``ctx.objects()``."""
        objs = ctx.objects()
        return {f.name: f.compute(objs, ctx) for f in self.conditioning}

    def conditioning_matrix(self, ctx: GenContext) -> np.ndarray:
        """(N objects, C features) float64 matrix, objects flattened event by event.

        Stored column by column (Fortran order: a transposed view of a (C, N) array): each
        feature is one contiguous column, as the per-feature transforms read it (building it
        row-major was a strided copy, 8x slower; ``np.ascontiguousarray`` gives row-major)."""
        cols = self.conditioning_jagged(ctx)
        if not cols:
            return np.zeros((0, 0))
        flat = [np.asarray(ak.to_numpy(ak.flatten(c, axis=1)), dtype=np.float64) for c in cols.values()]
        return np.stack(flat, axis=0).T

    def noise_keys(self, ctx: GenContext) -> dict[str, np.ndarray]:
        """Per-object noise keys: run, lumi, event (broadcast) and the Gen object's source index."""
        objs = ctx.objects()
        counts = ak.to_numpy(ak.num(objs, axis=1))
        keys = {
            k: np.repeat(np.asarray(ak.to_numpy(branch(ctx.events, k))).astype(np.int64), counts)
            for k in EVENT_ID
        }
        keys["object"] = np.asarray(ak.to_numpy(ak.flatten(objs["index"], axis=1))).astype(np.int64)
        return keys

    def rebuild_gen_fields(self) -> list[str]:
        """Gen-object fields :meth:`rebuild` needs (relative targets, scales and copied fields)."""
        scaled = {g for t in self.targets if t.relation == "scaled" for g in SCALES[t.scale].gen}
        return sorted({t.gen_field for t in self.targets if t.gen_field} | scaled | {g for _, g in self.copy_from_gen})

    def targets_from_reco(self, reco: dict[str, np.ndarray], gen: dict[str, np.ndarray]) -> np.ndarray:
        """(N, T) target matrix from flat reco branches (keyed by branch, no prefix) and Gen fields."""
        cols = [t.from_reco(np.asarray(reco[t.branch], dtype=np.float64), gen.get(t.gen_field), (reco, gen))
                for t in self.targets]
        return np.stack(cols, axis=1) if cols else np.zeros((len(next(iter(gen.values()), [])), 0))

    def rounding_bits(self, t: Target) -> int:
        """Mantissa bits NanoAOD keeps of the target's reco branch (23: full float32)."""
        return NANOAOD_MANTISSA_BITS.get(self.reco_branch(t), 23)

    def fill_rounding_cells(self, targets: np.ndarray, reco: dict[str, np.ndarray], gen: dict[str, np.ndarray],
                            keys: dict[str, np.ndarray], draw: int = 0) -> np.ndarray:
        """Targets with ``dequantize="rounding"`` recomputed from r' uniform over the rounding cell of r
        (:func:`~flashsim_coffea.nanoaod.precision.fill_rounding_cell`), u keyed on
        (spec, target, reference draw, run, lumi, event, object); the others unchanged (in place)."""
        for j, t in enumerate(self.targets):
            if t.dequantize != "rounding":
                continue
            r = np.asarray(reco[t.branch], dtype=np.float64)
            u = noise.uniform(0, noise.stream_id(f"extract/rounding/{self.name}/{t.name}"), int(draw),
                              *(np.asarray(keys[k], dtype=np.int64) for k in (*EVENT_ID, "object")))
            filled = fill_rounding_cell(r, self.rounding_bits(t), u)
            targets[:, j] = t.from_reco(filled, gen.get(t.gen_field), (reco, gen))
        return targets

    def gen_fields(self, ctx: GenContext) -> dict[str, np.ndarray]:
        """Flat Gen fields for :meth:`rebuild`, aligned with :meth:`conditioning_matrix` rows."""
        objs = ctx.objects()
        return {f: np.asarray(ak.to_numpy(ak.flatten(objs[f], axis=1))) for f in self.rebuild_gen_fields()}

    def counts(self, ctx: GenContext) -> np.ndarray:
        """Gen objects per event (to ``ak.unflatten`` flat results)."""
        return np.asarray(ak.to_numpy(ak.num(ctx.objects(), axis=1)))

    # -- reco rebuild -------------------------------------------------------------------------
    def rebuild(self, targets: dict[str, np.ndarray], gen: dict[str, np.ndarray], precision: bool = True) -> dict[str, np.ndarray]:
        """Flat reco fields (without the collection prefix) from flat targets and Gen fields.

        r = to_reco(t, g) per target (pt = ptRatio·pt_gen, eta = eta_gen + etaMinusGen, φ
        wrapped …; ``scaled`` targets last, from the unrounded reco values), fields in ``copy_from_gen`` copied, then NanoAOD precision
        (``NANOAOD_MANTISSA_BITS`` of ``<reco>_<field>``) applied to float fields.
        """
        raw: dict[str, np.ndarray] = {}
        # scaled targets last (in spec order): their scale uses the others' unrounded reco values
        for t in sorted(self.targets, key=lambda t: t.relation == "scaled"):
            g = np.asarray(gen[t.gen_field], dtype=np.float64) if t.gen_field else None
            raw[t.branch] = t.to_reco(np.asarray(targets[t.name], dtype=np.float64), g, (raw, gen))
        out: dict[str, np.ndarray] = {}
        for t in self.targets:
            r = raw[t.branch]
            if t.dtype == "float32":
                r = r.astype(np.float32)
                bits = self.rounding_bits(t)
                if precision and bits < 23:
                    r = round_mantissa(r, bits)
            elif t.dtype == "bool":
                r = r > 0.5
            else:
                r = np.rint(r).astype(t.dtype)
            out[t.branch] = r
        for reco_field, gen_field in self.copy_from_gen:
            out[reco_field] = np.asarray(gen[gen_field])
        return out

    def complete(self, fields: dict[str, np.ndarray], gen: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        """``fields`` (of :meth:`rebuild`, ``n`` objects) with every reco field the flow does not draw,
        in one place: the rules' constant ``mass``; the rules' Gen-copied fields (``gen_defaults``,
        with their dtype; 0 for objects without a Gen counterpart, i.e. when ``gen`` lacks them); the
        fields coffea's NanoAODSchema makes for the collection (``Jet.charge`` = 0,
        :func:`~flashsim_coffea.nanoaod.conventions.schema_constants`); last the rules' ``derived``
        fields, from the stored (rounded) values of the others
        (:func:`flashsim_coffea.nanoaod.derived.derive`). A field already there (drawn, or copied
        by ``copy_from_gen``) is kept."""
        if self.rules.mass is not None:
            fields.setdefault("mass", np.full(n, self.rules.mass, dtype=np.float32))
        for f, dtype in self.rules.gen_defaults:
            fields.setdefault(f, gen[f].astype(dtype) if f in gen else np.zeros(n, dtype=dtype))
        for f, value in schema_constants(self.reco).items():
            fields.setdefault(f, np.full(n, value, dtype=np.float32))
        for f in self.rules.derived:
            if f not in fields:
                fields[f] = derive(self.reco, f, fields)
        return fields

    def field_sources(self) -> dict[str, str]:
        """How FlashSim fills each ``<reco>`` field of this spec's objects: ``"simulated"`` (a target of
        the flow or its discrete head), ``"derived"`` (NanoAOD's definition from the other fields,
        ``rules.derived``), ``"from Gen"`` (copied from the Gen object: ``copy_from_gen``,
        ``rules.gen_defaults``), ``"constant"`` (``rules.mass``, coffea's schema constants), ``"index"``
        (the match index into the Gen collection). The links into other collections
        (``Jet_muonIdx1`` …) are the injection's (:mod:`flashsim_coffea.nanoaod.links`)."""
        out = self._own_field_sources()
        out.update({f: "constant" for f in schema_constants(self.reco) if f not in out})
        out.update({f: "derived" for f in self.rules.derived if f not in out})
        return out

    def _own_field_sources(self) -> dict[str, str]:
        """:meth:`field_sources` without coffea's schema constants and the derived fields: what the
        spec itself draws, copies and indexes (the inputs its derived fields may read)."""
        out = {t.branch: "simulated" for t in self.targets}
        out.update({f: "from Gen" for f, _ in self.copy_from_gen})
        out[self.match] = "index"
        if self.rules.mass is not None:
            out.setdefault("mass", "constant")
        out.update({f: "from Gen" for f, _ in self.rules.gen_defaults if f not in out})
        return out

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "reco": self.reco,
            "simulated": self.simulated.to_dict(),
            "match": self.match,
            "collections": [c.to_dict() for c in self.collections],
            "conditioning": [f.to_dict() for f in self.conditioning],
            "targets": [t.to_dict() for t in self.targets],
            "copy_from_gen": [list(p) for p in self.copy_from_gen],
            "description": self.description,
            "rules": self.rules.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "ObjectSpec":
        return cls(
            name=d["name"],
            reco=d["reco"],
            simulated=GenCollection.from_dict(d["simulated"]),
            match=d["match"],
            collections=tuple(GenCollection.from_dict(c) for c in d["collections"]),
            conditioning=tuple(feature_from_dict(f) for f in d["conditioning"]),
            targets=tuple(Target.from_dict(t) for t in d["targets"]),
            copy_from_gen=tuple(tuple(p) for p in d["copy_from_gen"]),
            description=d.get("description", ""),
            rules=RecoRules.from_dict(d["rules"]) if "rules" in d else RecoRules(),
        )

    def with_rules(self, rules: RecoRules) -> "ObjectSpec":
        """The same spec with other reco rules (same hash)."""
        return dataclasses.replace(self, rules=rules)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def _hashed_dict(self) -> dict:
        """:meth:`to_dict` without the reco ``rules`` (what the flow depends on)."""
        d = self.to_dict()
        d.pop("rules")
        return d

    def hash(self) -> str:
        """SHA-256 of the canonical JSON of the spec without its rules (stable across runs and machines)."""
        return self._hash

    @functools.cached_property
    def _hash(self) -> str:
        # computed once per spec object (frozen: it cannot change); workers check their models'
        # specs on every chunk and hashing the canonical JSON took ~3 ms each time
        return hashlib.sha256(json.dumps(self._hashed_dict(), sort_keys=True, separators=(",", ":")).encode()).hexdigest()

    def extraction_hash(self) -> str:
        """Hash of what extraction depends on: the spec without modelling-only choices
        (a target's ``dequantize`` and ``classify``), so one extracted dataset serves every such
        variant — except ``dequantize="rounding"``, which extraction applies."""
        return self._hash_without(("dequantize", "classify"), keep={("dequantize", "rounding")})

    def flow_hash(self) -> str:
        """Hash of what the flow and its preprocessing depend on: the spec without ``classify``
        (which only decides whether the discrete head redraws a target)."""
        return self._hash_without(("classify",))

    def _hash_without(self, keys: tuple[str, ...], keep: set[tuple[str, str]] = frozenset()) -> str:
        d = self._hashed_dict()
        d["targets"] = [{k: v for k, v in t.items() if k not in keys or (k, v) in keep} for t in d["targets"]]
        return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
