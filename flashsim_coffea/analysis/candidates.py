"""Per-event analysis candidates: the selected objects as flat (one row per event) arrays.

``build_candidates(muons, jets)`` applies the object selection of
:mod:`flashsim_coffea.analysis.selection` (masks on the coffea collections, pT-ordered) and
keeps, for every event, the two leading selected muons (μ1, μ2) and jets (j1, j2) as flat
float64 numpy arrays (NaN where an event has fewer), plus the counts needed by the event
selection. Everything downstream (variables, DNN, histogram filling) works on these flat
arrays. The jets' quark–gluon score is the version policy's ``qgScore`` (:mod:`.objects`).
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from .selection import selected_jets, selected_muons

__all__ = ["Candidates", "build_candidates"]


def _leading(objs: ak.Array, n: int, fields: tuple[str, ...]) -> list[dict[str, np.ndarray]]:
    """The n leading objects' fields as float64 numpy arrays (NaN where absent)."""
    padded = ak.pad_none(objs, n, axis=1, clip=True)
    out = []
    for i in range(n):  # n = 2: a loop over object slots, not over events
        o = padded[:, i]
        out.append({f: ak.to_numpy(ak.fill_none(ak.values_astype(o[f], np.float64), np.nan)) for f in fields})
    return out


@dataclass
class Candidates:
    """Flat per-event view of the selected objects (see module docstring)."""

    n_muons: np.ndarray  # number of selected muons
    n_jets: np.ndarray  # number of selected (and muon-cleaned) jets
    mu1: dict[str, np.ndarray]
    mu2: dict[str, np.ndarray]
    j1: dict[str, np.ndarray]
    j2: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.n_muons)


def build_candidates(muons: ak.Array, jets: ak.Array) -> Candidates:
    """Select muons and jets (jets cleaned against *selected* muons) and keep the two leading of each."""
    sel_mu = selected_muons(muons)
    sel_jet = selected_jets(jets, sel_mu)
    mu1, mu2 = _leading(sel_mu, 2, ("pt", "eta", "phi", "mass", "charge", "ptErr", "pfRelIso04_all"))
    j1, j2 = _leading(sel_jet, 2, ("pt", "eta", "phi", "mass", "qgScore"))
    return Candidates(
        n_muons=ak.to_numpy(ak.num(sel_mu, axis=1)),
        n_jets=ak.to_numpy(ak.num(sel_jet, axis=1)),
        mu1=mu1,
        mu2=mu2,
        j1=j1,
        j2=j2,
    )
