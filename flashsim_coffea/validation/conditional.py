"""Conditional validation tables with noise floors, in the bins where analyses cut.

Each table bins the objects by Gen quantities (conditioning columns) and computes, per cell,
one or more quantities q on each sample of :class:`~.samples.ValidationSamples`:

* ``flash``     = (1/K) Σ_k q(F_k)             FlashSim, mean over its K folds (on R's Gen objects);
* ``ref``       = q(R)                         the reference;
* ``floor``     = (1/K) Σ_k |q(R′_k) − q(R)|   the noise floor (K independent reference′ draws);
* ``deviation`` = |flash − ref|;
* ``ratio``     = deviation / floor            (0/0 → 1, x/0 → inf);
* ``flagged``   = ratio > :data:`FLAG_RATIO` (2) — except in cells with fewer than
  :data:`MIN_COUNT` (50) reference objects, marked ``low_stats`` and never flagged.

Tables (muons spec / jets spec):

* ``muon_response``: prompt muons (Gen ``statusFlags`` isPrompt), pT response = reco pT / Gen pT
  (``ptRatio``): ``median``, ``w68`` and ``w95`` = half the width of the central 68 % / 95 %
  interval, in Gen pT × Gen |η| bins;
* ``jet_response``: matched jets, the same three quantities of reco pT / GenJet pT in GenJet
  pT × |η| bins;
* ``btag_eff``: fraction of jets with ``btagDeepFlavB`` > the DeepJet loose / medium / tight
  working points 0.0494 / 0.2770 / 0.7264 (the 2018 UL values of the CMS BTV POG; used here as
  representative cuts), per ``hadronFlavour`` (b = 5, c = 4, light = 0) × GenJet pT;
* ``muon_isolation``: prompt muons with Gen pT > 20 GeV, ``pfRelIso04_all``: ``median`` and the
  pass rates of the tight (< 0.15) and loose (< 0.25, the VBF H→μμ selection's) cuts, in bins of
  the Gen activity around the muon A/pT = max(pT(closest GenJet within ΔR < 0.4) − pT_μ, 0)/pT_μ
  (from the conditioning's closest-GenJet and muon pT) × Gen pT — isolation is where a muon
  model can match every marginal and still select the wrong muons;
* ``jet_id``: pass rate of the loose pile-up ID as analyses apply it (``puId`` ≥ 4, required
  only below reco pT 50 GeV: a jet above passes) and of the tight jet ID (``jetId`` bit 1),
  in GenJet pT × |η| bins;
* ``muon_id_iso``: all muons (prompt and not), the working points analyses select with: tight ID
  (``tightId``), tight PF isolation (``pfIsoId`` ≥ 4, i.e. pfRelIso04_all < 0.15: NanoAOD's
  derivation, :func:`~flashsim_coffea.nanoaod.derived.muon_pf_iso_id`), both together, global
  high-pT ID (``highPtId`` = 2) and mini-isolation < 0.1, in Gen pT × |η| bins;
* ``jet_energy``: matched jets, the median ``rawFactor`` (raw pT = pT·(1 − rawFactor)) and the pass rate
  of the energy-fraction part of the Run-3 tight jet ID (|η| ≤ 2.6: neHEF < 0.99, neEmEF < 0.9,
  chHEF > 0.01; 2.6–2.7: neHEF < 0.9, neEmEF < 0.99; 2.7–3: neHEF < 0.99; > 3: neEmEF < 0.4, with
  neEmEF the fraction the others leave, :func:`~flashsim_coffea.nanoaod.derived.remaining_energy_fraction`),
  in GenJet pT × |η| bins.

Jets of every sample are compared above the NanoAOD reco threshold (reco pT > 15 GeV, which R
and R′ satisfy by construction and FlashSim applies at injection), so that the threshold does
not show up as a FlashSim mis-modelling in the lowest bins.

Reconstruction efficiency (:func:`efficiency_table`, from events rather than matched samples):
the fraction of the spec's Gen objects (jets: GenJets with |η| < 5; muons: status-1 Gen muons
with |η| < 2.4, pT > 3 GeV — the FlashSim acceptance) that a reco object points at
(``Jet_genJetIdx`` / ``Muon_genPartIdx``). R = the events' own reco, R′_k = the reference re-drawn
on the same Gen events with seed k (:func:`~flashsim_coffea.reference.resimulate.resimulate_events`),
F_k = fold k of FlashSim's injected collection on the same events. Tables (same cell format):

* ``jet_efficiency``: GenJet pT × |η|; ``jet_efficiency_flavour``: hadronFlavour b/c/light ×
  GenJet pT; ``jet_efficiency_muon``: "a status-1 Gen muon within ΔR < 0.4" yes/no × GenJet pT;
* ``muon_efficiency``: Gen pT × |η|; ``muon_efficiency_prompt``: isPrompt yes/no × Gen pT.

Public API::

    tables = conditional_tables(spec, samples)        # {"muon_response": {...}, ...}
    eff = efficiency_table("jets", events, FlashSim(jets=..., muons=False, pileup_jets=False), ref_seeds)
    lines = conditional_markdown({**tables, **eff})    # index.md section
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from flashsim_coffea.nanoaod.derived import derive, muon_pf_iso_id
from flashsim_coffea.objects import ObjectSpec

from .samples import ValidationSamples

__all__ = ["BTAG_WP", "EFFICIENCY_TABLES", "FLAG_RATIO", "MIN_COUNT", "TABLES", "Table", "conditional_tables",
           "conditional_markdown", "cell_quantities", "efficiency_table", "efficiency_table_from_draws"]

#: a cell is flagged when |q(F) − q(R)| exceeds this many times its noise floor
FLAG_RATIO = 2.0
#: cells with fewer reference objects are "low stats" and never flagged
MIN_COUNT = 50
#: DeepJet (btagDeepFlavB) working points, 2018 (UL18) values of the CMS BTV POG
BTAG_WP = {"L": 0.0494, "M": 0.2770, "T": 0.7264}
#: loose pile-up ID: puId ≥ 4, applied to jets below this reco pT (GeV)
PUID_MAX_PT = 50.0
#: ``Muon_pfIsoId`` value of the tight PF isolation working point (pfRelIso04_all < 0.15)
PF_ISO_TIGHT = 4

INF = float("inf")


def _median(c: dict) -> float:
    return float(np.median(c["ptRatio"]))


def _half_width(frac: float) -> Callable[[dict], float]:
    lo, hi = 50 * (1 - frac), 50 * (1 + frac)

    def q(c: dict) -> float:
        a, b = np.percentile(c["ptRatio"], [lo, hi])
        return float(b - a) / 2

    return q


def _btag(wp: float) -> Callable[[dict], float]:
    return lambda c: float(np.mean(c["btagDeepFlavB"] > wp))


def _puid(c: dict) -> float:
    return float(np.mean((c["puId"] >= 4) | (c["reco_pt"] >= PUID_MAX_PT)))


def _jetid_tight(c: dict) -> float:
    return float(np.mean((np.rint(c["jetId"]).astype(np.int64) & 2) > 0))


def _pf_iso_tight(c: dict) -> np.ndarray:
    return muon_pf_iso_id(c["pfRelIso04_all"]) >= PF_ISO_TIGHT


MUON_ID_ISO = {
    "tightId": lambda c: float(np.mean(c["tightId"] > 0.5)),
    "pfIsoId_tight": lambda c: float(np.mean(_pf_iso_tight(c))),
    "tight_and_iso": lambda c: float(np.mean((c["tightId"] > 0.5) & _pf_iso_tight(c))),
    "highPtId_global": lambda c: float(np.mean(np.rint(c["highPtId"]) == 2)),
    "miniIso_0.1": lambda c: float(np.mean(c["miniPFRelIso_all"] < 0.1)),
}


def _energy_id(c: dict) -> float:
    """Pass rate of the energy-fraction criteria of the Run-3 tight jet ID (module docstring)."""
    ne_em = derive("Jet", "neEmEF", c)  # as stored: NanoAOD's remainder, 6-bit
    a = np.abs(c["GenJet_eta"] + c["etaMinusGen"])  # the reco |η|
    ok = np.select(
        [a <= 2.6, a <= 2.7, a <= 3.0],
        [(c["neHEF"] < 0.99) & (ne_em < 0.9) & (c["chHEF"] > 0.01), (c["neHEF"] < 0.9) & (ne_em < 0.99),
         c["neHEF"] < 0.99],
        ne_em < 0.4)
    return float(np.mean(ok))


JET_ENERGY = {"rawFactor_median": lambda c: float(np.median(c["rawFactor"])), "energy_id": _energy_id}


RESPONSE = {"median": _median, "w68": _half_width(0.68), "w95": _half_width(0.95)}


def _iso_pass(cut: float) -> Callable[[dict], float]:
    return lambda c: float(np.mean(c["pfRelIso04_all"] < cut))


ISOLATION = {"median": lambda c: float(np.median(c["pfRelIso04_all"])), "pass_0.15": _iso_pass(0.15),
             "pass_0.25": _iso_pass(0.25)}


@dataclass(frozen=True)
class Table:
    """A conditional table: cells = product of the bins, quantities computed per cell."""

    name: str
    spec: str
    title: str
    #: (column, edges, absolute value?) per binning axis; a column is a conditioning name
    bins: tuple[tuple[str, tuple[float, ...], bool], ...]
    quantities: dict[str, Callable[[dict], float]]
    #: extra selection on the columns (e.g. prompt muons), described in ``selection``
    select: Callable[[dict], np.ndarray] | None = None
    selection: str = ""
    #: exact values (instead of edges) for a categorical axis: {column: {label: values}}
    categories: dict[str, dict[str, tuple[float, ...]]] = field(default_factory=dict)
    #: target columns the quantities read beyond the always-present ones (a model without them skips the table)
    needs: tuple[str, ...] = ()


MU_PT = (5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 70.0, 100.0, 200.0, INF)
MU_ETA = (0.0, 0.9, 1.2, 2.1, 2.4)
JET_PT = (15.0, 20.0, 30.0, 50.0, 100.0, 200.0, INF)
#: Gen activity around a muon, A/pT (see ``muon_isolation``)
ACTIVITY = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5, INF)
JET_ETA = (0.0, 1.3, 2.5, 3.0, 5.0)

TABLES: tuple[Table, ...] = (
    Table("muon_response", "muons", "Prompt-muon pT response (reco pT / Gen pT)",
          (("GenMuon_pt", MU_PT, False), ("GenMuon_eta", MU_ETA, True)), RESPONSE,
          select=lambda c: c["GenMuon_isPrompt"] > 0.5, selection="Gen statusFlags isPrompt"),
    Table("muon_isolation", "muons", "Prompt-muon isolation (pfRelIso04_all: median, pass < 0.15 / < 0.25) vs "
          "the Gen activity around the muon A/pT", (("GenMuon_activity", ACTIVITY, False), ("GenMuon_pt", (20.0, 40.0, INF), False)),
          ISOLATION, select=lambda c: c["GenMuon_isPrompt"] > 0.5,
          selection="Gen statusFlags isPrompt, Gen pT > 20 GeV; A/pT = max(pT(closest GenJet, ΔR < 0.4) − pT_μ, 0)/pT_μ"),
    Table("jet_response", "jets", "Jet pT response and resolution (reco pT / GenJet pT)",
          (("GenJet_pt", JET_PT, False), ("GenJet_eta", JET_ETA, True)), RESPONSE,
          selection="matched jets, reco pT > 15 GeV"),
    Table("btag_eff", "jets", "b-tag efficiency, DeepJet (btagDeepFlavB) 2018 working points L/M/T = "
          + "/".join(f"{v:g}" for v in BTAG_WP.values()),
          (("GenJet_hadronFlavour", (), True), ("GenJet_pt", JET_PT, False)),
          {f"eff_{k}": _btag(v) for k, v in BTAG_WP.items()}, selection="matched jets, reco pT > 15 GeV",
          categories={"GenJet_hadronFlavour": {"b": (5.0,), "c": (4.0,), "light": (0.0,)}}),
    Table("jet_id", "jets", "Jet ID pass rates: loose puId (≥ 4, below reco pT 50 GeV) and tight jetId (bit 1)",
          (("GenJet_pt", JET_PT, False), ("GenJet_eta", JET_ETA, True)),
          {"puId_loose": _puid, "jetId_tight": _jetid_tight}, selection="matched jets, reco pT > 15 GeV"),
    Table("muon_id_iso", "muons", "Muon tight ID, tight PF isolation (pfIsoId ≥ 4), both, global high-pT ID and "
          "miniPFRelIso_all < 0.1: pass rates", (("GenMuon_pt", MU_PT, False), ("GenMuon_eta", MU_ETA, True)),
          MUON_ID_ISO, selection="all muons (prompt and not)",
          needs=("tightId", "pfRelIso04_all", "highPtId", "miniPFRelIso_all")),
    Table("jet_energy", "jets", "Jet rawFactor (median) and the energy-fraction criteria of the Run-3 tight jet ID",
          (("GenJet_pt", JET_PT, False), ("GenJet_eta", JET_ETA, True)), JET_ENERGY,
          selection="matched jets, reco pT > 15 GeV", needs=("rawFactor", "muEF", "chHEF", "neHEF", "chEmEF", "etaMinusGen")),
)


def _columns(spec: ObjectSpec, cond: np.ndarray, targets: np.ndarray, gen: dict) -> dict[str, np.ndarray]:
    """Conditioning and target columns by name, plus ``reco_pt`` = ptRatio × Gen pT and, for muons,
    ``GenMuon_activity`` = max(ClosestGenJet_pt − GenMuon_pt, 0)/GenMuon_pt (0 without a GenJet
    within ΔR < 0.4: its pT column is 0 then)."""
    cols = {n: cond[:, i] for i, n in enumerate(spec.conditioning_names)}
    if {"ClosestGenJet_pt", "GenMuon_pt"} <= set(cols):
        cols["GenMuon_activity"] = np.maximum(cols["ClosestGenJet_pt"] - cols["GenMuon_pt"], 0.0) / cols["GenMuon_pt"]
    cols.update({n: targets[:, j] for j, n in enumerate(spec.target_names)})
    if "ptRatio" in cols and "pt" in gen:
        cols["reco_pt"] = cols["ptRatio"] * gen["pt"]
    return cols


def _base_mask(spec: ObjectSpec, table: Table, cols: dict) -> np.ndarray:
    n = len(next(iter(cols.values())))
    mask = np.ones(n, dtype=bool)
    if spec.rules.min_pt is not None and "reco_pt" in cols:
        mask &= cols["reco_pt"] > spec.rules.min_pt
    if table.select is not None:
        mask &= table.select(cols)
    return mask


def _cells(table: Table) -> list[list[tuple[str, str, Callable[[dict], np.ndarray], object]]]:
    """Per cell: for each axis (column, label, membership function, JSON bin)."""
    axes = []
    for col, edges, absolute in table.bins:
        if col in table.categories:
            axes.append([(col, label, (lambda c, col=col, v=v: np.isin(np.abs(c[col]) if absolute else c[col], v)), label)
                         for label, v in table.categories[col].items()])
            continue
        ax = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            name = f"|{col}|" if absolute else col
            label = f"≥ {lo:g}" if hi == INF else f"{lo:g}–{hi:g}"

            def member(c, col=col, lo=lo, hi=hi, absolute=absolute):
                x = np.abs(c[col]) if absolute else c[col]
                return (x >= lo) & (x < hi)

            ax.append((name, label, member, [lo, hi]))
        axes.append(ax)
    cells: list[list] = [[]]
    for ax in axes:
        cells = [c + [a] for c in cells for a in ax]
    return cells


def _nan_to_none(x: float):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else x


def cell_quantities(flash: list[float], ref: float, ref2: list[float]) -> dict:
    """flash (mean of the K fold values), ref, floor, deviation, ratio for one cell and quantity."""
    f = float(np.mean(flash))
    floor = float(np.mean([abs(r - ref) for r in ref2]))
    dev = abs(f - ref)
    if not np.isfinite(dev) or not np.isfinite(floor):
        ratio = float("nan")
    elif floor > 0:
        ratio = dev / floor
    else:
        ratio = 1.0 if dev == 0 else INF
    return {"flash": f, "ref": ref, "floor": floor, "deviation": dev, "ratio": ratio}


def _q(fn, cols: dict, mask: np.ndarray) -> float:
    if not mask.any():
        return float("nan")
    return fn({k: v[mask] for k, v in cols.items()})


def conditional_tables(spec: ObjectSpec, s: ValidationSamples, min_count: int = MIN_COUNT,
                       flag_ratio: float = FLAG_RATIO, tables: tuple[Table, ...] | None = None) -> dict:
    """The conditional tables of ``spec`` (those whose columns it has) for samples ``s``.

    Returns ``{table name: {"title", "selection", "axes", "quantities", "cells", "n_flagged",
    "n_low_stats"}}``; each cell is ``{"bin": {axis: [lo, hi] or label}, "n_ref", "n_flash",
    "n_ref2", "low_stats", quantity: {"flash", "ref", "floor", "deviation", "ratio", "flagged"}}``
    (NaN written as null).
    """
    ref_cols = _columns(spec, s.ref.cond, s.ref.targets, s.ref.gen)
    flash_cols = [_columns(spec, s.ref.cond, f, s.ref.gen) for f in s.flash_draws]
    ref2_cols = [_columns(spec, r.cond, r.targets, r.gen) for r in s.ref2_draws]
    out = {}
    for table in TABLES if tables is None else tables:
        needed = {c for c, _, _ in table.bins} | set(table.needs)
        if not needed <= set(ref_cols):
            continue
        samples = [ref_cols, *flash_cols, *ref2_cols]
        try:
            bases = [_base_mask(spec, table, c) for c in samples]
        except KeyError:
            continue
        t = _evaluate(table, ref_cols, flash_cols, ref2_cols, bases, min_count, flag_ratio)
        if t is not None:
            out[table.name] = t
    return out


def _evaluate(table: Table, ref_cols: dict, flash_cols: list[dict], ref2_cols: list[dict], bases: list[np.ndarray],
              min_count: int, flag_ratio: float) -> dict | None:
    """One table's cells (``bases``: the selection of each sample, in the order ref, flash…, ref′…)."""
    samples = [ref_cols, *flash_cols, *ref2_cols]
    rows = []
    for cell in _cells(table):
        masks = []
        for c, base in zip(samples, bases):
            m = base.copy()
            for _, _, member, _ in cell:
                m &= member(c)
            masks.append(m)
        m_ref, m_flash, m_ref2 = masks[0], masks[1:1 + len(flash_cols)], masks[1 + len(flash_cols):]
        n_ref = int(m_ref.sum())
        low = n_ref < min_count
        row = {"bin": {name: b for name, _, _, b in cell}, "label": {name: lab for name, lab, _, _ in cell},
               "n_ref": n_ref, "n_flash": float(np.mean([m.sum() for m in m_flash])),
               "n_ref2": float(np.mean([m.sum() for m in m_ref2])), "low_stats": low}
        for qname, fn in table.quantities.items():
            try:
                v = cell_quantities([_q(fn, c, m) for c, m in zip(flash_cols, m_flash)], _q(fn, ref_cols, m_ref),
                                    [_q(fn, c, m) for c, m in zip(ref2_cols, m_ref2)])
            except KeyError:
                v = None
            if v is None:
                continue
            v["flagged"] = bool(not low and v["ratio"] > flag_ratio)  # NaN > x is False
            row[qname] = {k: _nan_to_none(x) for k, x in v.items()}
        rows.append(row)
    qnames = [q for q in table.quantities if any(q in r for r in rows)]
    if not qnames:
        return None
    return {
        "title": table.title, "selection": table.selection,
        "axes": [f"|{c}|" if a and c not in table.categories else c for c, _, a in table.bins],
        "quantities": qnames, "min_count": min_count, "flag_ratio": flag_ratio, "cells": rows,
        "n_flagged": sum(1 for r in rows for q in qnames if q in r and r[q]["flagged"]),
        "n_low_stats": sum(1 for r in rows if r["low_stats"]),
    }


# -- reconstruction efficiency ---------------------------------------------------------------

def _eff(c: dict) -> float:
    return float(np.mean(c["matched"]))


JET_EFF_PT = (10.0, 15.0, 20.0, 30.0, 50.0, 100.0, 200.0, INF)
MU_EFF_PT = (3.0, 5.0, 10.0, 20.0, 30.0, 50.0, 100.0, INF)
_YES_NO = {"yes": (1.0,), "no": (0.0,)}
_EFF = {"eff": _eff}

EFFICIENCY_TABLES: tuple[Table, ...] = (
    Table("jet_efficiency", "jets", "Jet reconstruction efficiency (GenJets with a reco jet, reco pT > 15 GeV)",
          (("GenJet_pt", JET_EFF_PT, False), ("GenJet_eta", JET_ETA, True)), _EFF, selection="GenJets, |η| < 5"),
    Table("jet_efficiency_flavour", "jets", "Jet reconstruction efficiency by hadronFlavour",
          (("GenJet_hadronFlavour", (), True), ("GenJet_pt", JET_EFF_PT, False)), _EFF, selection="GenJets, |η| < 5",
          categories={"GenJet_hadronFlavour": {"b": (5.0,), "c": (4.0,), "light": (0.0,)}}),
    Table("jet_efficiency_muon", "jets", "Jet reconstruction efficiency with / without a status-1 Gen muon within ΔR < 0.4",
          (("GenJet_nearMuon", (), False), ("GenJet_pt", JET_EFF_PT, False)), _EFF, selection="GenJets, |η| < 5",
          categories={"GenJet_nearMuon": _YES_NO}),
    Table("muon_efficiency", "muons", "Muon reconstruction efficiency (status-1 Gen muons with a reco muon)",
          (("GenMuon_pt", MU_EFF_PT, False), ("GenMuon_eta", MU_ETA, True)), _EFF,
          selection="status-1 Gen muons, |η| < 2.4, pT > 3 GeV"),
    Table("muon_efficiency_prompt", "muons", "Muon reconstruction efficiency, prompt (Gen statusFlags isPrompt) or not",
          (("GenMuon_isPrompt", (), False), ("GenMuon_pt", MU_EFF_PT, False)), _EFF,
          selection="status-1 Gen muons, |η| < 2.4, pT > 3 GeV", categories={"GenMuon_isPrompt": _YES_NO}),
)


def _gen_efficiency_objects(spec: ObjectSpec, events):
    """The spec's Gen objects inside the FlashSim acceptance (jagged, with ``index``) and their
    flat conditioning columns for the efficiency tables."""
    import awkward as ak

    from flashsim_coffea.objects.jets import GENMUON

    objs = spec.simulated.load(events)
    objs = objs[spec.rules.in_acceptance(objs.pt, objs.eta)]
    name = spec.simulated.name
    flat = lambda x: ak.to_numpy(ak.flatten(x, axis=1)).astype(np.float64)  # noqa: E731
    cols = {f"{name}_pt": flat(objs.pt), f"{name}_eta": flat(objs.eta)}
    if "hadronFlavour" in ak.fields(objs):
        cols[f"{name}_hadronFlavour"] = flat(objs.hadronFlavour)
    if "statusFlags" in ak.fields(objs):
        cols[f"{name}_isPrompt"] = flat(objs.statusFlags & 1)
    if spec.simulated.name == "GenJet":
        mu = GENMUON.load(events)
        deta = objs.eta[:, :, None] - mu.eta[:, None, :]
        dphi = (objs.phi[:, :, None] - mu.phi[:, None, :] + np.pi) % (2 * np.pi) - np.pi
        cols[f"{name}_nearMuon"] = flat(ak.any(deta ** 2 + dphi ** 2 < 0.4 ** 2, axis=2))
    return objs, cols


def _matched(objs, idx) -> np.ndarray:
    """Flat: is each Gen object pointed at by some reco index of its event."""
    import awkward as ak

    return ak.to_numpy(ak.flatten(ak.any(objs["index"][:, :, None] == idx[:, None, :], axis=2), axis=1))


def efficiency_table_from_draws(spec_name: str, events, ref2_events: list, flash_idx: list,
                                min_count: int = MIN_COUNT, flag_ratio: float = FLAG_RATIO) -> dict:
    """The efficiency tables of spec ``spec_name`` from reco indices already drawn on ``events``:
    ``ref2_events`` = K flat event arrays with the re-drawn reference (``Jet_genJetIdx`` …),
    ``flash_idx`` = K jagged arrays (one list per event of ``events``) of FlashSim's
    ``genJetIdx``/``genPartIdx``. Same return format as :func:`conditional_tables`."""
    from flashsim_coffea.objects import get_spec

    spec = get_spec(spec_name)
    match = f"{spec.reco}_{spec.match}"
    objs, cols = _gen_efficiency_objects(spec, events)
    ref_cols = {**cols, "matched": _matched(objs, events[match])}
    ref2_cols = [{**cols, "matched": _matched(objs, r[match])} for r in ref2_events]
    flash_cols = [{**cols, "matched": _matched(objs, f)} for f in flash_idx]
    n = len(ref_cols["matched"])
    out = {}
    for table in EFFICIENCY_TABLES:
        if table.spec != spec_name or not {c for c, _, _ in table.bins} <= set(cols):
            continue
        bases = [np.ones(n, dtype=bool)] * (1 + len(flash_cols) + len(ref2_cols))
        t = _evaluate(table, ref_cols, flash_cols, ref2_cols, bases, min_count, flag_ratio)
        if t is not None:
            out[table.name] = t
    return out


def _nested(events):
    """Flat uproot events with GenJet/GenPart also as nested collections (FlashSim's global Gen
    indices read ``events["GenJet"]``); flat branch names keep precedence in ``branch``."""
    import awkward as ak

    fields = ak.fields(events)
    for coll in ("GenJet", "GenPart"):
        if coll in fields:
            continue
        sub = {f[len(coll) + 1:]: events[f] for f in fields if f.startswith(coll + "_")}
        if sub:
            events = ak.with_field(events, ak.zip(sub), coll)
    return events


def efficiency_table(spec_name: str, events, flashsim, ref_seeds: list[int], folds: int | None = None,
                     min_count: int = MIN_COUNT, flag_ratio: float = FLAG_RATIO) -> dict:
    """Reconstruction-efficiency tables (see module doc) of spec ``"jets"`` or ``"muons"``.

    events: flat NanoAOD events with Gen branches and the reference reco (uproot
    ``tree.arrays(library="ak")``; :func:`resimulate_events` needs flat branch names);
    flashsim: a :class:`~flashsim_coffea.inject.FlashSim` simulating the spec's collection (jets:
    ``pileup_jets=False``; pile-up jets point at no GenJet anyway); ref_seeds: the K reference′
    seeds; folds: FlashSim folds averaged (default K = ``len(ref_seeds)``).
    """
    from flashsim_coffea.folds import FoldBatch
    from flashsim_coffea.objects import get_spec
    from flashsim_coffea.reference.resimulate import resimulate_events

    spec = get_spec(spec_name)
    folds = len(ref_seeds) if folds is None else int(folds)
    ref2 = [resimulate_events(events, int(seed)) for seed in ref_seeds]
    reco = flashsim.prepare(_nested(events)).simulate(spec.reco, FoldBatch.all_folds(len(events), folds), attach=False)
    idx = reco[spec.match]
    flash_idx = [idx[k::folds] for k in range(folds)]  # event-major: row r = event r // K, fold r % K
    return efficiency_table_from_draws(spec_name, events, ref2, flash_idx, min_count, flag_ratio)


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.4g}"


def conditional_markdown(tables: dict) -> list[str]:
    """index.md lines: one section per table, flagged cells in **bold** with ⚠, low-stat cells marked."""
    if not tables:
        return []
    any_t = next(iter(tables.values()))
    lines = ["## Conditional tables", "",
             f"Per cell: FlashSim (mean over its K folds), reference R, noise floor = mean over k of "
             f"|q(R′_k) − q(R)|, and ratio = |q(F) − q(R)| / floor. Cells with ratio > {any_t['flag_ratio']:g} are "
             f"**bold ⚠**; cells with fewer than {any_t['min_count']} reference objects are marked *low stats* "
             "and not flagged.", ""]
    for name, t in tables.items():
        lines += [f"### {t['title']}", "",
                  f"`{name}` ({t['selection']}): {t['n_flagged']} flagged cell values, {t['n_low_stats']} low-stat cells.", "",
                  "| " + " | ".join(t["axes"]) + " | N ref | quantity | FlashSim | ref | floor | ratio |",
                  "|" + "---|" * (len(t["axes"]) + 6)]
        for row in t["cells"]:
            for q in t["quantities"]:
                v = row.get(q)
                if v is None:
                    continue
                ratio = "–" if v["ratio"] is None else f"{v['ratio']:.2f}"
                if row["low_stats"]:
                    ratio += " *low stats*"
                elif v["flagged"]:
                    ratio = f"**{ratio}** ⚠"
                bins = " | ".join(row["label"][a] for a in row["label"])
                lines.append(f"| {bins} | {row['n_ref']} | {q} | {_fmt(v['flash'])} | {_fmt(v['ref'])} | "
                             f"{_fmt(v['floor'])} | {ratio} |")
        lines.append("")
    return lines
