"""From the processor outputs to the demo's numbers (formulas in :mod:`.stats`).

* :func:`yields` / :func:`cutflows` — Σ genWeight per region and cutflow step, per mode;
* :func:`flash_vs_full` — χ²/ndf FlashSim (folds 1) vs FullSim for every figure histogram;
* :func:`upsampling` — mean relative statistical error of FlashSim folds 1 vs folds N;
* :func:`closure` — VAR_Full vs REF_Full · VAR_Flash / REF_Flash (FlashSim with folds N).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..analysis import CUTFLOW_STEPS, REGIONS
from .config import CLOSURE, CLOSURE_HISTS, COMPARISONS, UPSAMPLING_HISTS
from .runs import DemoOutputs
from ..stats import Chi2, Hist1D, as_arrays, chi2_ndf, closure_prediction, mean_rel_error

__all__ = ["ClosureResult", "MODES", "closure", "cutflows", "flash_vs_full", "hist", "upsampling", "yields"]

#: report name → attribute of DemoOutputs
MODES = {"FullSim": "fullsim", "FlashSim": "flashsim", "Gen": "gen"}


def hist(out: dict, process: str, region: str, var: str) -> Hist1D:
    """One histogram of a processor output as :class:`Hist1D`."""
    return as_arrays(out[process]["hists"][region][var])


def yields(outputs: DemoOutputs) -> dict[str, dict[str, dict[str, float]]]:
    """process → mode → region → Σ genWeight of the selected events (flow bins included)."""
    res: dict[str, dict[str, dict[str, float]]] = {}
    for name, attr in MODES.items():
        for p, out in getattr(outputs, attr).items():
            res.setdefault(p, {})[name] = {r: float(out["hists"][r]["mass"].values(flow=True).sum()) for r in REGIONS}
    return res


def cutflows(outputs: DemoOutputs) -> dict[str, dict[str, dict[str, float]]]:
    """mode → process → cutflow step → events (unweighted)."""
    return {name: {p: {s: float(out["cutflow"][s]) for s in CUTFLOW_STEPS} for p, out in getattr(outputs, attr).items()}
            for name, attr in MODES.items()}


def flash_vs_full(outputs: DemoOutputs) -> dict[str, Chi2]:
    """``"<process>/<region>/<var>"`` → χ² of FlashSim (folds 1) vs FullSim, same Gen events."""
    res = {}
    for p in outputs.fullsim:
        for c in COMPARISONS:
            a, b = hist(outputs.flashsim, p, c.region, c.var), hist(outputs.fullsim, p, c.region, c.var)
            res[f"{p}/{c.key}"] = chi2_ndf(a.values, a.variances, b.values, b.variances)
    return res


def upsampling(outputs: DemoOutputs, process: str, folds: int) -> dict[str, float]:
    """``{<short>_error_folds1, <short>_error_folds<N>}``: mean relative error in %, same bins.

    The keys for N = 25 are ``dnn_error_folds25`` and ``zstar_error_folds25``.
    """
    res: dict[str, float] = {}
    for region, var, short in UPSAMPLING_HISTS:
        one = hist(outputs.flashsim, process, region, var)
        many = hist(outputs.flashsim_folds, process, region, var)
        e1, en = mean_rel_error(one, many)
        res[f"{short}_error_folds1"], res[f"{short}_error_folds{folds}"] = e1, en
    return res


@dataclass(frozen=True)
class ClosureResult:
    """Per histogram: VAR_Full, the prediction, REF_Full (all per unit Σ genWeight), χ²."""

    region: str
    var: str
    var_full: Hist1D
    prediction: Hist1D
    ref_full: Hist1D
    chi2: Chi2


def closure(outputs: DemoOutputs) -> dict[str, ClosureResult]:
    """``"<region>/<var>"`` → :class:`ClosureResult` for REF, VAR = :data:`CLOSURE`.

    VAR_Flash and REF_Flash are the upsampled FlashSim histograms (folds N).
    """
    ref, var = CLOSURE
    res: dict[str, ClosureResult] = {}
    if not all(p in out for p in CLOSURE for out in (outputs.fullsim, outputs.flashsim_folds)):
        return res
    for region, name in CLOSURE_HISTS:
        def h(attr: str, p: str) -> Hist1D:
            out = getattr(outputs, attr)
            return hist(out, p, region, name).scaled(1.0 / (out[p]["sumw"] or 1.0))

        ref_full, var_full = h("fullsim", ref), h("fullsim", var)
        pred = closure_prediction(ref_full, h("flashsim_folds", var), h("flashsim_folds", ref))
        res[f"{region}/{name}"] = ClosureResult(
            region, name, var_full, pred, ref_full,
            chi2_ndf(var_full.values, var_full.variances, pred.values, pred.variances),
        )
    return res
