"""Plotting helpers: mplhep style, FlashSim/FullSim ratio panels, FoldHist errors.

One module for the demo report, the notebooks and the validation figures:

* :func:`use_style` / :func:`project_label` — ``mplhep``'s HEP style (fonts, ticks) with this
  project's label, "flashsim-coffea *Simulation*" on the left and "<title> (13 TeV)" on the
  right. No figure carries an experiment's name: nothing here is a collaboration's simulation
  (the "FullSim" reference is this project's own parametric detector response), and
  experiment labels are reserved for the collaborations' results.
* :class:`Series` / :func:`series` — one histogram to draw (values, variances, edges, style)
  from a ``hist.Hist`` (Weight or plain storage) or a :class:`~flashsim_coffea.hists.FoldHist`
  (fold-weighted errors, :meth:`FoldHist.variances`); :func:`histogram` makes one from raw
  per-object values (Σw, Σw² per bin); :func:`normalized` scales to unit area.
* :func:`ratio` — the ratio maths of the ratio panels, for contents ``a`` (numerator, e.g.
  FlashSim) and ``b`` (denominator, FullSim) with variances ``va``, ``vb``::

      r        = a / b
      num_err  = sqrt(va) / b                  (error bars on the points: numerator only)
      den_band = sqrt(vb) / b                  (band around 1: the denominator's relative error)
      err      = sqrt(va + r² vb) / b          (= |r| sqrt(va/a² + vb/b²), uncorrelated a, b)

  all NaN where ``b ≤ 0``.
* :func:`relative_error` — σ_i / content_i per bin (NaN where the content is ≤ 0).
* :func:`compare` — distributions on top, ratio panel(s) below (points with ``num_err`` and
  the denominator's band); optional log y; :func:`relative_error_plot` — distributions on top,
  σ/content per bin below (the upsampling comparison); :func:`save` writes a figure.

Everything uses the ``Agg`` backend unless a backend was already chosen (notebooks keep
their inline backend).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib

if not os.environ.get("MPLBACKEND") and "matplotlib.pyplot" not in sys.modules and "ipykernel" not in sys.modules:
    matplotlib.use("Agg")  # scripts and tests: no display; notebooks keep their inline backend
import matplotlib.pyplot as plt  # noqa: E402
import mplhep as hep  # noqa: E402
import numpy as np  # noqa: E402

from .stats import hist_data  # noqa: E402  (re-exported: (values, variances, edges) of a histogram)

__all__ = [
    "COLORS",
    "Ratio",
    "Series",
    "compare",
    "hist_data",
    "histogram",
    "normalized",
    "project_label",
    "ratio",
    "relative_error",
    "relative_error_plot",
    "save",
    "series",
    "use_style",
]

#: colours of the three "sources" everywhere in the project's figures
COLORS = {"FullSim": "black", "FlashSim": "tab:red", "Gen": "tab:blue"}
COM_TEV = 13
#: the label of every figure: this project's name (bold) and what the figure shows (italic)
LABEL_NAME = "flashsim-coffea"
LABEL_TEXT = "Simulation"


# --------------------------------------------------------------------------- style
def use_style() -> None:
    """Switch matplotlib to mplhep's HEP style (fonts, ticks, sizes; it draws no label)."""
    plt.style.use(hep.style.CMS)


def project_label(ax: plt.Axes, title: str | None = None, fontsize: float = 14, com: float | None = COM_TEV) -> None:
    """"flashsim-coffea *Simulation*" on the left, "<title> (13 TeV)" on the right of ``ax``.

    ``com=None``: the right-hand label is ``title`` alone (e.g. NanoAOD files of any energy).
    """
    energy = f"({com:g} TeV)" if com is not None else ""
    rlabel = " ".join(t for t in (title, energy) if t)  # "" rather than None: mplhep would add its own "(13 TeV)"
    hep.label.exp_label(exp=LABEL_NAME, llabel=LABEL_TEXT, rlabel=rlabel, ax=ax, fontsize=fontsize)


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Series:
    """One histogram to draw: bin ``values``, ``variances`` (None: no errors), ``edges``, style.

    ``histtype``: ``"step"`` (line), ``"errorbar"`` (points with error bars) or ``"fill"``.
    """

    label: str
    values: np.ndarray
    variances: np.ndarray | None
    edges: np.ndarray
    color: str | None = None
    histtype: str = "step"
    linestyle: str = "-"

    @property
    def errors(self) -> np.ndarray | None:
        return None if self.variances is None else np.sqrt(self.variances)


def series(h: Any, label: str, **style: Any) -> Series:
    """A :class:`Series` from a histogram; ``style``: color, histtype, linestyle.

    The colour defaults to :data:`COLORS` when ``label`` starts with FullSim/FlashSim/Gen.
    """
    values, variances, edges = hist_data(h)
    if "color" not in style:
        style["color"] = next((c for k, c in COLORS.items() if label.startswith(k)), None)
    return Series(label, values, variances, edges, **style)


def histogram(values: Any, edges: Any, label: str, weights: Any = None, clip: bool = True, **style: Any) -> Series:
    """A :class:`Series` from raw per-object values (e.g. FlashSim vs reference targets).

    Contents Σ w and variances Σ w² per bin; with ``clip`` values outside the edges go into the
    first/last bin (so tails stay visible).
    """
    edges = np.asarray(edges, dtype=np.float64)
    x = np.asarray(values, dtype=np.float64).ravel()
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    ok = np.isfinite(x)
    x, w = x[ok], w[ok]
    if clip:
        x = np.clip(x, edges[0], np.nextafter(edges[-1], edges[0]))
    content, _ = np.histogram(x, edges, weights=w)
    variances, _ = np.histogram(x, edges, weights=w * w)
    if "color" not in style:
        style["color"] = next((c for k, c in COLORS.items() if label.startswith(k)), None)
    return Series(label, content.astype(np.float64), variances.astype(np.float64), edges, **style)


def normalized(s: Series) -> Series:
    """``s`` scaled to unit area (values / Σ values, variances / (Σ values)²); unchanged if empty."""
    total = float(np.sum(s.values))
    if total <= 0:
        return s
    var = None if s.variances is None else s.variances / total**2
    return replace(s, values=s.values / total, variances=var)


# --------------------------------------------------------------------------- maths
@dataclass(frozen=True)
class Ratio:
    """Bin-by-bin ratio a/b with its errors (formulas in the module docstring)."""

    value: np.ndarray
    num_err: np.ndarray
    den_band: np.ndarray
    err: np.ndarray


def ratio(a: np.ndarray, va: np.ndarray | None, b: np.ndarray, vb: np.ndarray | None) -> Ratio:
    """r = a/b, num_err = √va/b, den_band = √vb/b, err = √(va + r² vb)/b; NaN where b ≤ 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    va = np.zeros_like(a) if va is None else np.asarray(va, dtype=np.float64)
    vb = np.zeros_like(b) if vb is None else np.asarray(vb, dtype=np.float64)
    ok = b > 0
    safe_b = np.where(ok, b, 1.0)
    r = np.where(ok, a / safe_b, np.nan)
    num_err = np.where(ok, np.sqrt(va) / safe_b, np.nan)
    den_band = np.where(ok, np.sqrt(vb) / safe_b, np.nan)
    err = np.where(ok, np.sqrt(va + np.nan_to_num(r) ** 2 * vb) / safe_b, np.nan)
    return Ratio(r, num_err, den_band, err)


def relative_error(values: np.ndarray, variances: np.ndarray | None) -> np.ndarray:
    """σ_i / content_i per bin (NaN where content ≤ 0 or no variances)."""
    values = np.asarray(values, dtype=np.float64)
    if variances is None:
        return np.full_like(values, np.nan)
    ok = values > 0
    return np.where(ok, np.sqrt(np.asarray(variances, dtype=np.float64)) / np.where(ok, values, 1.0), np.nan)


# --------------------------------------------------------------------------- drawing
def _draw(ax: plt.Axes, s: Series) -> None:
    kw: dict[str, Any] = {"ax": ax, "label": s.label, "color": s.color}
    if s.histtype == "errorbar":
        hep.histplot(s.values, s.edges, yerr=s.errors if s.errors is not None else False, histtype="errorbar",
                     markersize=4, **kw)
    elif s.histtype == "fill":
        hep.histplot(s.values, s.edges, histtype="fill", alpha=0.3, **kw)
    else:
        hep.histplot(s.values, s.edges, yerr=s.errors if s.errors is not None else False, histtype="step",
                     linestyle=s.linestyle, **kw)


def _panels(n_lower: int, height_ratio: float = 1.0):
    fig, axes = plt.subplots(1 + n_lower, 1, figsize=(8, 6 + 2 * n_lower), sharex=True,
                             gridspec_kw={"height_ratios": (3,) + (height_ratio,) * n_lower, "hspace": 0.06})
    return fig, axes[0], list(axes[1:])


def _has_positive(ax: plt.Axes) -> bool:
    """Whether anything drawn on ``ax`` has a positive y (else a log scale is impossible)."""
    hi = ax.dataLim.y1
    return bool(ax.has_data() and np.isfinite(hi) and hi > 0)


def _finish_top(ax: plt.Axes, ylabel: str, log: bool, title: str | None, note: str | None = None,
                items: Sequence[Series] = ()) -> None:
    """Labels, legend, project label; y range with head-room for the legend (log: half the smallest
    positive content to 50× the largest; linear: 0 to 1.4× the largest)."""
    ax.set_ylabel(ylabel)
    tops = [s.values + (s.errors if s.errors is not None else 0) for s in items]
    pos = np.concatenate([s.values[s.values > 0] for s in items]) if items else np.array([])
    if log and (pos.size or _has_positive(ax)):
        ax.set_yscale("log")
        if pos.size:
            ax.set_ylim(0.5 * pos.min(), 50 * pos.max())
        else:
            ax.set_ylim(bottom=max(ax.get_ylim()[0], 1e-4))
    elif tops and np.isfinite(np.concatenate(tops)).any() and np.nanmax(np.concatenate(tops)) > 0:
        ax.set_ylim(0, 1.4 * np.nanmax(np.concatenate(tops)))
    ax.legend(fontsize=12, title=note, title_fontsize=11)
    project_label(ax, title)
    ax.set_xlabel("")


def compare(
    items: Sequence[Series],
    *,
    ratios: Sequence[tuple[int, int]] = ((1, 0),),
    xlabel: str = "",
    ylabel: str = "Events",
    ratio_label: str = "FlashSim / FullSim",
    title: str | None = None,
    log: bool = False,
    density: bool = False,
    ratio_range: tuple[float, float] = (0.5, 1.5),
    note: str | None = None,
    path: str | Path | None = None,
) -> plt.Figure:
    """Distributions of ``items`` with one ratio panel for the pairs ``ratios`` = [(num, den)].

    Ratio panel: points ``a/b`` with ``√va/b`` in the numerator's colour; a band ``1 ± √vb/b``
    in the denominator's colour (:func:`ratio`). ``density``: every item scaled to unit area.
    Saved to ``path`` (PNG) when given.
    """
    items = [normalized(s) for s in items] if density else list(items)
    fig, ax, lower = _panels(1 if ratios else 0)
    for s in items:
        _draw(ax, s)
    _finish_top(ax, "Fraction" if density and ylabel == "Events" else ylabel, log, title, note, items)
    if ratios:
        rax = lower[0]
        for k, (i, j) in enumerate(ratios):
            num, den = items[i], items[j]
            r = ratio(num.values, num.variances, den.values, den.variances)
            edges = den.edges
            band_lo = np.nan_to_num(1 - r.den_band, nan=1.0)
            band_hi = np.nan_to_num(1 + r.den_band, nan=1.0)
            rax.stairs(band_hi, edges, baseline=band_lo, fill=True, alpha=0.2, color=den.color or "gray",
                       label=f"{den.label} stat." if k == 0 else None)
            centers = 0.5 * (edges[1:] + edges[:-1])
            offset = (k - (len(ratios) - 1) / 2) * 0.12 * np.diff(edges)
            rax.errorbar(centers + offset, r.value, yerr=r.num_err, fmt="o", ms=3, color=num.color, lw=1)
        rax.axhline(1.0, color="gray", lw=1)
        rax.set_ylim(*_ratio_limits(ratio_range, [ratio(items[i].values, None, items[j].values, None).value for i, j in ratios]))
        rax.set_ylabel(ratio_label, fontsize=14)
        rax.set_xlabel(xlabel)
    else:
        ax.set_xlabel(xlabel)
    if path is not None:
        save(fig, path)
    return fig


def _ratio_limits(default: tuple[float, float], values: Sequence[np.ndarray]) -> tuple[float, float]:
    """``default`` widened (within [0, 3]) to the 10–90 % quantiles of the ratio points if they fall outside."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    lo, hi = default
    if finite.size:
        q10, q90 = np.quantile(finite, [0.1, 0.9])
        lo, hi = max(0.0, min(lo, 0.9 * q10)), min(3.0, max(hi, 1.1 * q90))
    return lo, hi


def relative_error_plot(
    items: Sequence[Series],
    *,
    xlabel: str = "",
    ylabel: str = "Events",
    title: str | None = None,
    log: bool = False,
    note: str | None = None,
    path: str | Path | None = None,
) -> plt.Figure:
    """Distributions on top; below, the relative statistical error σ_i/content_i of each item (%)."""
    fig, ax, (rax,) = _panels(1)
    top = 0.0
    for s in items:
        _draw(ax, s)
        rel = 100 * relative_error(s.values, s.variances)
        rax.stairs(np.nan_to_num(rel), s.edges, color=s.color, linestyle=s.linestyle, lw=2)
        if np.isfinite(rel).any():
            top = max(top, float(np.nanmax(rel)))
    _finish_top(ax, ylabel, log, title, note, items)
    rax.set_ylim(0, min(max(top * 1.1, 10.0), 110.0))
    rax.set_ylabel("Rel. error [%]", fontsize=14)
    rax.set_xlabel(xlabel)
    if path is not None:
        save(fig, path)
    return fig


def save(fig: plt.Figure, path: str | Path, dpi: int = 80) -> Path:
    """Write ``fig`` (format from the suffix, PNG by default), close it, return the path."""
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
