"""Validation plots (matplotlib + mplhep style, PNG), labelled "flashsim-coffea *Simulation*"
with the sample's title (:func:`flashsim_coffea.plotting.project_label`).

* ``hist1d``: FlashSim vs reference (and reference′ dashed) with a FlashSim/reference ratio
  panel; log y when the distribution spans > 2 decades; range = reference 0.1–99.9 %
  quantiles (spike/sentinel values shown when they carry > 0.5 % of the objects).
* ``contours``: 2-D density contours enclosing 50 / 90 / 99 % of each sample.
* ``profile``: mean and RMS of a target in bins of a conditioning variable.
* ``flavour_hist`` / ``roc``: a tagger by Gen flavour and its b-vs-udsg ROC.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import mplhep as hep  # noqa: E402
import numpy as np  # noqa: E402

from ..plotting import project_label, use_style  # noqa: E402

__all__ = ["style", "hist1d", "contours", "profile", "flavour_hist", "roc"]

FLASH, REF, REF2 = "tab:red", "black", "tab:blue"


def style() -> None:
    use_style()


def _label(ax, text: str) -> None:
    project_label(ax, text, com=None)  # the files may come from any √s


def _range(ref: np.ndarray) -> tuple[float, float]:
    lo, hi = np.quantile(ref, [0.001, 0.999])
    spikes = np.unique(ref, return_counts=True)
    for v, c in zip(*spikes):
        if c > 0.005 * len(ref):
            lo, hi = min(lo, v), max(hi, v)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.02 * (hi - lo)
    return float(lo - pad), float(hi + pad)


def hist1d(path: Path, name: str, flash: np.ndarray, ref: np.ndarray, ref2: np.ndarray | None, title: str,
           discrete: tuple[float, ...] | None = None) -> Path:
    if discrete:
        edges = np.concatenate([[discrete[0] - 0.5], (np.asarray(discrete[:-1]) + np.asarray(discrete[1:])) / 2,
                                [discrete[-1] + 0.5]])
    elif np.all(ref == np.rint(ref)) and len(np.unique(ref)) < 80:
        lo, hi = _range(ref)
        edges = np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.0, 1.0)
    else:
        edges = np.linspace(*_range(ref), 61)
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(8, 8), gridspec_kw={"height_ratios": (3, 1)}, sharex=True)
    hr, _ = np.histogram(np.clip(ref, edges[0], edges[-1]), edges)
    hf, _ = np.histogram(np.clip(flash, edges[0], edges[-1]), edges)
    hep.histplot(hr, edges, ax=ax, color=REF, label="Reference", yerr=np.sqrt(hr))
    hep.histplot(hf, edges, ax=ax, color=FLASH, label="FlashSim")
    if ref2 is not None:
        h2, _ = np.histogram(np.clip(ref2, edges[0], edges[-1]), edges)
        hep.histplot(h2 * hr.sum() / max(h2.sum(), 1), edges, ax=ax, color=REF2, ls="--", label="Reference' (other seed)")
    pos = hr[hr > 0]
    if len(pos) and pos.max() / max(pos.min(), 1) > 100:
        ax.set_yscale("log")
    ax.set_ylabel("Objects")
    ax.legend(fontsize=12)
    _label(ax, title)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(hr > 0, hf / hr, np.nan)
        err = np.where(hr > 0, np.sqrt(hf) / hr, np.nan)
    centers = (edges[1:] + edges[:-1]) / 2
    rax.errorbar(centers, r, yerr=err, fmt="o", ms=3, color=FLASH)
    rax.axhline(1, color="gray", lw=1)
    rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("Flash / Ref")
    rax.set_xlabel(name)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def _contour_levels(h: np.ndarray, fractions=(0.99, 0.9, 0.5)) -> list[float]:
    flat = np.sort(h.ravel())[::-1]
    cum = np.cumsum(flat) / max(flat.sum(), 1e-300)
    return sorted({float(flat[min(np.searchsorted(cum, f), len(flat) - 1)]) for f in fractions})


def contours(path: Path, xname: str, yname: str, xf, yf, xr, yr, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(8, 7))
    xe = np.linspace(*_range(xr), 51)
    ye = np.linspace(*_range(yr), 51)
    for x, y, color, label in ((xr, yr, REF, "Reference"), (xf, yf, FLASH, "FlashSim")):
        h, _, _ = np.histogram2d(np.clip(x, xe[0], xe[-1]), np.clip(y, ye[0], ye[-1]), [xe, ye])
        levels = _contour_levels(h)
        if len(levels) >= 2:
            ax.contour((xe[1:] + xe[:-1]) / 2, (ye[1:] + ye[:-1]) / 2, h.T, levels=levels, colors=color)
        ax.plot([], [], color=color, label=label)
    ax.set_xlabel(xname)
    ax.set_ylabel(yname)
    ax.legend(title="contours: 50/90/99 %", fontsize=12)
    _label(ax, title)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def profile(path: Path, xname: str, yname: str, x, yf, yr, title: str, log_x: bool = True) -> Path:
    edges = np.geomspace(max(np.quantile(x, 0.005), 1e-3), np.quantile(x, 0.995), 16) if log_x else np.linspace(*_range(x), 16)
    idx = np.digitize(x, edges) - 1
    centers = np.sqrt(edges[1:] * edges[:-1]) if log_x else (edges[1:] + edges[:-1]) / 2
    fig, ax = plt.subplots(figsize=(8, 7))
    for y, color, label, off in ((yr, REF, "Reference", 0.98), (yf, FLASH, "FlashSim", 1.02)):
        m = np.array([y[idx == i].mean() if np.any(idx == i) else np.nan for i in range(len(centers))])
        s = np.array([y[idx == i].std() if np.any(idx == i) else np.nan for i in range(len(centers))])
        ax.errorbar(centers * (off if log_x else 1), m, yerr=s, fmt="o", color=color, label=f"{label} (mean ± RMS)")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xname)
    ax.set_ylabel(yname)
    ax.legend(fontsize=12)
    _label(ax, title)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def flavour_hist(path: Path, name: str, flav: np.ndarray, vf, vr, title: str) -> Path:
    edges = np.linspace(0, 1, 41)
    fig, ax = plt.subplots(figsize=(8, 7))
    for sel, lab, c in ((flav == 5, "b", "tab:red"), (flav == 4, "c", "tab:green"), ((flav != 5) & (flav != 4), "udsg", "tab:blue")):
        if sel.sum() == 0:
            continue
        hep.histplot(np.histogram(np.clip(vr[sel], 0, 1), edges)[0], edges, ax=ax, color=c, label=f"{lab} reference", density=True)
        hep.histplot(np.histogram(np.clip(vf[sel], 0, 1), edges)[0], edges, ax=ax, color=c, ls="--", label=f"{lab} FlashSim", density=True)
    ax.set_yscale("log")
    ax.set_xlabel(f"{name} (valid values)")
    ax.set_ylabel("Normalised")
    ax.legend(fontsize=11, ncol=2)
    _label(ax, title)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def _roc(score, is_sig):
    order = np.argsort(-score)
    s = is_sig[order]
    tpr = np.cumsum(s) / max(s.sum(), 1)
    fpr = np.cumsum(~s) / max((~s).sum(), 1)
    return fpr, tpr


def roc(path: Path, name: str, flav: np.ndarray, vf, vr, title: str) -> Path:
    sel = (flav == 5) | ((flav != 4) & (flav != 5))
    fig, ax = plt.subplots(figsize=(8, 7))
    for v, c, lab in ((vr, REF, "Reference"), (vf, FLASH, "FlashSim")):
        fpr, tpr = _roc(v[sel], flav[sel] == 5)
        ax.plot(tpr, np.maximum(fpr, 1e-5), color=c, label=lab)
    ax.set_yscale("log")
    ax.set_xlabel("b-jet efficiency")
    ax.set_ylabel("udsg mis-tag rate")
    ax.legend(fontsize=12)
    _label(ax, title)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path
