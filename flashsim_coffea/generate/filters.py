"""Gen-level event filters (``flashsim generate --filter``).

``vbf``: a loose VBF dimuon topology, looser than the reco selection of the VBF H→μμ
analysis so that the filter does not bias it:

* two opposite-charge final-state muons with pT > 15 GeV, |η| < 2.5 (the two leading ones),
  m_μμ > 100 GeV;
* two GenJets with pT > 20 GeV, |η| < 4.7, ΔR > 0.4 from both muons, whose leading pair has
  m_jj > 300 GeV and |Δη_jj| > 2.0 (reco cuts: 35/25 GeV, m_jj > 400, |Δη| > 2.5).

``vbf_window``: ``vbf`` with the dimuon mass also below 160 GeV, i.e. 100 < m_μμ < 160 GeV around
the analysis' mass window (signal region 115–135, sidebands 110–150 GeV; the Gen–reco mass
resolution is ~2 %): for backgrounds whose m_μμ reaches far above it (dimuon tt̄), so that the
generated events are spent where the analysis looks.
"""

from __future__ import annotations

import awkward as ak
import numpy as np
import vector

from flashsim_coffea.nanoaod.pairs import count_per_event

from .genpart import FlatRecord

vector.register_awkward()

FILTERS = ("vbf", "vbf_window")

#: Gen m_μμ range (GeV) of each filter
MASS_RANGE = {"vbf": (100.0, np.inf), "vbf_window": (100.0, 160.0)}

#: measured fraction of Pythia events that pass a filter, per (process, filter): from the bundled
#: samples' metadata (dy 90,366 tried for 1,200, ewk_mumujj 2,852 for 1,000, ttbar_mumu vbf_window 58,906
#: for 1,500) and a tt̄ run (`flashsim generate ttbar --filter vbf -n 10`: ~6e-4). Used only to warn before a long run.
MEASURED_EFFICIENCY = {("dy", "vbf"): 0.0133, ("ewk_mumujj", "vbf"): 0.35, ("ttbar", "vbf"): 6e-4,
                       ("ttbar_mumu", "vbf_window"): 0.0255}

#: Pythia events per second and worker on the development machine (benchmarks/README.md)
PYTHIA_RATE = 170.0


def expected_cost(process: str, filter_name: str | None, n_events: int, workers: int = 1) -> str | None:
    """A one-line warning when a filter keeps < 5 % of the events: how many Pythia events and
    about how long ``n_events`` will take (None when there is nothing to warn about)."""
    eff = MEASURED_EFFICIENCY.get((process, filter_name)) if filter_name else None
    if eff is None or eff >= 0.05:
        return None
    tried = n_events / eff
    minutes = tried / (PYTHIA_RATE * max(workers, 1)) / 60.0
    return (f"the {filter_name!r} filter keeps about {eff:.1e} of {process} events: {n_events} events need about "
            f"{tried:,.0f} Pythia events (~{minutes:.0f} min with {workers} worker(s)); "
            "the progress bar moves once per block of accepted events")


def vbf_filter(rec: FlatRecord, genjets: dict[str, ak.Array], mass_range: tuple[float, float] = MASS_RANGE["vbf"]) -> np.ndarray:
    """Boolean mask of events passing the loose VBF dimuon topology with the leading muon pair's
    mass in ``mass_range`` (module docstring)."""
    eta = rec.eta
    sel = (rec.status > 0) & (np.abs(rec.pdg) == 13) & (rec.pt > 15.0) & (np.abs(eta) < 2.5)
    counts = count_per_event(sel, rec.counts)
    mu = ak.unflatten(
        ak.zip(
            {"pt": rec.pt[sel], "eta": eta[sel], "phi": rec.phi[sel], "mass": rec.m[sel], "charge": -np.sign(rec.pdg[sel])},
            with_name="Momentum4D",
        ),
        counts,
    )
    mu = mu[ak.argsort(mu.pt, axis=1, ascending=False)]
    two_mu = ak.num(mu) >= 2
    mu2 = ak.pad_none(mu, 2, axis=1)
    m1, m2 = mu2[:, 0], mu2[:, 1]
    mass = (m1 + m2).mass
    mumu_ok = ak.fill_none(two_mu & (m1.charge != m2.charge) & (mass > mass_range[0]) & (mass < mass_range[1]), False)

    jets = ak.zip(
        {k: genjets[f"GenJet_{k}"] for k in ("pt", "eta", "phi", "mass")}, with_name="Momentum4D"
    )
    jets = jets[(jets.pt > 20.0) & (abs(jets.eta) < 4.7)]
    pairs = ak.cartesian({"j": jets, "m": mu[:, :2]}, nested=True)
    clean = ak.all(pairs.j.deltaR(pairs.m) > 0.4, axis=2)
    jets = ak.pad_none(jets[clean], 2, axis=1)
    j1, j2 = jets[:, 0], jets[:, 1]
    jj_ok = ak.fill_none(((j1 + j2).mass > 300.0) & (abs(j1.eta - j2.eta) > 2.0), False)
    return ak.to_numpy(mumu_ok & jj_ok)


def apply_filter(name: str | None, rec: FlatRecord, genjets: dict[str, ak.Array]) -> np.ndarray:
    if name is None:
        return np.ones(rec.counts.size, dtype=bool)
    if name in MASS_RANGE:
        return vbf_filter(rec, genjets, MASS_RANGE[name])
    raise ValueError(f"unknown filter {name!r}; known: {', '.join(FILTERS)}")
