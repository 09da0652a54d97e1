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
* ``jet_id``: pass rate of the loose pile-up ID as analyses apply it (``puId`` ≥ 4, required
  only below reco pT 50 GeV: a jet above passes) and of the tight jet ID (``jetId`` bit 1),
  in GenJet pT × |η| bins.

Jets of every sample are compared above the NanoAOD reco threshold (reco pT > 15 GeV, which R
and R′ satisfy by construction and FlashSim applies at injection), so that the threshold does
not show up as a FlashSim mis-modelling in the lowest bins.

Reconstruction efficiency (the matched fraction vs Gen pT, η, flavour, nearby muons) is not
tabulated here: the samples hold matched objects only.

Public API::

    tables = conditional_tables(spec, samples)        # {"muon_response": {...}, ...}
    lines = conditional_markdown(tables)               # index.md section
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from flashsim_coffea.objects import ObjectSpec

from .samples import ValidationSamples

__all__ = ["BTAG_WP", "FLAG_RATIO", "MIN_COUNT", "TABLES", "Table", "conditional_tables", "conditional_markdown",
           "cell_quantities"]

#: a cell is flagged when |q(F) − q(R)| exceeds this many times its noise floor
FLAG_RATIO = 2.0
#: cells with fewer reference objects are "low stats" and never flagged
MIN_COUNT = 50
#: DeepJet (btagDeepFlavB) working points, 2018 (UL18) values of the CMS BTV POG
BTAG_WP = {"L": 0.0494, "M": 0.2770, "T": 0.7264}
#: loose pile-up ID: puId ≥ 4, applied to jets below this reco pT (GeV)
PUID_MAX_PT = 50.0

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


RESPONSE = {"median": _median, "w68": _half_width(0.68), "w95": _half_width(0.95)}


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


MU_PT = (5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 70.0, 100.0, 200.0, INF)
MU_ETA = (0.0, 0.9, 1.2, 2.1, 2.4)
JET_PT = (15.0, 20.0, 30.0, 50.0, 100.0, 200.0, INF)
JET_ETA = (0.0, 1.3, 2.5, 3.0, 5.0)

TABLES: tuple[Table, ...] = (
    Table("muon_response", "muons", "Prompt-muon pT response (reco pT / Gen pT)",
          (("GenMuon_pt", MU_PT, False), ("GenMuon_eta", MU_ETA, True)), RESPONSE,
          select=lambda c: c["GenMuon_isPrompt"] > 0.5, selection="Gen statusFlags isPrompt"),
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
)


def _columns(spec: ObjectSpec, cond: np.ndarray, targets: np.ndarray, gen: dict) -> dict[str, np.ndarray]:
    """Conditioning and target columns by name, plus ``reco_pt`` = ptRatio × Gen pT."""
    cols = {n: cond[:, i] for i, n in enumerate(spec.conditioning_names)}
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
        needed = {c for c, _, _ in table.bins}
        if not needed <= set(ref_cols):
            continue
        samples = [ref_cols, *flash_cols, *ref2_cols]
        try:
            bases = [_base_mask(spec, table, c) for c in samples]
        except KeyError:
            continue
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
            continue
        out[table.name] = {
            "title": table.title, "selection": table.selection,
            "axes": [f"|{c}|" if a and c not in table.categories else c for c, _, a in table.bins],
            "quantities": qnames, "min_count": min_count, "flag_ratio": flag_ratio, "cells": rows,
            "n_flagged": sum(1 for r in rows for q in qnames if q in r and r[q]["flagged"]),
            "n_low_stats": sum(1 for r in rows if r["low_stats"]),
        }
    return out


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
