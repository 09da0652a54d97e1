"""The demo's figures, all drawn with :mod:`flashsim_coffea.plotting` (mplhep style, the
project's "flashsim-coffea *Simulation*" label, PNG).

* ``stack_<region>_<var>.png`` — all processes normalised to σ·L: FullSim as a filled stack,
  FlashSim's total as points, FlashSim/FullSim ratio with the combined statistical band
  (:data:`.config.STACK`, :data:`.config.STACK_HISTS`);
* ``<process>_<region>_<var>.png`` — FullSim (points) vs FlashSim (and Gen for m_μμ) with the
  FlashSim/FullSim ratio panel (:data:`.config.COMPARISONS`);
* ``signal_vs_dy_<var>.png`` — VBF H→μμ vs DY shapes, FullSim and FlashSim, two ratios;
* ``upsampling_<var>.png`` — FlashSim folds 1 vs folds N with the relative-error panel;
* ``single_event_dnn.png`` — DNN18Atan of one Gen event reconstructed N times;
* ``variation_<region>_<var>.png`` — the FlashSim-driven variation: VAR_Full vs
  REF_Full·VAR_Flash/REF_Flash with ratio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import plotting as pl
from ..analysis.variables import VARIABLES
from .config import COMPARISONS, PROCESS_LABELS, SIGNAL, SIGNAL_VS_DY, STACK_HISTS, UPSAMPLING_HISTS, Comparison
from .results import VariationResult
from .runs import DemoOutputs, SingleEvent
from ..stats import Hist1D

__all__ = ["all_figures", "comparison_figure", "single_event_figure", "signal_vs_dy_figure",
           "stack_figure", "upsampling_figure", "variation_figure"]

REGION_NOTES = {"SR": "VBF signal region", "SB": "VBF sideband", "presel": "preselection"}
#: fill colours of the stacked processes
STACK_COLORS = {"ttbar_mumu": "#f89c20", "ttbar_mumu_vbf": "#f89c20", "ttbar": "#f89c20", "dy_incl": "#5790fc", "dy": "#5790fc",
                "ewk_mumujj": "#964a8b", "vbf_hmm": "#e42536", "vbf_hmm_alt": "#e42536"}


def _xlabel(var: str) -> str:
    return VARIABLES[var][0]


def _series(h: Hist1D, label: str, **style) -> pl.Series:
    if "color" not in style:
        style["color"] = next((c for k, c in pl.COLORS.items() if label.startswith(k)), None)
    return pl.Series(label, h.values, h.variances, h.edges, **style)


def _raw(out: dict, process: str, region: str, var: str):
    return out[process]["hists"][region][var]


def comparison_figure(outputs: DemoOutputs, process: str, c: Comparison, folder: Path) -> Path:
    """FullSim vs FlashSim (and Gen) of ``c`` for ``process`` with the FlashSim/FullSim ratio."""
    items = [
        pl.series(_raw(outputs.fullsim, process, c.region, c.var), "FullSim (reference)", histtype="errorbar"),
        pl.series(_raw(outputs.flashsim, process, c.region, c.var), "FlashSim"),
    ]
    if c.with_gen:
        items.append(pl.series(_raw(outputs.gen, process, c.region, c.var), "Gen", linestyle="--"))
    fig = pl.compare(items, ratios=[(1, 0)], xlabel=_xlabel(c.var), ylabel="Events", log=c.log,
                     title=PROCESS_LABELS.get(process, process), note=REGION_NOTES.get(c.region, c.region))
    return pl.save(fig, folder / f"{process}_{c.region}_{c.var}.png")


def signal_vs_dy_figure(outputs: DemoOutputs, region: str, var: str, folder: Path, background: str = "dy") -> Path:
    """Unit-area shapes of signal and DY, FullSim and FlashSim, with both FlashSim/FullSim ratios."""
    sig, bkg = PROCESS_LABELS[SIGNAL], PROCESS_LABELS[background]
    items = [
        pl.series(_raw(outputs.fullsim, SIGNAL, region, var), f"FullSim {sig}", histtype="errorbar", color="black"),
        pl.series(_raw(outputs.flashsim, SIGNAL, region, var), f"FlashSim {sig}", color="tab:red"),
        pl.series(_raw(outputs.fullsim, background, region, var), f"FullSim {bkg}", histtype="errorbar", color="tab:gray"),
        pl.series(_raw(outputs.flashsim, background, region, var), f"FlashSim {bkg}", color="tab:blue"),
    ]
    fig = pl.compare(items, ratios=[(1, 0), (3, 2)], xlabel=_xlabel(var), density=True, title="signal vs DY",
                     note=REGION_NOTES.get(region, region))
    return pl.save(fig, folder / f"signal_vs_dy_{var}.png")


def upsampling_figure(outputs: DemoOutputs, process: str, region: str, var: str, folds: int,
                      errors: tuple[float, float], folder: Path) -> Path:
    """FlashSim folds 1 vs folds N (FoldHist errors) with the relative statistical error panel."""
    items = [
        pl.series(_raw(outputs.flashsim, process, region, var), f"FlashSim folds 1 (mean err. {errors[0]:.1f} %)",
                  color="tab:red"),
        pl.series(_raw(outputs.flashsim_folds, process, region, var),
                  f"FlashSim folds {folds} (mean err. {errors[1]:.1f} %)", color="tab:green"),
    ]
    fig = pl.relative_error_plot(items, xlabel=_xlabel(var), ylabel="Events", title=PROCESS_LABELS.get(process, process),
                                 note=REGION_NOTES.get(region, region))
    return pl.save(fig, folder / f"upsampling_{var}.png")


def single_event_figure(single: SingleEvent, folder: Path) -> Path:
    """DNN18Atan of the folds of one Gen event that pass the signal region, as fractions of all folds."""
    import matplotlib.pyplot as plt

    h = single.output["hists"]["SR"]["dnn_atanh"]
    values, _, edges = pl.hist_data(h)
    weight = single.output["sumw"] or 1.0
    pl.use_style()
    fig, ax = plt.subplots(figsize=(8, 6))
    import mplhep as hep

    hep.histplot(values / weight, edges, ax=ax, color="tab:red",
                 label=f"FlashSim, {single.folds} folds\n{100 * single.fraction_sr:.1f} % in SR, "
                       f"{100 * single.fraction_selected:.1f} % pass VBF sel.")
    for value, label, color, ls in ((single.fullsim_dnn, "FullSim (reference)", "black", "-"),
                                    (single.gen_dnn, "Gen", "tab:blue", "--")):
        if np.isfinite(value):
            ax.axvline(value, color=color, ls=ls, lw=2, label=f"{label}: {value:.2f}")
    ax.set_xlabel(_xlabel("dnn_atanh"))
    ax.set_ylabel("Fraction of folds")
    ev = single.event_id
    ax.legend(fontsize=11, title=f"one Gen event (run {ev['run']}, lumi {ev['luminosityBlock']}, event {ev['event']})",
              title_fontsize=10)
    pl.project_label(ax, PROCESS_LABELS.get(single.process, single.process))
    return pl.save(fig, folder / "single_event_dnn.png")


def variation_figure(res: VariationResult, folder: Path) -> Path:
    """VAR_Full (points) vs the prediction REF_Full·VAR_Flash/REF_Flash, REF_Full for reference."""
    items = [
        _series(res.var_full, "FullSim VAR (alt. VBF)", histtype="errorbar"),
        _series(res.prediction, "REF$_{Full}$·VAR$_{Flash}$/REF$_{Flash}$", color="tab:red"),
        _series(res.ref_full, "FullSim REF (VBF)", color="tab:gray", linestyle=":"),
    ]
    fig = pl.compare(items, ratios=[(1, 0)], xlabel=_xlabel(res.var), ylabel="Fraction of events", log=res.var == "dnn_atanh",
                     ratio_label="Pred. / VAR$_{Full}$", title="FlashSim-driven variation",
                     note=f"{REGION_NOTES.get(res.region, res.region)}; $\\chi^2$/ndf = {res.chi2.chi2:.1f}/{res.chi2.ndf}")
    return pl.save(fig, folder / f"variation_{res.region}_{res.var}.png")


def stack_figure(outputs: DemoOutputs, expected: dict, region: str, var: str, folder: Path) -> Path:
    """FullSim σ·L-normalised stack of ``expected["stack"][region]`` (bottom to top), its statistical
    band, FlashSim's total as points; ratio panel FlashSim/FullSim total with the band
    1 ± √(σ_Full² + σ_Flash²)/Full (both totals' statistical errors)."""
    import matplotlib.pyplot as plt
    import mplhep as hep

    procs = expected["stack"][region]
    weights = {p: expected["regions"][region]["processes"][p]["norm_weight"] for p in procs}

    def scaled(out: dict, p: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        values, variances, edges = pl.hist_data(_raw(out, p, region, var))
        w = weights[p]
        return values * w, (variances if variances is not None else values) * w * w, edges

    full = [scaled(outputs.fullsim, p) for p in procs]
    flash = [scaled(outputs.flashsim, p) for p in procs]
    edges = full[0][2]
    full_tot, full_var = sum(f[0] for f in full), sum(f[1] for f in full)
    flash_tot, flash_var = sum(f[0] for f in flash), sum(f[1] for f in flash)

    pl.use_style()
    fig, (ax, rax) = plt.subplots(2, 1, figsize=(8, 8), sharex=True, gridspec_kw={"height_ratios": (3, 1), "hspace": 0.06})
    hep.histplot([f[0] for f in full], edges, ax=ax, stack=True, histtype="fill",
                 label=[f"FullSim {PROCESS_LABELS.get(p, p)}" for p in procs],
                 color=[STACK_COLORS.get(p, None) for p in procs], edgecolor="black", linewidth=0.5)
    err = np.sqrt(full_var)
    ax.stairs(full_tot + err, edges, baseline=np.clip(full_tot - err, 0, None), fill=True, facecolor="none",
              edgecolor="gray", hatch="////", linewidth=0, label="FullSim stat.")
    centers = 0.5 * (edges[1:] + edges[:-1])
    shown = flash_tot > 0
    ax.errorbar(centers[shown], flash_tot[shown], yerr=np.sqrt(flash_var)[shown], fmt="o", ms=5, color="black",
                label="FlashSim (total)")
    positive = np.concatenate([f[0][f[0] > 0] for f in full] + [flash_tot[shown]])
    ax.set_yscale("log")
    if positive.size:
        top = max(full_tot.max(), flash_tot.max())
        ax.set_ylim(max(0.3 * positive.min(), 1e-4 * top), 300 * top)
    ax.set_ylabel("Events / bin")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], fontsize=11, ncol=2, title_fontsize=11,
              title=f"{REGION_NOTES.get(region, region)}, σ·L, L = {expected['lumi_fb']:g} fb$^{{-1}}$")
    pl.project_label(ax, f"{expected['lumi_fb']:g} fb$^{{-1}}$")
    r = pl.ratio(flash_tot, flash_var, full_tot, full_var)
    band = np.where(full_tot > 0, np.sqrt(flash_var + full_var) / np.where(full_tot > 0, full_tot, 1.0), np.nan)
    rax.stairs(np.nan_to_num(1 + band, nan=1.0), edges, baseline=np.nan_to_num(1 - band, nan=1.0), fill=True,
               alpha=0.3, color="gray", label=r"stat. (FullSim $\oplus$ FlashSim)")
    rax.plot(centers, r.value, "o", ms=4, color="black")
    rax.axhline(1.0, color="gray", lw=1)
    finite = r.value[np.isfinite(r.value)]
    lo, hi = (0.5, 1.5)
    if finite.size:
        q10, q90 = np.quantile(finite, [0.1, 0.9])
        lo, hi = max(0.0, min(lo, 0.9 * q10)), min(3.0, max(hi, 1.1 * q90))
    rax.set_ylim(lo, hi)
    rax.set_ylabel("FlashSim / FullSim", fontsize=14)
    rax.legend(fontsize=10, loc="upper right")
    rax.set_xlabel(_xlabel(var))
    return pl.save(fig, folder / f"stack_{region}_{var}.png")


def all_figures(outputs: DemoOutputs, numbers: dict, variations: dict[str, VariationResult], folds: int, folder: Path
                ) -> dict[str, list[Path]]:
    """Every figure of the report, grouped by section (``process/<name>`` for the per-process ones)."""
    pl.use_style()
    figs: dict[str, list[Path]] = {"stack": [], "signal_vs_dy": [], "upsampling": [], "single_event": [], "variation": []}
    expected = numbers.get("expected_events") or {}
    for region, var in STACK_HISTS if expected.get("regions") else ():
        if expected["stack"].get(region) and all(
                var in getattr(outputs, m)[p]["hists"].get(region, {}) for m in ("fullsim", "flashsim")
                for p in expected["stack"][region]):
            figs["stack"].append(stack_figure(outputs, expected, region, var, folder))
    for p in outputs.fullsim:
        figs[f"process/{p}"] = [comparison_figure(outputs, p, c, folder) for c in COMPARISONS]
    if SIGNAL in outputs.fullsim and "dy" in outputs.fullsim:
        for region, var in SIGNAL_VS_DY:
            figs["signal_vs_dy"].append(signal_vs_dy_figure(outputs, region, var, folder))
    up = numbers.get("upsampling") or {}
    if SIGNAL in outputs.flashsim_folds:
        for region, var, short in UPSAMPLING_HISTS:
            errs = (up.get(f"{short}_error_folds1", np.nan), up.get(f"{short}_error_folds{folds}", np.nan))
            figs["upsampling"].append(upsampling_figure(outputs, SIGNAL, region, var, folds, errs, folder))
    if outputs.single is not None:
        figs["single_event"].append(single_event_figure(outputs.single, folder))
    for res in variations.values():
        figs["variation"].append(variation_figure(res, folder))
    return figs
