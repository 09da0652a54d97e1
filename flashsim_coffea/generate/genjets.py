"""GenJets as CMS ``ak4GenJetsNoNu``: anti-kT R = 0.4 on the visible final state, with flavour.

* Inputs: every final-state particle except neutrinos (prompt muons stay *inside* GenJets, as
  in CMS, which is why analyses clean jets against muons).
* Clustering: ``fastjet`` multi-event ``ClusterSequence`` on awkward arrays (C++ loop), pT > 10.
* Flavour by ghost association: the last (weakly decaying) B and C hadrons and the partons
  entering hadronization (Pythia |status| 71–79) are added with their four-momenta scaled by
  ``GHOST_SCALE`` = 1e-18, so they do not change the jets but end up in one of them.
  ``hadronFlavour`` = 5 if a B ghost is clustered, else 4 if a C ghost, else 0;
  ``partonFlavour`` = signed pdgId of the hardest b ghost parton, else hardest c, else the
  hardest ghost parton, else 0 (CMS ``JetFlavourClustering``).
"""

from __future__ import annotations

import awkward as ak
import fastjet
import numpy as np
import vector

from .._quiet import quiet_stdout
from .genpart import FlatRecord, has_heavy_quark

vector.register_awkward()

GHOST_SCALE = 1e-18
R = 0.4
MIN_PT = 10.0

_REAL, _B, _C, _PARTON = 0, 1, 2, 3
_JET_DEF = None


def _jet_definition() -> "fastjet.JetDefinition":
    global _JET_DEF
    if _JET_DEF is None:
        _JET_DEF = fastjet.JetDefinition(fastjet.antikt_algorithm, R)
        with quiet_stdout():  # FastJet prints its banner on the first clustering
            fastjet.ClusterSequence(ak.Array([[{"px": 1.0, "py": 0.0, "pz": 0.0, "E": 1.0}]]), _JET_DEF).inclusive_jets()
    return _JET_DEF


def _weakly_decaying(rec: FlatRecord, heavy: np.ndarray) -> np.ndarray:
    """Heavy hadrons none of whose daughters is itself such a hadron (B* → Bγ keeps the B)."""
    has_heavy_child = np.zeros(heavy.size, dtype=bool)
    child_mom = rec.mother1[heavy & (rec.mother1 >= 0)]
    has_heavy_child[child_mom] = True
    return heavy & ~has_heavy_child


def cluster_genjets(rec: FlatRecord) -> dict[str, ak.Array]:
    """Jagged ``GenJet_{pt,eta,phi,mass,partonFlavour,hadronFlavour}`` for every event, pT-sorted."""
    apdg = np.abs(rec.pdg)
    neutrino = (apdg == 12) | (apdg == 14) | (apdg == 16)
    visible = (rec.status > 0) & ~neutrino
    b_ghost = _weakly_decaying(rec, has_heavy_quark(rec.pdg, 5))
    c_ghost = _weakly_decaying(rec, has_heavy_quark(rec.pdg, 4)) & ~b_ghost
    abs_status = np.abs(rec.status)
    parton_ghost = ((apdg <= 5) | (apdg == 21)) & (abs_status >= 71) & (abs_status <= 79) & (rec.pt > 0)

    kind = np.full(rec.pdg.size, -1, dtype=np.int8)
    kind[visible] = _REAL
    kind[parton_ghost] = _PARTON
    kind[c_ghost] = _C
    kind[b_ghost] = _B
    sel = kind >= 0
    scale = np.where(kind == _REAL, 1.0, GHOST_SCALE)[sel]

    event_of = np.repeat(np.arange(rec.counts.size), rec.counts)
    counts = np.bincount(event_of[sel], minlength=rec.counts.size)
    particles = ak.unflatten(
        ak.zip(
            {
                "px": rec.px[sel] * scale,
                "py": rec.py[sel] * scale,
                "pz": rec.pz[sel] * scale,
                "E": rec.e[sel] * scale,
            }
        ),
        counts,
    )
    labels = ak.unflatten(
        ak.zip({"kind": kind[sel], "pid": rec.pdg[sel], "pt": rec.pt[sel]}), counts
    )

    cs = fastjet.ClusterSequence(particles, _jet_definition())
    jets = cs.inclusive_jets(min_pt=MIN_PT)
    constituents = cs.constituent_index(min_pt=MIN_PT)

    # labels of each jet's constituents: index per event, then restore the jet level
    n_const = ak.flatten(ak.num(constituents, axis=2))
    jet_labels = labels[ak.flatten(constituents, axis=2)]
    jet_labels = ak.unflatten(ak.flatten(jet_labels), n_const)
    jet_labels = ak.unflatten(jet_labels, ak.num(constituents, axis=1))

    kinds = jet_labels.kind
    hadron_flavour = ak.where(
        ak.any(kinds == _B, axis=2), 5, ak.where(ak.any(kinds == _C, axis=2), 4, 0)
    )
    apid = abs(jet_labels.pid)
    # rank ghost partons: any b beats any c beats the rest; pT orders within a class (pT < 1e6)
    score = ak.where(
        kinds == _PARTON,
        jet_labels.pt + ak.where(apid == 5, 2e6, ak.where(apid == 4, 1e6, 0.0)),
        -1.0,
    )
    best = ak.argmax(score, axis=2, keepdims=True)
    parton_flavour = ak.fill_none(
        ak.firsts(ak.where(score[best] > 0, jet_labels.pid[best], 0), axis=2), 0
    )

    p4 = ak.zip(
        {"px": jets.px, "py": jets.py, "pz": jets.pz, "E": jets.E}, with_name="Momentum4D"
    )
    order = ak.argsort(p4.pt, axis=1, ascending=False)
    p4 = p4[order]
    return {
        "GenJet_pt": ak.values_astype(p4.pt, np.float32),
        "GenJet_eta": ak.values_astype(p4.eta, np.float32),
        "GenJet_phi": ak.values_astype(p4.phi, np.float32),
        "GenJet_mass": ak.values_astype(np.maximum(p4.mass, 0.0), np.float32),
        "GenJet_partonFlavour": ak.values_astype(parton_flavour[order], np.int32),
        "GenJet_hadronFlavour": ak.values_astype(hadron_flavour[order], np.uint8),
    }
