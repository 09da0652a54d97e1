"""Per-object reconstruction rules: what NanoAOD does around the flow's sample.

A :class:`RecoRules` belongs to one :class:`~.spec.ObjectSpec` and is declared in the object's
own module (``objects/jets.py``, ``objects/muons.py``), so that the injection names no object:

* ``origin`` — where the objects come from: ``"gen"``, one object per Gen object of the spec's
  simulated collection (its match index is the Gen object's); ``"event"``, objects without a Gen
  counterpart (pile-up jets), n per (event, fold) drawn by the model folder's count model
  (``count.json``, :mod:`flashsim_coffea.flows.count`), match index −1. Objects of origin
  ``"event"`` join the reco collection of a Gen-matched spec (``ObjectSpec.reco``): they never
  make a FlashSim collection alone;
* ``gen_max_abs_eta``, ``gen_min_pt`` — Gen acceptance before sampling: only Gen objects with
  |η| < gen_max_abs_eta and pT > gen_min_pt are simulated (muons: the muon system; jets: the calorimeters);
* ``min_pt`` — NanoAOD's reco threshold after sampling: reco pT > min_pt (jets: 15 GeV);
* ``mass`` — a constant reco mass written as ``<reco>_mass`` when the flow does not simulate it;
* ``gen_defaults`` — reco fields copied from the Gen object with a dtype, when the flow does not
  simulate them (jets: ``partonFlavour``, ``hadronFlavour``), 0 for objects without a Gen
  counterpart (the spec's hashed ``copy_from_gen`` fields are copied by ``rebuild`` as they are;
  :meth:`~.spec.ObjectSpec.complete` adds every field the flow does not draw, in one place);
* ``derived`` — reco fields that NanoAOD defines exactly from the object's other fields
  (``Muon_pfIsoId`` from ``pfRelIso04_all``, ``Jet_btagDeepFlavCvL`` from the DeepFlavour scores …),
  computed after everything else by the functions of :data:`flashsim_coffea.nanoaod.derived.DERIVED`
  (the reference response uses the same ones), never drawn;
* ``efficiency_pt_edges``, ``efficiency_abseta_edges``, ``efficiency_threshold_free_pt`` — the
  binning of the reconstruction-efficiency map ε(Gen pT, Gen |η|) (:mod:`flashsim_coffea.efficiency`).

The rules are not part of the spec's hash (the flow does not depend on them); they are stored in
model cards, and a card that lacks a rule (or all of them) takes it from the registered spec of
the same name and hash (:meth:`RecoRules.from_dict` leaves it out, ``FlowModel.from_card`` fills it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import awkward as ak
import numpy as np

__all__ = ["RecoRules", "ORIGINS"]

#: where a spec's objects come from (``RecoRules.origin``)
ORIGINS = ("gen", "event")


@dataclass(frozen=True)
class RecoRules:
    origin: str = "gen"
    gen_max_abs_eta: float | None = None
    gen_min_pt: float | None = None
    min_pt: float | None = None
    mass: float | None = None
    gen_defaults: tuple[tuple[str, str], ...] = ()  # (field, dtype)
    derived: tuple[str, ...] = ()
    efficiency_pt_edges: tuple[float, ...] = (0.0, 1e9)
    efficiency_abseta_edges: tuple[float, ...] = (0.0, 1e9)
    efficiency_threshold_free_pt: float = 0.0

    def __post_init__(self):
        if self.origin not in ORIGINS:
            raise ValueError(f"RecoRules.origin must be one of {', '.join(ORIGINS)}, got {self.origin!r}")

    @property
    def gen_matched(self) -> bool:
        """One object per Gen object (``origin == "gen"``), else counted per event."""
        return self.origin == "gen"

    def in_acceptance(self, pt, eta):
        """Mask of the Gen objects that are simulated: |η| < gen_max_abs_eta and pT > gen_min_pt
        (numpy or awkward arrays, flat or jagged)."""
        cuts = []
        if self.gen_max_abs_eta is not None:
            cuts.append(abs(eta) < self.gen_max_abs_eta)
        if self.gen_min_pt is not None:
            cuts.append(pt > self.gen_min_pt)
        if not cuts:
            return ak.ones_like(pt, dtype=bool) if isinstance(pt, ak.Array) else np.ones(np.shape(pt), dtype=bool)
        return cuts[0] & cuts[1] if len(cuts) == 2 else cuts[0]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gen_defaults"] = [list(p) for p in self.gen_defaults]
        d["derived"] = list(self.derived)
        d["efficiency_pt_edges"] = list(self.efficiency_pt_edges)
        d["efficiency_abseta_edges"] = list(self.efficiency_abseta_edges)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RecoRules":
        d = dict(d)
        d["gen_defaults"] = tuple(tuple(p) for p in d.get("gen_defaults", ()))
        if "derived" in d:
            d["derived"] = tuple(d["derived"])
        for k in ("efficiency_pt_edges", "efficiency_abseta_edges"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)
