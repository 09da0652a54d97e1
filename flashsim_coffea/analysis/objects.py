"""The analysis' input collections per mode, and the per-NanoAOD-version reco policy.

Every builder returns coffea's own NanoAOD collection with its behaviour (``Muon``, ``Jet``,
``GenParticle``, ``GenJet``: ``delta_r``, ``metric_table``, ``isTight``, ``hasFlags`` …), with
at most a few analysis fields added by ``ak.with_field`` (the record name and behaviour stay).

Reco (fullsim and flashsim modes)
    ``reco_muons(events)`` is ``events.Muon``. ``reco_jets(events)`` is ``events.Jet`` with three
    added fields, filled according to the :class:`JetPolicy` that :func:`jet_policy` derives from
    the fields the ``Jet`` collection has (table below):

    * ``passJetIdTight`` (bool): the tight jet ID;
    * ``passPuId`` (bool): the loose pile-up ID, ``puId ≥ 4`` (bit 2, value 4, set); ``True``
      for every jet where the policy has no pile-up ID;
    * ``qgScore`` (float): the quark–gluon score, −1 (NanoAOD's "undefined") where the file
      has none.

    A missing branch raises :class:`~flashsim_coffea.errors.MissingBranchesError` naming it.
    Jets that come without these fields (FlashSim's, which have Run-2 ``jetId``/``puId``/``qgl``)
    get them from :func:`add_jet_ids` when the selection first reads them.

Gen (gen mode)
    ``gen_muons``: ``events.GenPart`` with status 1, |pdgId| = 13 and
    ``GenParticle.hasFlags("isPrompt")`` (the Gen stand-in for the isolation requirement),
    pT-ordered, with ``charge`` = −sign(pdgId) and neutral reco-only fields: ``mediumId`` =
    True, ``pfRelIso04_all`` = 0, ``ptErr`` = 0 (so Δm_μμ = 0). ``gen_jets``: ``events.GenJet``,
    pT-ordered, with ``passJetIdTight`` = ``passPuId`` = True and ``qgScore`` = −1.

NanoAOD versions (decided per file from the ``Jet`` branches; the muon branches are the same in
every version: pt, eta, phi, mass, charge, mediumId, pfRelIso04_all, ptErr):

=====================================  ==================  ==========================  ===========
Jet branches present                   taken as            tight jet ID                pile-up ID
=====================================  ==================  ==========================  ===========
``puId`` (or no Run-3 marker)          Run 2, AK4 CHS      stored ``jetId`` bit 1      ``puId ≥ 4``
                                                           (mask 2), coffea's          for
                                                           ``Jet.isTight``             pT < 50 GeV
no ``puId``; ``chMultiplicity`` and    Run 3, NanoAOD      computed from fractions     none (PUPPI)
``neMultiplicity``                     ≥ v13, AK4 PUPPI    and multiplicities
                                                           (:func:`tight_jet_id`)
no ``puId``, no multiplicities;        Run 3, NanoAOD      stored bit 1 with JME's     none (PUPPI)
``jetId``                              v12, AK4 PUPPI      v12 fix beyond |η| 2.7
                                                           (:func:`tight_jet_id_v12`)
=====================================  ==================  ==========================  ===========

Quark–gluon score in every version: the first of ``qgl``, ``btagPNetQvG``,
``btagUParTAK4QvG`` the file has (``qgl`` as stored; a tagger score outside [0, 1], such as
ParticleNet's −10 for jets it did not evaluate, becomes −1), else −1.

Sources: CMS JetMET, twiki ``JetID13p6TeV`` (section "nanoAOD Flags"), the Run-3 AK4 PUPPI
jet ID and its NanoAOD recipes; cms-sw/cmssw#46085 (jet ID flags removed from NanoAOD, v15:
"applied on-the-fly from the jet constituent multiplicities and energy fractions");
cms-sw/cmssw#42728 (charged/neutral multiplicities added to NanoAOD, v13).
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from ..errors import MissingBranchesError

__all__ = [
    "MUON_FIELDS",
    "JET_KINEMATICS",
    "JET_FIELDS",
    "GEN_FIELDS",
    "QG_SCORES",
    "JetPolicy",
    "RUN2",
    "RUN3_V12",
    "RUN3",
    "jet_policy",
    "reco_branches",
    "tight_jet_id",
    "tight_jet_id_v12",
    "add_jet_ids",
    "reco_muons",
    "reco_jets",
    "gen_muons",
    "gen_jets",
    "check_branches",
]

MUON_FIELDS = ("pt", "eta", "phi", "mass", "charge", "mediumId", "pfRelIso04_all", "ptErr")
JET_KINEMATICS = ("pt", "eta", "phi", "mass")
GEN_FIELDS = {"GenPart": ("pt", "eta", "phi", "mass", "pdgId", "status", "statusFlags"), "GenJet": ("pt", "eta", "phi", "mass")}
#: quark–gluon scores in order of preference (first present is used)
QG_SCORES = ("qgl", "btagPNetQvG", "btagUParTAK4QvG")
#: NanoAOD's value for an undefined discriminator
QG_UNDEFINED = -1.0
#: NanoAOD ``jetId`` bits (coffea ``Jet.LOOSE/TIGHT/TIGHTLEPVETO``): tight is bit 1, i.e. mask 2
JETID_TIGHT_BIT = 1
JETID_TIGHT_MASK = 1 << JETID_TIGHT_BIT
#: loose pile-up ID working point: NanoAOD ``puId`` ≥ 4 (bit 2 set; puId ∈ {4, 5, 6, 7})
PUID_LOOSE = 4

_FRACTIONS = ("chHEF", "neHEF", "neEmEF", "chMultiplicity", "neMultiplicity")


@dataclass(frozen=True)
class JetPolicy:
    """How the jets of one NanoAOD version are identified (module docstring table).

    ``jet_id``: ``"stored"`` (``jetId`` bit 1), ``"stored_v12"`` (bit 1 with JME's v12 fix) or
    ``"computed"`` (:func:`tight_jet_id`); ``pileup_id``: ``"puId"`` or ``None``;
    ``fields``: the Jet fields the policy reads besides the quark–gluon score.
    """

    name: str
    description: str
    jet_id: str
    pileup_id: str | None
    fields: tuple[str, ...]


RUN2 = JetPolicy("run2", "Run 2 NanoAOD (AK4 CHS jets)", "stored", "puId", (*JET_KINEMATICS, "jetId", "puId"))
RUN3_V12 = JetPolicy("run3_v12", "Run 3 NanoAOD v12 (AK4 PUPPI jets)", "stored_v12", None, (*JET_KINEMATICS, "jetId", "neHEF", "neEmEF"))
RUN3 = JetPolicy("run3", "Run 3 NanoAOD >= v13 (AK4 PUPPI jets)", "computed", None, (*JET_KINEMATICS, *_FRACTIONS))

#: Jet fields of the Run-2 policy (the reference analysis; what FlashSim writes)
JET_FIELDS = RUN2.fields


def jet_policy(fields) -> JetPolicy:
    """The :class:`JetPolicy` for a ``Jet`` collection with these field names (module docstring):

    * no ``puId`` and both ``chMultiplicity`` and ``neMultiplicity`` → :data:`RUN3`;
    * no ``puId``, no multiplicities, ``jetId`` → :data:`RUN3_V12`;
    * otherwise (``puId`` present, or no Run-3 jet ID at all) → :data:`RUN2`.
    """
    f = set(fields)
    if "puId" not in f and {"chMultiplicity", "neMultiplicity"} <= f:
        return RUN3
    if "puId" not in f and "jetId" in f:
        return RUN3_V12
    return RUN2


def qg_score_field(fields) -> str | None:
    """The first of :data:`QG_SCORES` among ``fields`` (None: the score is undefined, −1)."""
    f = set(fields)
    return next((q for q in QG_SCORES if q in f), None)


def _filename(events) -> str:
    meta = getattr(events, "metadata", None) or {}
    return str(meta.get("filename", "<events>"))


def reco_branches(available, *, filename: str = "<input>") -> list[str]:
    """The flat branches fullsim mode reads from a file with the ``available`` branch names.

    ``Muon_{MUON_FIELDS}`` plus ``Jet_{policy.fields}`` of :func:`jet_policy` applied to the
    file's ``Jet_*`` branches, plus the quark–gluon score branch when one exists. Raises
    :class:`~flashsim_coffea.errors.MissingBranchesError` naming every needed branch absent.
    """
    available = set(available)
    jet_fields = {b[len("Jet_"):] for b in available if b.startswith("Jet_")}
    policy = jet_policy(jet_fields)
    qg = qg_score_field(jet_fields)
    needed = [f"Muon_{f}" for f in MUON_FIELDS] + [f"Jet_{f}" for f in policy.fields]
    if qg is not None:
        needed.append(f"Jet_{qg}")
    missing = [b for b in needed if b not in available]
    if missing:
        raise MissingBranchesError(filename, missing, f"run the analysis in fullsim mode (reco Muon and Jet; jets as {policy.description})")
    return needed


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


# --------------------------------------------------------------------------- jet ID
def tight_jet_id(jets: ak.Array) -> ak.Array:
    """Tight jet ID of Run-3 AK4 PUPPI jets from NanoAOD energy fractions and multiplicities
    (JetMET twiki JetID13p6TeV, "nanoAOD Flags"; what JME's ``jetid.json`` encodes):

    * |η| ≤ 2.6: neHEF < 0.99 ∧ neEmEF < 0.90 ∧ chMultiplicity + neMultiplicity > 1
      ∧ chHEF > 0.01 ∧ chMultiplicity > 0;
    * 2.6 < |η| ≤ 2.7: neHEF < 0.90 ∧ neEmEF < 0.99;
    * 2.7 < |η| ≤ 3.0: neHEF < 0.99;
    * |η| > 3.0: neMultiplicity ≥ 2 ∧ neEmEF < 0.40.

    Multiplicities are summed as int64 (NanoAOD stores them as uint8).
    """
    aeta = abs(jets.eta)
    ch = ak.values_astype(jets.chMultiplicity, np.int64)
    ne = ak.values_astype(jets.neMultiplicity, np.int64)
    central = (jets.neHEF < 0.99) & (jets.neEmEF < 0.90) & (ch + ne > 1) & (jets.chHEF > 0.01) & (ch > 0)
    transition = (jets.neHEF < 0.90) & (jets.neEmEF < 0.99)
    endcap = jets.neHEF < 0.99
    forward = (ne >= 2) & (jets.neEmEF < 0.40)
    return ak.where(aeta <= 2.6, central, ak.where(aeta <= 2.7, transition, ak.where(aeta <= 3.0, endcap, forward)))


def _stored_tight(jets: ak.Array) -> ak.Array:
    """``jetId`` bit 1 (mask 2) set: coffea's ``Jet.isTight`` where the jets have coffea's
    ``Jet`` behaviour, the same expression otherwise."""
    if isinstance(getattr(type(jets), "isTight", None), property):
        return jets.isTight
    return (ak.values_astype(jets.jetId, np.int64) & JETID_TIGHT_MASK) != 0


def tight_jet_id_v12(jets: ak.Array) -> ak.Array:
    """Tight jet ID of NanoAOD v12 (JetID13p6TeV, "nanoAOD Flags", v12 recipe): the stored
    ``jetId`` bit 1, and in addition neHEF < 0.99 for 2.7 < |η| ≤ 3.0 and neEmEF < 0.40 for
    |η| > 3.0 (the stored flag is wrong there in v12)."""
    aeta = abs(jets.eta)
    fix = ak.where(aeta <= 2.7, True, ak.where(aeta <= 3.0, jets.neHEF < 0.99, jets.neEmEF < 0.40))
    return _stored_tight(jets) & fix


def add_jet_ids(jets: ak.Array, policy: JetPolicy | None = None) -> ak.Array:
    """``jets`` with ``passJetIdTight``, ``passPuId`` and ``qgScore`` (module docstring) per
    ``policy`` (default: :func:`jet_policy` of the jets' fields); name and behaviour are kept."""
    fields = ak.fields(jets)
    policy = policy or jet_policy(fields)
    if policy.jet_id == "stored":
        tight = _stored_tight(jets)
    elif policy.jet_id == "stored_v12":
        tight = tight_jet_id_v12(jets)
    else:
        tight = tight_jet_id(jets)
    puid = jets.puId >= PUID_LOOSE if policy.pileup_id == "puId" else ak.ones_like(jets.pt, dtype=bool)
    qg = qg_score_field(fields)
    if qg is None:
        score = ak.full_like(jets.pt, QG_UNDEFINED)
    elif qg == "qgl":
        score = jets.qgl
    else:  # tagger scores outside [0, 1] (e.g. −10 where ParticleNet did not run) are undefined
        score = ak.where((jets[qg] >= 0) & (jets[qg] <= 1), jets[qg], QG_UNDEFINED)
    jets = ak.with_field(jets, tight, "passJetIdTight")
    jets = ak.with_field(jets, puid, "passPuId")
    return ak.with_field(jets, score, "qgScore")


# --------------------------------------------------------------------------- collections
def reco_muons(events) -> ak.Array:
    """``events.Muon`` (coffea ``Muon`` behaviour); its :data:`MUON_FIELDS` must exist."""
    check_branches(events, {"Muon": MUON_FIELDS}, "select muons (fullsim mode needs reco Muon branches)")
    return events.Muon


def reco_jets(events) -> ak.Array:
    """``events.Jet`` (coffea ``Jet`` behaviour) with the policy fields of :func:`add_jet_ids`."""
    have = set(events.Jet.fields) if "Jet" in events.fields else set()
    policy = jet_policy(have)
    check_branches(events, {"Jet": policy.fields}, f"select jets (fullsim mode needs reco Jet branches; jets as {policy.description})")
    return add_jet_ids(events.Jet, policy)


def gen_muons(events) -> ak.Array:
    """Prompt status-1 Gen muons (``GenParticle`` behaviour) with neutral reco-only fields (module docstring)."""
    check_branches(events, {"GenPart": GEN_FIELDS["GenPart"]}, "build Gen muons (gen mode)")
    g = events.GenPart
    g = g[(g.status == 1) & (abs(g.pdgId) == 13) & g.hasFlags("isPrompt")]
    g = g[ak.argsort(g.pt, axis=1, ascending=False)]
    extra = {
        "charge": -np.sign(g.pdgId),
        "mediumId": ak.ones_like(g.pt, dtype=bool),
        "pfRelIso04_all": ak.zeros_like(g.pt),
        "ptErr": ak.zeros_like(g.pt),
    }
    for name, values in extra.items():
        g = ak.with_field(g, values, name)
    return g


def gen_jets(events) -> ak.Array:
    """GenJets (pT-ordered, ``GenJet`` behaviour) that pass every jet ID, with qgScore = −1 (module docstring)."""
    check_branches(events, {"GenJet": GEN_FIELDS["GenJet"]}, "build Gen jets (gen mode)")
    g = events.GenJet
    g = g[ak.argsort(g.pt, axis=1, ascending=False)]
    g = ak.with_field(g, ak.ones_like(g.pt, dtype=bool), "passJetIdTight")
    g = ak.with_field(g, ak.ones_like(g.pt, dtype=bool), "passPuId")
    return ak.with_field(g, ak.full_like(g.pt, QG_UNDEFINED), "qgScore")
