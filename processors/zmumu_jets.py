"""``ZmumuJetsProcessor``: Z→μμ + jets, written the way an analyst writes their own processor.

A second analysis beside VBF H→μμ, to show that FlashSim is a plug-in and not tied to one
analysis: it uses nothing of :mod:`flashsim_coffea.analysis`, only coffea idioms
(``PackedSelection``, ``Weights``, NanoEvents behaviour) and ``hist``; FlashSim enters through
its public API, one line::

    events = FlashSim().inject(events, folds=N)

Modes: ``"fullsim"`` reads the file's own reco ``Jet``/``Muon``; ``"flashsim"`` replaces them
with FlashSim's (simulated from ``GenPart``/``GenJet``). Both modes see the same events.

Per chunk:

1. **Gen skim** (before anything is simulated): ≥ 2 Gen muons (``GenPart`` status 1,
   |pdgId| 13) with pT > 15 GeV and |η| < 2.4; ``events = events[skim]``. In flashsim mode the
   skimmed events are then injected (N folds: each event N times, event-major, a ``fold`` field).
2. **Muons**: pT > 20 GeV, |η| < 2.4, ``mediumId``, ``pfRelIso04_all`` < 0.25; ≥ 2 of them, the
   leading two of opposite charge, 76 < m_μμ < 106 GeV.
3. **Jets**: pT > 30 GeV, |η| < 4.7, tight ``jetId`` (bit 2), **cleaned with NanoAOD's index
   links**: a jet is removed when ``Jet.muonIdx1``/``muonIdx2`` is the index of a selected muon in
   the event's ``Muon`` collection, or when it is the jet a selected muon points to
   (``Muon.jetIdx``). FullSim: the file's links; FlashSim: recomputed by ``inject`` with the ΔR <
   0.4 rule (:mod:`flashsim_coffea.nanoaod.links`). The local indices are used, never the
   global ``…G`` (which FlashSim removes).
4. **Histograms** (``Weight()`` storage; weights ``genWeight`` [· ``norm_weight`` when the run is
   normalised] via coffea ``Weights``): in the Z selection ``mass``, ``pt_mumu``, ``njets``
   (5 = ≥ 5), ``lead_jet_pt``, ``lead_jet_eta``; for every opposite-charge pair ``mass_os``
   (60–160 GeV); following ``matched_gen``: ``mu_response`` (pT/matched_gen.pT of the selected
   muons with a Gen match, every skimmed event), ``jet_response`` (2D: pT/matched_gen.pT of the
   cleaned jets vs GenJet pT, events with an opposite-charge pair) and the muon reconstruction+ID
   efficiency ``eff_num``/``eff_den`` vs Gen pT (Gen muons with pT > 20 GeV, |η| < 2.4;
   numerator: those that a selected reco muon's ``genPartIdx`` points to).

Folds (flashsim, N > 1): each event is injected N times and the histograms are
:class:`flashsim_coffea.hists.FoldHist` keyed by (run, luminosityBlock, event). They are filled
with the weights of the folded events as ``inject`` returns them: each copy carries
``genWeight``/N, and a FoldHist sums the weights of the folds of one event in one bin (content
Σ_ev w_ev·c_i/N), so a folded yield equals the unfolded one (tested: folds 3 vs 1). ``cutflow``
counts (event, fold) entries (N per Gen event, as ``VBFHmmProcessor``), ``cutflow_weighted`` Σ of
the per-copy weights (independent of N); ``sumw`` (Σ genWeight · norm) and ``nevents`` count the
Gen events read, before the skim.

Output per dataset (``events.metadata["dataset"]``)::

    {"hists": {name: hist.Hist | FoldHist}, "cutflow": {step: entries}, "cutflow_weighted": {step: Σ w},
     "sumw": Σ w, "nevents": events read}

:func:`closure` compares two outputs (fullsim vs flashsim) with χ²/ndf
(:func:`flashsim_coffea.stats.chi2_ndf`), :func:`hist_median` / :func:`hist_quantiles` read the
response histograms.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import hist
import numpy as np
from coffea import processor
from coffea.analysis_tools import PackedSelection, Weights

from flashsim_coffea.hists import fill_any, fold_hist_or_hist
from flashsim_coffea.stats import as_arrays, chi2_ndf

__all__ = ["ZmumuJetsProcessor", "MODES", "CUTFLOW_STEPS", "ANALYSIS_HISTS", "closure", "hist_quantiles", "hist_median"]

MODES = ("fullsim", "flashsim")

#: cut values (GeV)
GEN_SKIM = {"pt": 15.0, "abs_eta": 2.4, "n": 2}
MUON_CUTS = {"pt": 20.0, "abs_eta": 2.4, "iso": 0.25}
Z_WINDOW = (76.0, 106.0)
JET_CUTS = {"pt": 30.0, "abs_eta": 4.7, "jetId_bit": 2}
NJETS_MAX = 5  # njets histogram: the last bin holds ≥ 5

CUTFLOW_STEPS = ("all", "gen_skim", "two_muons", "opposite_charge", "z_mass", "one_jet")

#: the 1D histograms of the Z selection (compared by :func:`closure`)
ANALYSIS_HISTS = ("mass", "pt_mumu", "njets", "lead_jet_pt", "lead_jet_eta")


def _axes() -> dict[str, tuple[hist.axis.AxesMixin, ...]]:
    return {
        "mass": (hist.axis.Regular(60, *Z_WINDOW, name="mass", label=r"$m_{\mu\mu}$ [GeV]"),),
        "mass_os": (hist.axis.Regular(50, 60, 160, name="mass_os", label=r"$m_{\mu\mu}$ [GeV]"),),
        "pt_mumu": (hist.axis.Regular(30, 0, 150, name="pt_mumu", label=r"$p_T^{\mu\mu}$ [GeV]"),),
        "njets": (hist.axis.Integer(0, NJETS_MAX + 1, name="njets", label="cleaned jets", underflow=False, overflow=False),),
        "lead_jet_pt": (hist.axis.Regular(27, 30, 300, name="lead_jet_pt", label="leading jet $p_T$ [GeV]"),),
        "lead_jet_eta": (hist.axis.Regular(20, -5, 5, name="lead_jet_eta", label=r"leading jet $\eta$"),),
        "mu_response": (hist.axis.Regular(80, 0.9, 1.1, name="mu_response", label=r"muon $p_T / p_T^{gen}$"),),
        "jet_response": (hist.axis.Regular(50, 0, 2.5, name="jet_response", label=r"jet $p_T / p_T^{gen}$"),
                         hist.axis.Variable([10, 20, 30, 50, 100, 200, 1000], name="genjet_pt", label=r"GenJet $p_T$ [GeV]")),
        "eff_num": (hist.axis.Variable([20, 25, 30, 35, 40, 45, 50, 60, 80, 120, 200], name="gen_pt", label=r"Gen muon $p_T$ [GeV]"),),
        "eff_den": (hist.axis.Variable([20, 25, 30, 35, 40, 45, 50, 60, 80, 120, 200], name="gen_pt", label=r"Gen muon $p_T$ [GeV]"),),
    }


class ZmumuJetsProcessor(processor.ProcessorABC):
    """Z→μμ + jets (module docstring).

    mode: ``"fullsim"`` or ``"flashsim"``; folds: FlashSim upsampling N ≥ 1 (flashsim only);
    flashsim: the ``FlashSim`` to inject with (default ``FlashSim()``, the shipped models).
    """

    def __init__(self, mode: str = "fullsim", folds: int = 1, flashsim: Any = None):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if isinstance(folds, bool) or int(folds) != folds or folds < 1:
            raise ValueError(f"folds must be an integer ≥ 1, got {folds!r}")
        if folds > 1 and mode != "flashsim":
            raise ValueError("folds > 1 needs mode 'flashsim'")
        if flashsim is not None and mode != "flashsim":
            raise ValueError(f"a FlashSim was given but mode is {mode!r}")
        if mode == "flashsim" and flashsim is None:
            from flashsim_coffea import FlashSim

            flashsim = FlashSim()
        self.mode, self.folds, self.flashsim = mode, int(folds), flashsim

    def empty_output(self) -> dict:
        return {
            "hists": {name: fold_hist_or_hist(*axes, folds=self.folds) for name, axes in _axes().items()},
            "cutflow": {s: 0 for s in CUTFLOW_STEPS},
            "cutflow_weighted": {s: 0.0 for s in CUTFLOW_STEPS},
            "sumw": 0.0,
            "nevents": 0,
        }

    def process(self, events) -> dict:
        dataset = events.metadata["dataset"]
        norm = float(events.metadata.get("norm_weight", 1.0))
        out = self.empty_output()
        nfold = self.folds
        out["nevents"] = len(events)
        out["sumw"] = float(np.sum(ak.to_numpy(events.genWeight).astype(np.float64))) * norm
        out["cutflow"]["all"] = len(events) * nfold
        out["cutflow_weighted"]["all"] = out["sumw"]

        # 1. Gen skim, before anything is simulated
        events = events[gen_skim(events)]
        if len(events) == 0:
            return {dataset: out}
        if self.mode == "flashsim":
            events = self.flashsim.inject(events, folds=nfold)  # N copies per event, genWeight/N each
        weights = Weights(len(events), storeIndividual=False)
        weights.add("genWeight", ak.to_numpy(events.genWeight).astype(np.float64))
        if norm != 1.0:
            weights.add("norm", np.full(len(events), norm))
        w = weights.weight()
        key = tuple(ak.to_numpy(events[k]) for k in ("run", "luminosityBlock", "event"))  # the Gen event of each row
        out["cutflow"]["gen_skim"] = len(events)
        out["cutflow_weighted"]["gen_skim"] = float(np.sum(w))

        # 2.–3. muons, Z candidate, cleaned jets, cutflow
        sel = select(events)
        selection = PackedSelection()
        for step in CUTFLOW_STEPS[2:]:
            selection.add(step, sel[step])
        for i, step in enumerate(CUTFLOW_STEPS[2:]):
            m = selection.all(*CUTFLOW_STEPS[2:i + 3])
            out["cutflow"][step] = int(m.sum())
            out["cutflow_weighted"][step] = float(w[m].sum())
        z = selection.all("two_muons", "opposite_charge", "z_mass")
        zj = selection.all("two_muons", "opposite_charge", "z_mass", "one_jet")
        os_pair = selection.all("two_muons", "opposite_charge")
        hists = out["hists"]

        def fill(name, mask, **values):
            fill_any(hists[name], key=tuple(k[mask] for k in key), weight=w[mask], **values)

        # 4. analysis histograms
        mass = sel["mass"]
        fill("mass_os", os_pair, mass_os=mass[os_pair])
        fill("mass", z, mass=mass[z])
        fill("pt_mumu", z, pt_mumu=sel["pt_mumu"][z])
        fill("njets", z, njets=np.minimum(sel["njets"][z], NJETS_MAX))
        lead = ak.firsts(sel["jets"])
        fill("lead_jet_pt", zj, lead_jet_pt=ak.to_numpy(lead.pt[zj]))
        fill("lead_jet_eta", zj, lead_jet_eta=ak.to_numpy(lead.eta[zj]))

        # following matched_gen: muon response (selected muons, every skimmed row) ...
        sel_mu = sel["muons"]
        gen_of_mu = sel_mu.matched_gen
        has = ~ak.is_none(gen_of_mu, axis=1)
        _fill_objects(hists["mu_response"], key, w, has, mu_response=(sel_mu.pt / gen_of_mu.pt)[has])
        # ... jet response of the cleaned jets vs GenJet pT (events with an opposite-charge pair)
        os_jets = sel["jets"][os_pair]
        gen_of_jet = os_jets.matched_gen
        hasj = ~ak.is_none(gen_of_jet, axis=1)
        _fill_objects(hists["jet_response"], tuple(k[os_pair] for k in key), w[os_pair], hasj,
                      jet_response=(os_jets.pt / gen_of_jet.pt)[hasj], genjet_pt=gen_of_jet.pt[hasj])
        # ... and the muon reconstruction + ID efficiency: Gen muons in acceptance, and those a selected muon points to
        gen = events.GenPart
        in_acc = (gen.status == 1) & (abs(gen.pdgId) == 13) & (gen.pt > MUON_CUTS["pt"]) \
            & (abs(gen.eta) < MUON_CUTS["abs_eta"])
        found = _links_to(ak.local_index(gen, axis=1), sel_mu.genPartIdx)
        _fill_objects(hists["eff_den"], key, w, in_acc, gen_pt=gen.pt[in_acc])
        _fill_objects(hists["eff_num"], key, w, in_acc & found, gen_pt=gen.pt[in_acc & found])
        return {dataset: out}

    def postprocess(self, accumulator):
        return accumulator


def gen_skim(events) -> np.ndarray:
    """Events with ≥ 2 Gen muons (GenPart status 1, |pdgId| 13) with pT > 15 GeV and |η| < 2.4."""
    gen = events.GenPart
    gen_mu = (gen.status == 1) & (abs(gen.pdgId) == 13) & (gen.pt > GEN_SKIM["pt"]) & (abs(gen.eta) < GEN_SKIM["abs_eta"])
    return ak.to_numpy(ak.sum(gen_mu, axis=1) >= GEN_SKIM["n"])


def select(events) -> dict[str, Any]:
    """The object selection of one row per (event, fold): the selected ``muons`` (and their local
    ``muon_idx`` in ``events.Muon``), the Z candidate of the leading two (``mass``, ``pt_mumu``; −1
    without two muons), the cleaned ``jets`` and ``njets``, and the boolean masks of
    :data:`CUTFLOW_STEPS` from ``two_muons`` on (each on its own, not cumulative)."""
    muons = events.Muon
    good_mu = (muons.pt > MUON_CUTS["pt"]) & (abs(muons.eta) < MUON_CUTS["abs_eta"]) & muons.mediumId \
        & (muons.pfRelIso04_all < MUON_CUTS["iso"])
    sel_mu = muons[good_mu]
    sel_idx = ak.local_index(muons, axis=1)[good_mu]
    pair = ak.pad_none(sel_mu, 2, clip=True)
    mu1, mu2 = pair[:, 0], pair[:, 1]
    dimuon = mu1 + mu2
    mass = ak.to_numpy(ak.fill_none(dimuon.mass, -1.0))

    jets = events.Jet
    good_jet = (jets.pt > JET_CUTS["pt"]) & (abs(jets.eta) < JET_CUTS["abs_eta"]) \
        & ((jets.jetId & JET_CUTS["jetId_bit"]) > 0)
    # NanoAOD's index links, local indices (the global …G do not exist for FlashSim collections)
    overlap = _links_to(jets.muonIdx1, sel_idx) | _links_to(jets.muonIdx2, sel_idx) \
        | _links_to(ak.local_index(jets, axis=1), sel_mu.jetIdx)
    clean = jets[good_jet & ~overlap]
    njets = ak.to_numpy(ak.num(clean, axis=1))
    return {
        "muons": sel_mu, "muon_idx": sel_idx, "jets": clean, "good_jets": jets[good_jet], "njets": njets,
        "mass": mass, "pt_mumu": ak.to_numpy(ak.fill_none(dimuon.pt, -1.0)),
        "two_muons": ak.to_numpy(ak.num(sel_mu, axis=1) >= 2),
        "opposite_charge": ak.to_numpy(ak.fill_none(mu1.charge * mu2.charge < 0, False)),
        "z_mass": (mass > Z_WINDOW[0]) & (mass < Z_WINDOW[1]),
        "one_jet": njets >= 1,
    }


def _links_to(index, targets):
    """Per object of ``index`` (jagged local indices): whether it equals one of the event's
    ``targets`` (jagged local indices); −1 (no link) never matches a target."""
    index, targets = ak.fill_none(index, -1), ak.fill_none(targets, -2)
    return ak.any(index[:, :, np.newaxis] == targets[:, np.newaxis, :], axis=2)


def _fill_objects(h, key, weight, mask, **values) -> None:
    """Fill per-object ``values`` (jagged, already masked by ``mask``) with their event's key and weight."""
    w_obj = ak.broadcast_arrays(weight, mask)[0][mask]
    k_obj = tuple(ak.to_numpy(ak.flatten(ak.broadcast_arrays(k, mask)[0][mask])) for k in key)
    fill_any(h, key=k_obj, weight=ak.to_numpy(ak.flatten(w_obj)),
             **{n: ak.to_numpy(ak.flatten(v)) for n, v in values.items()})


# ------------------------------------------------------------------------------ reading the outputs
def closure(full: dict, flash: dict, names=ANALYSIS_HISTS) -> dict[str, dict[str, float]]:
    """χ²/ndf of FullSim vs FlashSim per histogram of one dataset's outputs (``out[dataset]``):
    χ² = Σ (a−b)²/(σa²+σb²) over bins with content (:func:`flashsim_coffea.stats.chi2_ndf`)."""
    res = {}
    for name in names:
        a, b = as_arrays(full["hists"][name]), as_arrays(flash["hists"][name])
        c = chi2_ndf(a.values, a.variances, b.values, b.variances)
        res[name] = {"chi2": c.chi2, "ndf": c.ndf, "chi2_ndf": c.per_ndf}
    return res


def hist_quantiles(h, qs) -> np.ndarray:
    """Quantiles of a 1D histogram, linear within bins; flow bins count in the total, and a quantile
    that falls into one is its edge. NaN for an empty histogram."""
    ax = h.axes[0]
    edges = np.asarray(ax.edges, dtype=np.float64)
    under, over = int(bool(ax.traits.underflow)), int(bool(ax.traits.overflow))
    values = np.clip(np.asarray(h.values(flow=True), dtype=np.float64), 0, None)
    qs = np.atleast_1d(np.asarray(qs, dtype=np.float64))
    total = values.sum()
    if total <= 0:
        return np.full(qs.shape, np.nan)
    lo = np.concatenate([[edges[0]] * under, edges[:-1], [edges[-1]] * over])
    hi = np.concatenate([[edges[0]] * under, edges[1:], [edges[-1]] * over])
    frac = values / total
    cum = np.cumsum(frac)
    i = np.minimum(np.searchsorted(cum, qs), len(values) - 1)  # the bin holding each quantile
    within = np.where(frac[i] > 0, (qs - (cum[i] - frac[i])) / np.where(frac[i] > 0, frac[i], 1), 0.5)
    return lo[i] + np.clip(within, 0, 1) * (hi[i] - lo[i])


def hist_median(h) -> float:
    """The median of a 1D histogram (:func:`hist_quantiles`)."""
    return float(hist_quantiles(h, [0.5])[0])
