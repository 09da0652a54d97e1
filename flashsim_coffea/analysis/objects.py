"""The analysis' input collections per mode, as NanoAOD-like jagged records.

* ``reco_muons`` / ``reco_jets``: the file's (or FlashSim's) ``Muon`` / ``Jet``, reduced to the
  fields the analysis reads (:data:`MUON_FIELDS`, :data:`JET_FIELDS`); a missing branch raises
  :class:`~flashsim_coffea.errors.MissingBranchesError` naming it.
* ``gen_muons`` / ``gen_jets``: Gen-level stand-ins for the seed's FlashSim-vs-Gen comparison.
  Muons are status-1 ``GenPart`` with |pdgId| = 13 and the ``isPrompt`` flag (statusFlags bit 0,
  the Gen stand-in for the isolation requirement), charge = −sign(pdgId); jets are ``GenJet``.
  Reco-only quantities get neutral values so that the *same* selection code applies:
  mediumId = True, pfRelIso04_all = 0, ptErr = 0 (so Δm_μμ = 0), jetId = 6 (tight),
  puId = 7, qgl = −1 (NanoAOD's "undefined").
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from ..errors import MissingBranchesError

__all__ = ["MUON_FIELDS", "JET_FIELDS", "GEN_FIELDS", "reco_muons", "reco_jets", "gen_muons", "gen_jets", "check_branches"]

MUON_FIELDS = ("pt", "eta", "phi", "mass", "charge", "mediumId", "pfRelIso04_all", "ptErr")
JET_FIELDS = ("pt", "eta", "phi", "mass", "jetId", "puId", "qgl")
GEN_FIELDS = {"GenPart": ("pt", "eta", "phi", "mass", "pdgId", "status", "statusFlags"), "GenJet": ("pt", "eta", "phi", "mass")}

_PROMPT_BIT = 0


def _filename(events) -> str:
    meta = getattr(events, "metadata", None) or {}
    return str(meta.get("filename", "<events>"))


def check_branches(events, needed: dict[str, tuple[str, ...]], what: str) -> None:
    """Raise MissingBranchesError listing every ``Collection_field`` of ``needed`` absent from ``events``."""
    fields = set(events.fields)
    missing = []
    for coll, cols in needed.items():
        if coll not in fields:
            missing += [f"{coll}_{c}" for c in cols]
            continue
        have = set(events[coll].fields)
        missing += [f"{coll}_{c}" for c in cols if c not in have]
    if missing:
        raise MissingBranchesError(_filename(events), missing, what)


def _zip(fields: dict, with_name: str, behavior) -> ak.Array:
    return ak.zip(fields, with_name=with_name, behavior=behavior)


def reco_muons(events) -> ak.Array:
    """``events.Muon`` restricted to :data:`MUON_FIELDS` (PtEtaPhiMCandidate behaviour)."""
    check_branches(events, {"Muon": MUON_FIELDS}, "select muons (fullsim mode needs reco Muon branches)")
    m = events.Muon
    return _zip({f: m[f] for f in MUON_FIELDS}, "PtEtaPhiMCandidate", events.behavior)


def reco_jets(events) -> ak.Array:
    """``events.Jet`` restricted to :data:`JET_FIELDS` (PtEtaPhiMLorentzVector behaviour)."""
    check_branches(events, {"Jet": JET_FIELDS}, "select jets (fullsim mode needs reco Jet branches)")
    j = events.Jet
    return _zip({f: j[f] for f in JET_FIELDS}, "PtEtaPhiMLorentzVector", events.behavior)


def gen_muons(events) -> ak.Array:
    """Prompt status-1 Gen muons with neutral reco-only fields (module docstring)."""
    check_branches(events, {"GenPart": GEN_FIELDS["GenPart"]}, "build Gen muons (gen mode)")
    g = events.GenPart
    g = g[(g.status == 1) & (abs(g.pdgId) == 13) & (((g.statusFlags >> _PROMPT_BIT) & 1) == 1)]
    g = g[ak.argsort(g.pt, axis=1, ascending=False)]
    return _zip(
        {
            "pt": g.pt,
            "eta": g.eta,
            "phi": g.phi,
            "mass": g.mass,
            "charge": -np.sign(g.pdgId),
            "mediumId": ak.ones_like(g.pt, dtype=bool),
            "pfRelIso04_all": ak.zeros_like(g.pt),
            "ptErr": ak.zeros_like(g.pt),
        },
        "PtEtaPhiMCandidate",
        events.behavior,
    )


def gen_jets(events) -> ak.Array:
    """GenJets (pT-ordered) with neutral reco-only fields (module docstring)."""
    check_branches(events, {"GenJet": GEN_FIELDS["GenJet"]}, "build Gen jets (gen mode)")
    g = events.GenJet
    g = g[ak.argsort(g.pt, axis=1, ascending=False)]
    return _zip(
        {
            "pt": g.pt,
            "eta": g.eta,
            "phi": g.phi,
            "mass": g.mass,
            "jetId": ak.full_like(g.pt, 6, dtype=np.int32),
            "puId": ak.full_like(g.pt, 7, dtype=np.int32),
            "qgl": ak.full_like(g.pt, -1.0),
        },
        "PtEtaPhiMLorentzVector",
        events.behavior,
    )
