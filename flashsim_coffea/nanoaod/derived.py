"""NanoAOD fields that NanoAOD itself defines exactly from other stored fields.

Pure, vectorised functions on numpy arrays (flat or any shape; the Gen ancestry walk works on
flat arrays). Each states its formula and the CMSSW source that defines the field:

* ``Muon_pdgId`` = −13·charge (:func:`muon_pdg_id`);
* ``Muon_looseId`` = isPFcand ∧ (isGlobal ∨ isTracker) (:func:`muon_loose_id`);
* ``Muon_pfIsoId`` = the number of ``PFIso*`` working points passed by pfRelIso04_all
  (:data:`PF_ISO_WORKING_POINTS`, :func:`muon_pf_iso_id`);
* ``Jet_btagDeepFlavCvL`` = C/(1 − B), ``Jet_btagDeepFlavCvB`` = C/(C + B) from the DeepFlavour
  scores ``btagDeepFlavC``/``btagDeepFlavB``, −1 where undefined (:func:`charm_vs_light`,
  :func:`charm_vs_b`);
* ``Muon_tightCharge`` = 2 if ptErr/pT < 0.2 else 0 (:func:`muon_tight_charge`);
* ``Jet_neEmEF`` = 1 − muEF − chHEF − neHEF − chEmEF, the energy fraction the others leave
  (:func:`remaining_energy_fraction`);
* ``Muon_genPartFlav`` from the Gen match and the ``GenPart`` mother chain
  (:func:`muon_gen_part_flav`), CMSSW's ``CandMCMatchTableProducer``.

:data:`DERIVED` maps the stored field names to these functions and their inputs: FlashSim
(``RecoRules.derived``, :meth:`~flashsim_coffea.objects.spec.ObjectSpec.complete`) and the
reference response compute them with :func:`derive` from the stored (rounded) values.
``genPartFlav`` reads the Gen record, not the object's fields: it is not in :data:`DERIVED`;
:class:`~flashsim_coffea.objects.gen.GenCollection` (``with_origin``) and the reference call
:func:`muon_gen_part_flav` on the Gen muon.

All were checked against the real CMS files of ``shared/data/real-nanoaod`` (``tests/test_derived.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from .precision import NANOAOD_MANTISSA_BITS, round_mantissa

__all__ = [
    "muon_pdg_id",
    "muon_loose_id",
    "PF_ISO_WORKING_POINTS",
    "muon_pf_iso_id",
    "UNDEFINED_TAGGER",
    "charm_vs_light",
    "charm_vs_b",
    "GEN_PART_FLAV",
    "STATUS_FLAG_BITS",
    "MAX_ANCESTRY_DEPTH",
    "has_quark_flavour",
    "global_index",
    "parent_hadron_flav",
    "muon_gen_part_flav",
    "muon_tight_charge",
    "remaining_energy_fraction",
    "DerivedField",
    "DERIVED",
    "derive",
]


# --------------------------------------------------------------------------- muon ids
def muon_pdg_id(charge: np.ndarray) -> np.ndarray:
    """``Muon_pdgId`` = −13·charge (int32): μ⁻ (charge −1) is +13, μ⁺ is −13.

    NanoAOD (``PhysicsTools/NanoAOD/python/muons_cff.py``, ``CandVars``): ``pdgId`` of the
    candidate, which for a muon is −13·charge.
    """
    return (-13 * np.asarray(charge, dtype=np.int32)).astype(np.int32)


def muon_loose_id(is_pf_cand: np.ndarray, is_global: np.ndarray, is_tracker: np.ndarray) -> np.ndarray:
    """``Muon_looseId`` = isPFcand ∧ (isGlobal ∨ isTracker) (bool).

    NanoAOD: ``looseId = passed('CutBasedIdLoose')``, set in CMSSW's ``muon::makeSelectorBitset``
    from ``muon::isLooseMuon`` = ``isPFMuon() && (isGlobalMuon() || isTrackerMuon())``
    (``DataFormats/MuonReco/src/MuonSelectors.cc``).
    """
    return np.asarray(is_pf_cand, dtype=bool) & (np.asarray(is_global, dtype=bool) | np.asarray(is_tracker, dtype=bool))


#: ``Muon_pfIsoId`` working points in order (value k of the Id = the first k passed): name →
#: upper bound on the Δβ-corrected relative isolation pfRelIso04_all (pass: iso < bound, strict)
PF_ISO_WORKING_POINTS: dict[str, float] = {
    "PFIsoVeryLoose": 0.40,
    "PFIsoLoose": 0.25,
    "PFIsoMedium": 0.20,
    "PFIsoTight": 0.15,
    "PFIsoVeryTight": 0.10,
    "PFIsoVeryVeryTight": 0.05,
}


def muon_pf_iso_id(pf_rel_iso04_all: np.ndarray) -> np.ndarray:
    """``Muon_pfIsoId`` = Σ_k [pfRelIso04_all < t_k] over :data:`PF_ISO_WORKING_POINTS` (uint8, 0–6:
    1 = PFIsoVeryLoose, 2 = Loose, 3 = Medium, 4 = Tight, 5 = VeryTight, 6 = VeryVeryTight).

    NanoAOD: ``pfIsoId`` = the sum of ``passed('PFIsoVeryLoose')`` … ``passed('PFIsoVeryVeryTight')``;
    CMSSW's ``muon::makeSelectorBitset`` sets each as ``dbCorrectedRelIso < t`` (strict, in double
    precision), where dbCorrectedRelIso = (ch + max(nh + γ − 0.5 pu, 0))/pT is what NanoAOD stores
    as float32 ``pfRelIso04_all``. The stored value is compared here in double precision with the
    double thresholds. For these thresholds that is the same as comparing in float32 (each of
    0.40, 0.20, 0.15, 0.10, 0.05 rounds *up* to float32, 0.25 is exact), so a stored value equal to
    float32(t) fails t and the float32 just below it passes. Only a double-precision isolation
    within half a float32 ulp below t (stored as float32(t)) is ambiguous from the stored value; the
    real files have none. NaN passes nothing.
    """
    iso = np.asarray(pf_rel_iso04_all)
    bounds = np.fromiter(PF_ISO_WORKING_POINTS.values(), dtype=np.float64)
    return (iso[..., np.newaxis] < bounds).sum(axis=-1).astype(np.uint8)


# --------------------------------------------------------------------------- charm taggers
#: what NanoAOD writes for a ratio of tagger scores that is undefined
UNDEFINED_TAGGER = -1.0


def _score_ratio(c: np.ndarray, b: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """c/denominator (float32) where c ≥ 0, b ≥ 0 and denominator > 0, else −1."""
    ok = (c >= 0) & (b >= 0) & (denominator > 0)
    return np.where(ok, c / np.where(ok, denominator, 1.0), UNDEFINED_TAGGER).astype(np.float32)


def charm_vs_light(c: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``Jet_btagDeepFlavCvL`` = C/(1 − B) (float32), −1 where undefined.

    NanoAOD (``jets_cff.py``): ``CvL = probc/(probc + probuds + probg)`` if that denominator
    is > 0, else −1. With C = ``btagDeepFlavC`` = probc, B = ``btagDeepFlavB`` =
    probb + probbb + problepb and the six DeepFlavour probabilities summing to 1, the
    denominator is 1 − B. Undefined (−1): a negative score (DeepFlavour's −1 default for a jet
    without tag information, or NanoAOD's −1 below its pT cut) or 1 − B ≤ 0 (also a stored B that
    rounds to 1). Values above 1 (C > 1 − B: scores that are not one set of probabilities, as
    simulated ones can be) are clipped to NanoAOD's range, 1. Computed in double
    precision and returned as float32, not rounded: NanoAOD stores it with 10 mantissa bits
    (:func:`~flashsim_coffea.nanoaod.precision.round_mantissa`).
    """
    c, b = np.asarray(c, dtype=np.float64), np.asarray(b, dtype=np.float64)
    cvl = _score_ratio(c, b, 1.0 - b)
    # NanoAOD's probabilities sum to 1, so C ≤ 1 − B and CvL ≤ 1; simulated scores need not (FlashSim
    # draws C and B separately: C + B > 1 for ~0.1 % of jets), and NanoAOD's range is kept
    return np.minimum(cvl, np.float32(1.0))


def charm_vs_b(c: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``Jet_btagDeepFlavCvB`` = C/(C + B) (float32), −1 where undefined.

    NanoAOD (``jets_cff.py``): ``CvB = probc/(probc + probb + probbb + problepb)`` if that
    denominator is > 0, else −1; with C = ``btagDeepFlavC`` and B = ``btagDeepFlavB`` the
    denominator is C + B. Undefined (−1): a negative score or C + B = 0. Double precision,
    returned as float32 and not rounded (NanoAOD stores 10 mantissa bits).
    """
    c, b = np.asarray(c, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return _score_ratio(c, b, c + b)


# --------------------------------------------------------------------------- Gen origin of muons
#: ``Muon_genPartFlav`` codes (NanoAOD's doc string of the branch)
GEN_PART_FLAV: dict[str, int] = {"unmatched": 0, "prompt": 1, "light": 3, "c": 4, "b": 5, "prompt_tau": 15}

#: bits of ``GenPart_statusFlags`` used here (``DataFormats/HepMCCandidate/interface/GenStatusFlags.h``)
STATUS_FLAG_BITS: dict[str, int] = {"isPrompt": 0, "isDirectPromptTauDecayProduct": 5}

#: deepest mother chain followed (a chain of decayed hadrons is a handful of steps)
MAX_ANCESTRY_DEPTH = 64

_DECAYED = 2  # GenPart_status of a decayed hadron or lepton
_FINAL_STATE = 1


def has_quark_flavour(pdg_id: np.ndarray, q: int) -> np.ndarray:
    """Whether a particle counts as carrying quark ``q`` (4 = c, 5 = b) in CMSSW's
    ``getParentHadronFlag``: with a = |pdgId| (integer division), a/1000 = q (baryons, e.g. Λb
    5122), a/100 = q (mesons, e.g. B⁰ 511, J/ψ 443 for q = 4) or a = q (the quark itself).

    Radially/orbitally excited states (e.g. 10521, 100443) do not count, as in CMSSW.
    """
    a = np.abs(np.asarray(pdg_id, dtype=np.int64))
    return (a // 1000 == q) | (a // 100 == q) | (a == q)


def global_index(local_idx: np.ndarray, counts: np.ndarray, target_offsets: np.ndarray) -> np.ndarray:
    """Flat (global) index of per-object local indices into a target collection:
    ``target_offsets[event] + local_idx``, −1 where ``local_idx`` < 0.

    ``local_idx`` is flat over the objects (e.g. ``Muon_genPartIdx`` of all muons), ``counts`` their
    number per event, ``target_offsets`` the target's per-event offsets (length n_events + 1).
    """
    local_idx = np.asarray(local_idx, dtype=np.int64)
    evt = np.repeat(np.arange(len(counts)), counts)
    return np.where(local_idx >= 0, np.asarray(target_offsets, dtype=np.int64)[:-1][evt] + local_idx, -1)


def parent_hadron_flav(
    idx: np.ndarray, pdg_id: np.ndarray, status: np.ndarray, mother_idx: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """CMSSW's ``getParentHadronFlag`` for the GenPart at flat indices ``idx``: 5, 4 or 3 (int64).

    Walks up the mother chain m₁, m₂, … (``genPartIdxMother``, local to the event): the result
    is 5 if some mᵢ has b flavour (:func:`has_quark_flavour`), else 4 if some mᵢ has c flavour,
    else 3. The walk goes on past mᵢ only while mᵢ has status 2 (a decayed hadron or lepton,
    e.g. a τ from a B decay), so it stops at the first parton, string or radiating copy
    (status ≠ 2) after looking at its flavour; a mother at or after its daughter in the list is
    ignored (CMSSW's guard against circular references), as is −1. Vectorised over ``idx``,
    one step of all chains per iteration (at most :data:`MAX_ANCESTRY_DEPTH`).

    ``pdg_id``, ``status``, ``mother_idx`` are the flat GenPart columns, ``offsets`` their
    per-event offsets (length n_events + 1). NanoAOD's ``finalGenParticles`` keeps only the
    first mother of a particle; CMSSW looks at all of them (differences only where a decayed
    hadron's mothers are the several partons of a string).
    """
    idx = np.asarray(idx, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    pdg_id, status, mother_idx = np.asarray(pdg_id), np.asarray(status), np.asarray(mother_idx)
    evt = np.searchsorted(offsets, idx, side="right") - 1
    has_b = np.zeros(idx.shape, dtype=bool)
    has_c = np.zeros(idx.shape, dtype=bool)
    cur = idx.copy()
    active = np.arange(idx.size)
    for _ in range(MAX_ANCESTRY_DEPTH):
        if active.size == 0:
            break
        start = offsets[evt[active]]
        m_local = mother_idx[cur[active]]
        ok = (m_local >= 0) & (m_local < cur[active] - start)
        active, m = active[ok], start[ok] + m_local[ok]
        has_b[active] |= has_quark_flavour(pdg_id[m], 5)
        has_c[active] |= has_quark_flavour(pdg_id[m], 4)
        cur[active] = m
        active = active[(status[m] == _DECAYED) & ~has_b[active]]
    return np.where(has_b, 5, np.where(has_c, 4, 3)).astype(np.int64)


def _flag(status_flags: np.ndarray, name: str) -> np.ndarray:
    return (np.asarray(status_flags) >> STATUS_FLAG_BITS[name]) & 1 == 1


def muon_gen_part_flav(
    gen_idx: np.ndarray,
    pdg_id: np.ndarray,
    status: np.ndarray,
    status_flags: np.ndarray,
    mother_idx: np.ndarray,
    offsets: np.ndarray,
) -> np.ndarray:
    """``Muon_genPartFlav`` (uint8) of muons matched to the GenPart at flat indices ``gen_idx``:

    * 0 — unmatched (``gen_idx`` < 0);
    * 1 — prompt: the match is final state (status 1) with statusFlags bit 0 ``isPrompt``
      (CMSSW ``isPromptFinalState``);
    * 15 — from a prompt τ: final state with bit 5 ``isDirectPromptTauDecayProduct``
      (``isDirectPromptTauDecayProductFinalState``); a μ from a τ from a B is *not* 15;
    * else 5 (b), 4 (c) or 3 (light or unknown) from the mother chain, :func:`parent_hadron_flav`.

    NanoAOD: ``CandMCMatchTableProducer`` (``PhysicsTools/NanoAOD/plugins``), objType Muon, on the
    match of ``MCMatcher`` into ``finalGenParticles`` — the stored ``GenPart`` list, whose
    ``genPartIdxMother`` is the mother chain it walks.

    ``gen_idx``: per muon, the flat GenPart index (:func:`global_index` of ``Muon_genPartIdx``),
    −1 for none; ``pdg_id``, ``status``, ``status_flags``, ``mother_idx`` (local to the event, −1
    for none): the flat GenPart columns; ``offsets``: GenPart's per-event offsets (length
    n_events + 1). Any shape of ``gen_idx``; the result has its shape.
    """
    gen_idx = np.asarray(gen_idx, dtype=np.int64)
    g = gen_idx.ravel()
    n_gen = len(pdg_id)
    if np.any(g >= n_gen):
        raise ValueError(f"GenPart index {int(g.max())} out of range for {n_gen} GenPart entries")
    flav = np.zeros(g.shape, dtype=np.uint8)
    matched = np.flatnonzero(g >= 0)
    m = g[matched]
    final = np.asarray(status)[m] == _FINAL_STATE
    prompt = final & _flag(np.asarray(status_flags)[m], "isPrompt")
    from_tau = final & _flag(np.asarray(status_flags)[m], "isDirectPromptTauDecayProduct") & ~prompt
    rest = ~(prompt | from_tau)
    flav[matched[prompt]] = GEN_PART_FLAV["prompt"]
    flav[matched[from_tau]] = GEN_PART_FLAV["prompt_tau"]
    flav[matched[rest]] = parent_hadron_flav(m[rest], pdg_id, status, mother_idx, offsets)
    return flav.reshape(gen_idx.shape)


# --------------------------------------------------------------------------- track charge, energy sum
def muon_tight_charge(pt_err: np.ndarray, pt: np.ndarray) -> np.ndarray:
    """``Muon_tightCharge`` = 2 if ptErr/pT < 0.2 else 0 (int32).

    NanoAOD (``muons_cff.py``): ``tightCharge = ?(muonBestTrack().ptError()/muonBestTrack().pt() < 0.2)?2:0``;
    ``Muon_ptErr`` is that same track's ptError and ``Muon_pt`` its pT for the muons of NanoAOD
    (the real files of ``shared/data/real-nanoaod`` agree on every muon, 228 of 228).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(pt_err, dtype=np.float64) / np.asarray(pt, dtype=np.float64)
    return np.where(ratio < 0.2, 2, 0).astype(np.int32)


def remaining_energy_fraction(mu_ef: np.ndarray, ch_hef: np.ndarray, ne_hef: np.ndarray, ch_em_ef: np.ndarray) -> np.ndarray:
    """``Jet_neEmEF`` = max(1 − muEF − chHEF − neHEF − chEmEF, 0) (float32): the five energy fractions
    of a jet sum to 1 (they share its raw energy; the real files: 1 within their 6-bit rounding)."""
    rest = 1.0 - sum(np.asarray(x, dtype=np.float64) for x in (mu_ef, ch_hef, ne_hef, ch_em_ef))
    return np.maximum(rest, 0.0).astype(np.float32)


@dataclass(frozen=True)
class DerivedField:
    """A stored field computed by ``fn`` from other fields of the same object (``inputs``, without
    the collection prefix), as ``dtype``; float fields are then rounded to NanoAOD's precision."""

    inputs: tuple[str, ...]
    fn: Callable[..., np.ndarray]
    dtype: str


#: the derived fields by stored branch name
DERIVED: dict[str, DerivedField] = {
    "Muon_pdgId": DerivedField(("charge",), muon_pdg_id, "int32"),
    "Muon_looseId": DerivedField(("isPFcand", "isGlobal", "isTracker"), muon_loose_id, "bool"),
    "Muon_pfIsoId": DerivedField(("pfRelIso04_all",), muon_pf_iso_id, "uint8"),
    "Muon_tightCharge": DerivedField(("ptErr", "pt"), muon_tight_charge, "int32"),
    "Jet_neEmEF": DerivedField(("muEF", "chHEF", "neHEF", "chEmEF"), remaining_energy_fraction, "float32"),
    "Jet_btagDeepFlavCvL": DerivedField(("btagDeepFlavC", "btagDeepFlavB"), charm_vs_light, "float32"),
    "Jet_btagDeepFlavCvB": DerivedField(("btagDeepFlavC", "btagDeepFlavB"), charm_vs_b, "float32"),
}


def derive(collection: str, field: str, fields: Mapping[str, np.ndarray]) -> np.ndarray:
    """``<collection>_<field>`` from the object's other ``fields`` (:data:`DERIVED`), with its dtype
    and NanoAOD's stored precision (:data:`~.precision.NANOAOD_MANTISSA_BITS`)."""
    name = f"{collection}_{field}"
    if name not in DERIVED:
        raise KeyError(f"{name} is not a derived field; known: {', '.join(DERIVED)}")
    d = DERIVED[name]
    missing = [i for i in d.inputs if i not in fields]
    if missing:
        raise KeyError(f"{name} needs {', '.join(missing)} of the same object")
    out = np.asarray(d.fn(*(fields[i] for i in d.inputs))).astype(d.dtype)
    bits = NANOAOD_MANTISSA_BITS.get(name, 23)
    return round_mantissa(out, bits) if d.dtype == "float32" and bits < 23 else out
