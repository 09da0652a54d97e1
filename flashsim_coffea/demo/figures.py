"""The demo's figures, all drawn with :mod:`flashsim_coffea.plotting` (mplhep style, the
project's "flashsim-coffea *Simulation*" label, PNG).

* ``<process>_<region>_<var>.png`` — FullSim (points) vs FlashSim (and Gen for m_μμ) with the
  FlashSim/FullSim ratio panel (:data:`.config.COMPARISONS`);
* ``signal_vs_dy_<var>.png`` — VBF H→μμ vs DY shapes, FullSim and FlashSim, two ratios;
* ``upsampling_<var>.png`` — FlashSim folds 1 vs folds N with the relative-error panel;
* ``single_event_dnn.png`` — DNN18Atan of one Gen event reconstructed N times;
* ``closure_<region>_<var>.png`` — VAR_Full vs REF_Full·VAR_Flash/REF_Flash with ratio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import plotting as pl
from ..analysis.variables import VARIABLES
from .config import COMPARISONS, PROCESS_LABELS, SIGNAL, SIGNAL_VS_DY, UPSAMPLING_HISTS, Comparison
from .results import ClosureResult
from .runs import DemoOutputs, SingleEvent
from ..stats import Hist1D

__all__ = ["all_figures", "closure_figure", "comparison_figure", "single_event_figure", "signal_vs_dy_figure",
           "upsampling_figure"]

REGION_NOTES = {"SR": "VBF signal region", "SB": "VBF sideband", "presel": "preselection"}


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


def closure_figure(res: ClosureResult, folder: Path) -> Path:
    """VAR_Full (points) vs the prediction REF_Full·VAR_Flash/REF_Flash, REF_Full for reference."""
    items = [
        _series(res.var_full, "FullSim VAR (alt. VBF)", histtype="errorbar"),
        _series(res.prediction, "REF$_{Full}$·VAR$_{Flash}$/REF$_{Flash}$", color="tab:red"),
        _series(res.ref_full, "FullSim REF (VBF)", color="tab:gray", linestyle=":"),
    ]
    fig = pl.compare(items, ratios=[(1, 0)], xlabel=_xlabel(res.var), ylabel="Fraction of events", log=res.var == "dnn_atanh",
                     ratio_label="Pred. / VAR$_{Full}$", title="systematic-variation closure",
                     note=f"{REGION_NOTES.get(res.region, res.region)}; $\\chi^2$/ndf = {res.chi2.chi2:.1f}/{res.chi2.ndf}")
    return pl.save(fig, folder / f"closure_{res.region}_{res.var}.png")


def all_figures(outputs: DemoOutputs, numbers: dict, closures: dict[str, ClosureResult], folds: int, folder: Path
                ) -> dict[str, list[Path]]:
    """Every figure of the report, grouped by section (``process/<name>`` for the per-process ones)."""
    pl.use_style()
    figs: dict[str, list[Path]] = {"signal_vs_dy": [], "upsampling": [], "single_event": [], "closure": []}
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
    for res in closures.values():
        figs["closure"].append(closure_figure(res, folder))
    return figs
