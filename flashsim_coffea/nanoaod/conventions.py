"""NanoAOD conventions written once for the whole project.

* ``EVENT_ID`` — the branches that identify an event: (run, luminosityBlock, event). Every
  random draw of the project is keyed on them (plus object index and fold).
* ``MUON_MASS`` — the muon mass in GeV (PDG 2024: 105.6583755 MeV), written as ``Muon_mass``.
* ``AREA_QUANTUM`` — the ghost area of FastJet's active-area clustering in CMS AK4 jets:
  ``Jet_area = n · AREA_QUANTUM`` before NanoAOD rounding.
* Reco thresholds NanoAOD applies: jets are stored above ``JET_MIN_PT`` = 15 GeV and within the
  calorimeters, |η| < ``JET_MAX_ABS_ETA`` = 5 (GenJets reach further); muons are
  reconstructed within the muon system, |η| < ``MUON_MAX_ABS_ETA`` = 2.4, from pT
  ``MUON_MIN_PT`` = 3 GeV.
* ``RECO_LINK_FIELDS`` — NanoAOD's link fields of the reco collections FlashSim makes: a jet's
  first/second muon and electron (``Jet_muonIdx1``, …) and their counts, a muon's jet
  (:mod:`flashsim_coffea.nanoaod.links` computes them).
* ``FOLD_SCALED_WEIGHTS`` — the per-event weights that carry a sample's normalisation
  (``genWeight``, its copy ``Generator_weight``, ``LHEWeight_originalXWGTUP``): with N folds each
  copy of an event gets weight/N, so Σ weights of a folded sample is the input's. Relative weights
  (``LHEScaleWeight``, ``LHEPdfWeight``, ``PSWeight``: ratios to the nominal) are not scaled.
* ``schema_constants(collection)`` — the fields coffea's ``NanoAODSchema`` makes itself on
  reading because NanoAOD does not store them (``Jet.charge`` = 0, ``Photon.mass`` = 0): a
  collection FlashSim makes carries them too, so it has the fields of the file's collection.
* Angles: Δφ is wrapped into **[−π, π)**: ``wrap_phi(x) = ((x + π) mod 2π) − π``, the
  convention of coffea's and vector's ``delta_phi``; ΔR = sqrt(Δη² + Δφ²).
"""

from __future__ import annotations

import numpy as np

__all__ = ["EVENT_ID", "RECO_LINK_FIELDS", "FOLD_SCALED_WEIGHTS", "MUON_MASS", "AREA_QUANTUM", "JET_MIN_PT", "JET_MAX_ABS_ETA", "MUON_MAX_ABS_ETA", "MUON_MIN_PT", "wrap_phi",
           "delta_phi", "delta_r", "schema_constants"]

#: branches identifying an event (the noise key of every draw starts with them)
EVENT_ID: tuple[str, str, str] = ("run", "luminosityBlock", "event")

#: link fields of the reco collections FlashSim makes (created when their target collection exists)
RECO_LINK_FIELDS: dict[str, tuple[str, ...]] = {
    "Jet": ("muonIdx1", "muonIdx2", "nMuons", "electronIdx1", "electronIdx2", "nElectrons"),
    "Muon": ("jetIdx",),
}

#: absolute per-event weights, scaled by 1/N with N folds (flat NanoAOD branch names)
FOLD_SCALED_WEIGHTS: tuple[str, ...] = ("genWeight", "Generator_weight", "LHEWeight_originalXWGTUP")

#: muon mass in GeV
MUON_MASS = 0.1056583755

#: FastJet active-area ghost area of CMS AK4 jets (Jet_area is a multiple of it before rounding)
AREA_QUANTUM = 0.009973

#: NanoAOD stores reco jets above this pT (GeV)
JET_MIN_PT = 15.0
#: reco jets exist within the calorimeters: |η| below this
JET_MAX_ABS_ETA = 5.0

#: muon-system acceptance: |η| below, pT (GeV) above
MUON_MAX_ABS_ETA = 2.4
MUON_MIN_PT = 3.0


def wrap_phi(x):
    """Wrap an angle into [−π, π): ((x + π) mod 2π) − π."""
    return (x + np.pi) % (2 * np.pi) - np.pi


def delta_phi(a, b):
    """a − b wrapped into [−π, π)."""
    return wrap_phi(a - b)


def delta_r(eta1, phi1, eta2, phi2):
    """ΔR = sqrt(Δη² + Δφ²) with Δφ wrapped into [−π, π)."""
    return np.sqrt((eta1 - eta2) ** 2 + delta_phi(phi1, phi2) ** 2)


def schema_constants(collection: str) -> dict[str, float]:
    """``{field: value}`` that coffea's ``NanoAODSchema`` fills itself for ``collection`` (its
    ``full_like_items``: ``Jet_charge`` → 0.0); empty when coffea knows none."""
    from coffea.nanoevents import NanoAODSchema

    out = {}
    for name, (_, args) in getattr(NanoAODSchema, "full_like_items", {}).items():
        coll, _, field_name = name.partition("_")
        if coll == collection:
            out[field_name] = float(args[1])
    return out
