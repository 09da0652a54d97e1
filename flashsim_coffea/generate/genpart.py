"""Pythia 8 event record → NanoAOD ``GenPart`` (status, 15 statusFlags bits, pruning, mothers).

Works on a whole batch at once: the Pythia particle lists of all events are flattened, their
mother/daughter pointers shifted to global indices, and genealogy questions are answered by
pointer jumping (:mod:`.ancestry`). No Python loop over events or particles.

NanoAOD conventions reproduced (CMS ``GenStatusFlags`` / ``MCTruthHelper``, simplified where
noted):

* ``status``: 1 for final-state particles, 2 for decayed hadrons and leptons (Pythia
  |status| 91–99 daughters), otherwise |Pythia status| (21–29 hard process, 4x ISR, 5x FSR,
  6x beam remnants, 7x partons entering hadronization).
* copies: a particle is a *copy* of its primary mother when both have the same pdgId;
  ``isFirstCopy`` (bit 12) = not a copy, ``isLastCopy`` (bit 13) = no daughter is a copy of it.
* ``isLastCopyBeforeFSR`` (14): the first member of a copy chain that branches (has ≥ 2
  daughters, one of them its copy), or the last copy if the chain never branches.
* ``isPrompt`` (0): no decayed hadron or tau among the ancestors.
  ``isDecayedLeptonHadron`` (1): a hadron or lepton with decay products.
  ``isTauDecayProduct`` (2) / ``isPromptTauDecayProduct`` (3): a tau among the ancestors
  (that tau prompt). ``isDirectTauDecayProduct`` (4) / ``isDirectPromptTauDecayProduct`` (5):
  the mother is that tau. ``isDirectHadronDecayProduct`` (6): the mother is a hadron.
* ``isHardProcess`` (7): Pythia |status| 21–29. ``fromHardProcess`` (8): the first copy of the
  particle is in the hard process. ``isHardProcessTauDecayProduct`` (9) /
  ``isDirectHardProcessTauDecayProduct`` (10): the (direct) tau parent is fromHardProcess.
  ``fromHardProcessBeforeFSR`` (11): fromHardProcess and isLastCopyBeforeFSR.

Pruning keeps what NanoAOD's ``finalGenParticles`` keeps, in spirit: hard-process particles,
first and last copies of t/W/Z/H and of leptons, every final-state lepton and neutrino, last
copies of B and C hadrons, decay products of prompt taus, last copies from the hard process,
partons entering hadronization with pT > 15 GeV, and the mother of every kept lepton.
``genPartIdxMother`` points to the nearest *kept* ancestor (−1 if none), as in NanoAOD.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import awkward as ak
import numpy as np

from .ancestry import nearest_marked_ancestor, root

#: ROOT's PseudoRapidity for pT = 0: ±(22756 + |pz|); NanoAOD stores that for incoming partons.
_ETA_PT0 = 22756.0

BIT = {
    "isPrompt": 0,
    "isDecayedLeptonHadron": 1,
    "isTauDecayProduct": 2,
    "isPromptTauDecayProduct": 3,
    "isDirectTauDecayProduct": 4,
    "isDirectPromptTauDecayProduct": 5,
    "isDirectHadronDecayProduct": 6,
    "isHardProcess": 7,
    "fromHardProcess": 8,
    "isHardProcessTauDecayProduct": 9,
    "isDirectHardProcessTauDecayProduct": 10,
    "fromHardProcessBeforeFSR": 11,
    "isFirstCopy": 12,
    "isLastCopy": 13,
    "isLastCopyBeforeFSR": 14,
}


def is_hadron(pdg: np.ndarray) -> np.ndarray:
    """Hadrons by PDG numbering: |id| ≥ 100 with a non-zero quark content digit, not 1xxxxxx SUSY etc."""
    a = np.abs(pdg)
    return (a >= 100) & (a < 1_000_000) & (((a // 10) % 10) > 0)


def has_heavy_quark(pdg: np.ndarray, q: int) -> np.ndarray:
    """Hadron containing quark q (4 = c, 5 = b) — PDG digits n_q1 n_q2 n_q3 (mesons: n_q2 n_q3)."""
    a = np.abs(pdg) % 10_000
    return is_hadron(pdg) & (((a // 1000) % 10 == q) | ((a // 100) % 10 == q) | ((a // 10) % 10 == q))


@dataclass
class FlatRecord:
    """The particles of a batch of events, flattened, with global pointers (−1 = none)."""

    counts: np.ndarray  # particles per event
    pdg: np.ndarray
    status: np.ndarray  # Pythia status (signed)
    mother1: np.ndarray
    mother2: np.ndarray
    daughter1: np.ndarray
    daughter2: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    m: np.ndarray

    @classmethod
    def from_pythia(cls, prt: ak.Array) -> "FlatRecord":
        """From ``pythia.nextBatch(n).prt`` (local pointers, 0 = the event's system entry)."""
        counts = ak.to_numpy(ak.num(prt, axis=1)).astype(np.int64)
        offsets = np.repeat(np.concatenate([[0], np.cumsum(counts)[:-1]]), counts)

        def ptr(field: str) -> np.ndarray:
            local = ak.to_numpy(ak.flatten(prt[field])).astype(np.int64)
            return np.where(local > 0, local + offsets, -1)

        def col(field: str, sub: str | None = None) -> np.ndarray:
            x = prt[field] if sub is None else prt[field][sub]
            return ak.to_numpy(ak.flatten(x))

        return cls(
            counts=counts,
            pdg=col("id").astype(np.int32),
            status=col("status").astype(np.int32),
            mother1=ptr("mother1"),
            mother2=ptr("mother2"),
            daughter1=ptr("daughter1"),
            daughter2=ptr("daughter2"),
            px=col("p", "px"),
            py=col("p", "py"),
            pz=col("p", "pz"),
            e=col("p", "e"),
            m=col("m"),
        )

    @functools.cached_property
    def pt(self) -> np.ndarray:
        return np.hypot(self.px, self.py)

    @functools.cached_property
    def eta(self) -> np.ndarray:
        """Pseudorapidity; ±(22756 + |pz|) for pT = 0 as ROOT (and so NanoAOD) stores it."""
        pt = self.pt
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = np.arcsinh(self.pz / pt)
        return np.where(pt > 0, eta, np.sign(self.pz) * (_ETA_PT0 + np.abs(self.pz)))

    @functools.cached_property
    def phi(self) -> np.ndarray:
        return np.arctan2(self.py, self.px)


def nanoaod_status(rec: FlatRecord) -> np.ndarray:
    """1 final state; 2 decayed hadron/lepton; else |Pythia status| (see module docstring)."""
    d1 = rec.daughter1
    d1_status = np.where(d1 >= 0, np.abs(rec.status[np.maximum(d1, 0)]), 0)
    decayed = (rec.status < 0) & (d1 >= 0) & (d1_status >= 91) & (d1_status <= 99)
    return np.where(rec.status > 0, 1, np.where(decayed, 2, np.abs(rec.status))).astype(np.int32)


def status_flags(rec: FlatRecord, status: np.ndarray) -> np.ndarray:
    """The 15 NanoAOD ``statusFlags`` bits for every particle (int32 bit mask)."""
    n = rec.pdg.size
    pdg, apdg = rec.pdg, np.abs(rec.pdg)
    mom = rec.mother1
    safe_mom = np.maximum(mom, 0)
    mom_pdg = np.where(mom >= 0, pdg[safe_mom], 0)

    # copy chains: same pdgId as the primary mother
    is_copy = (mom >= 0) & (mom_pdg == pdg)
    up = np.where(is_copy, mom, -1)
    has_copy_child = np.zeros(n, dtype=bool)
    has_copy_child[up[up >= 0]] = True
    first_copy = ~is_copy
    last_copy = ~has_copy_child
    d1, d2 = rec.daughter1, rec.daughter2  # Pythia: d1<d2 a range; d2<d1 two; d2 = d1 or none: one
    n_daughters = np.where(d1 < 0, 0, np.where(d2 > d1, d2 - d1 + 1, np.where((d2 >= 0) & (d2 != d1), 2, 1)))
    branches = has_copy_child & (n_daughters >= 2)
    branched_before = nearest_marked_ancestor(up, branches) >= 0
    last_before_fsr = ~branched_before & (branches | last_copy)

    hadron = is_hadron(pdg)
    lepton = (apdg >= 11) & (apdg <= 18)
    decayed = (status == 2) & (hadron | lepton)
    decayed_hadron = decayed & hadron
    decayed_tau = decayed & (apdg == 15)

    anc_had = nearest_marked_ancestor(mom, decayed_hadron)
    anc_tau = nearest_marked_ancestor(mom, decayed_tau)
    prompt = (anc_had < 0) & (anc_tau < 0)

    hard = (np.abs(rec.status) >= 21) & (np.abs(rec.status) <= 29)
    from_hard = hard[root(up)]

    tau_idx = np.maximum(anc_tau, 0)
    tau_prod = anc_tau >= 0
    direct_tau = (mom >= 0) & decayed_tau[safe_mom]
    direct_had = (mom >= 0) & decayed_hadron[safe_mom]

    bits = [
        (prompt, 0),
        (decayed, 1),
        (tau_prod, 2),
        (tau_prod & prompt[tau_idx], 3),
        (direct_tau, 4),
        (direct_tau & prompt[safe_mom], 5),
        (direct_had, 6),
        (hard, 7),
        (from_hard, 8),
        (tau_prod & from_hard[tau_idx], 9),
        (direct_tau & from_hard[safe_mom], 10),
        (from_hard & last_before_fsr, 11),
        (first_copy, 12),
        (last_copy, 13),
        (last_before_fsr, 14),
    ]
    flags = np.zeros(n, dtype=np.int32)
    for mask, bit in bits:
        flags |= mask.astype(np.int32) << bit
    return flags


def keep_mask(rec: FlatRecord, status: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Which particles the pruned NanoAOD ``GenPart`` keeps (see module docstring)."""
    apdg = np.abs(rec.pdg)
    first = (flags >> BIT["isFirstCopy"]) & 1 == 1
    last = (flags >> BIT["isLastCopy"]) & 1 == 1
    from_hard = (flags >> BIT["fromHardProcess"]) & 1 == 1
    hard = (flags >> BIT["isHardProcess"]) & 1 == 1
    charged_lep = (apdg == 11) | (apdg == 13) | (apdg == 15)
    neutrino = (apdg == 12) | (apdg == 14) | (apdg == 16)
    vip = (apdg == 6) | (apdg == 23) | (apdg == 24) | (apdg == 25)
    heavy_hadron = ((apdg > 400) & (apdg < 600)) | ((apdg > 4000) & (apdg < 6000))
    parton = (apdg <= 5) | (apdg == 21)
    pt = rec.pt
    keep = (
        hard
        | ((vip | charged_lep) & (first | last))
        | ((status == 1) & (charged_lep | neutrino))
        | (heavy_hadron & last)
        | (from_hard & last)
        | (parton & (np.abs(rec.status) >= 71) & (np.abs(rec.status) <= 79) & (pt > 15.0))
    )
    # decay products of prompt taus (NanoAOD "keep++" of taus), excluding photons from pi0
    prompt_tau_prod = (flags >> BIT["isPromptTauDecayProduct"]) & 1 == 1
    keep |= prompt_tau_prod & ((status == 1) | (status == 2)) & (apdg != 22)
    # the mother of every kept lepton ("+keep")
    lep_kept = keep & (charged_lep | neutrino) & (rec.mother1 >= 0)
    keep[rec.mother1[lep_kept]] = True
    # never the beams (|pz| ~ 6.5 TeV protons) or the event-system entry
    keep &= ~((apdg == 2212) & (np.abs(rec.pz) > 1000.0)) & (apdg != 90)
    return keep


def build_genpart(rec: FlatRecord) -> dict[str, ak.Array]:
    """Flat record → jagged NanoAOD ``GenPart_*`` branches (pruned, mothers remapped)."""
    status = nanoaod_status(rec)
    flags = status_flags(rec, status)
    keep = keep_mask(rec, status, flags)

    kept_mother = nearest_marked_ancestor(rec.mother1, keep)
    new_global = np.cumsum(keep) - 1  # position among kept particles (global)
    event_of = np.repeat(np.arange(rec.counts.size), rec.counts)
    kept_counts = np.bincount(event_of[keep], minlength=rec.counts.size)
    kept_offsets = np.concatenate([[0], np.cumsum(kept_counts)[:-1]])
    mother_local = np.where(
        kept_mother >= 0, new_global[np.maximum(kept_mother, 0)] - kept_offsets[event_of], -1
    )

    def jag(x: np.ndarray, dtype) -> ak.Array:
        return ak.unflatten(np.asarray(x[keep], dtype=dtype), kept_counts)

    return {
        "GenPart_pt": jag(rec.pt, np.float32),
        "GenPart_eta": jag(rec.eta, np.float32),
        "GenPart_phi": jag(rec.phi, np.float32),
        "GenPart_mass": jag(rec.m, np.float32),
        "GenPart_pdgId": jag(rec.pdg, np.int32),
        "GenPart_status": jag(status, np.int32),
        "GenPart_statusFlags": jag(flags, np.int32),
        "GenPart_genPartIdxMother": jag(mother_local, np.int32),
    }
