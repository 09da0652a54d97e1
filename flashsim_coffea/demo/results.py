"""From the processor outputs to the demo's numbers (formulas in :mod:`.stats`).

* :func:`yields` / :func:`cutflows` — Σ genWeight per region and cutflow step, per mode;
  :func:`yield_ratios` — FlashSim / FullSim per region with its statistical error;
* :func:`flash_vs_full` — χ²/ndf FlashSim (folds 1) vs FullSim for every figure histogram;
* :func:`upsampling` — mean relative statistical error of FlashSim folds 1 vs folds N;
* :func:`variation` — the FlashSim-driven variation: VAR_Full vs REF_Full · VAR_Flash / REF_Flash
  (:func:`flashsim_coffea.outputs.flash_variation`, FlashSim with folds N);
* :func:`normalise` / :func:`expected_events` — σ·L normalisation per process
  (:func:`flashsim_coffea.runner.normalisation`: σ = the files' ``Runs/XSecPb``, Σw = their
  ``genEventSumw``) and the expected events per region, FullSim and FlashSim:
  N = Σ_selected genWeight · σ · L / Σw, stat. error √Σ genWeight² · σ · L / Σw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..analysis import CUTFLOW_STEPS, REGIONS
from .config import COMPARISONS, STACK, UPSAMPLING_HISTS, VARIATION, VARIATION_HISTS
from .runs import DemoOutputs
from ..outputs import flash_variation
from ..stats import Chi2, Hist1D, as_arrays, chi2_ndf, mean_rel_error, ratio_error

__all__ = ["MODES", "VariationResult", "cutflows", "expected_events", "flash_vs_full", "hist", "normalise",
           "upsampling", "variation", "yield_ratios", "yields"]

#: report name → attribute of DemoOutputs
MODES = {"FullSim": "fullsim", "FlashSim": "flashsim", "Gen": "gen"}


def hist(out: dict, process: str, region: str, var: str) -> Hist1D:
    """One histogram of a processor output as :class:`Hist1D`."""
    return as_arrays(out[process]["hists"][region][var])


def yields(outputs: DemoOutputs, errors: bool = False) -> dict[str, dict[str, dict[str, float]]]:
    """process → mode → region → Σ genWeight of the selected events (flow bins included); with
    ``errors``: their statistical errors, √Σ of the m_μμ histogram's bin variances."""
    res: dict[str, dict[str, dict[str, float]]] = {}
    for name, attr in MODES.items():
        for p, out in getattr(outputs, attr).items():
            hists = {r: out["hists"][r]["mass"] for r in REGIONS}
            res.setdefault(p, {})[name] = {r: float(math.sqrt(h.variances(flow=True).sum())) if errors
                                           else float(h.values(flow=True).sum()) for r, h in hists.items()}
    return res


def yield_ratios(outputs: DemoOutputs) -> dict[str, tuple[float, float]]:
    """``"<process>/<region>"`` → (FlashSim / FullSim yield, its statistical error,
    :func:`~flashsim_coffea.stats.ratio_error`)."""
    y, e = yields(outputs), yields(outputs, errors=True)
    return {f"{p}/{r}": ratio_error(y[p]["FlashSim"][r], e[p]["FlashSim"][r], y[p]["FullSim"][r], e[p]["FullSim"][r])
            for p in y if "FlashSim" in y[p] and "FullSim" in y[p] for r in REGIONS}


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
class VariationResult:
    """Per histogram: VAR_Full, the FlashSim-driven prediction of it, REF_Full (all per unit Σ genWeight), χ²."""

    region: str
    var: str
    var_full: Hist1D
    prediction: Hist1D
    ref_full: Hist1D
    chi2: Chi2


def variation(outputs: DemoOutputs) -> dict[str, VariationResult]:
    """``"<region>/<var>"`` → :class:`VariationResult` for REF, VAR = :data:`VARIATION`: the
    FlashSim-driven prediction of VAR_Full (:func:`flashsim_coffea.outputs.flash_variation`, with
    VAR_Flash and REF_Flash the upsampled FlashSim histograms, folds N) against the FullSim run of VAR.
    """
    ref, var = VARIATION
    res: dict[str, VariationResult] = {}
    if not all(p in out for p in VARIATION for out in (outputs.fullsim, outputs.flashsim_folds)):
        return res
    predicted = flash_variation(outputs.fullsim, outputs.flashsim_folds, ref, var)[ref]["hists"]
    for region, name in VARIATION_HISTS:
        def h(attr: str, p: str) -> Hist1D:
            out = getattr(outputs, attr)
            return hist(out, p, region, name).scaled(1.0 / (out[p]["sumw"] or 1.0))

        ref_full, var_full = h("fullsim", ref), h("fullsim", var)
        pred = as_arrays(predicted[region][name]).scaled(1.0 / (outputs.fullsim[ref]["sumw"] or 1.0))
        res[f"{region}/{name}"] = VariationResult(
            region, name, var_full, pred, ref_full,
            chi2_ndf(var_full.values, var_full.variances, pred.values, pred.variances),
        )
    return res


def normalise(samples: dict[str, Path], lumi_fb: float) -> dict[str, dict]:
    """process → ``{"xsec_pb", "lumi_fb", "sumw_runs", "norm_weight", ...}`` of
    :func:`flashsim_coffea.runner.normalisation` (UserError if a file has no cross section or Runs)."""
    from ..runner import canonical_fileset, normalisation

    fileset = canonical_fileset({p: {"files": {str(path): "Events"}} for p, path in samples.items()})
    return normalisation(fileset, lumi_fb)


def _expected(out: dict, region: str, norm_weight: float) -> tuple[float, float]:
    h = out["hists"][region]["mass"]
    var = h.variances(flow=True)
    err = math.sqrt(float(var.sum())) if var is not None else float("nan")
    return float(h.values(flow=True).sum()) * norm_weight, err * norm_weight


def expected_events(outputs: DemoOutputs, norm: dict[str, dict]) -> dict:
    """σ·L-normalised yields: ``{"lumi_fb", "stack": {region: [process]}, "regions": {region:
    {"processes": {p: {"FullSim", "FullSim_err", "FlashSim", "FlashSim_err", "ratio", "ratio_err", "xsec_pb",
    "norm_weight", "sumw_runs", "in_stack"}}, "total": {...}}}}`` (total: the stacked processes)."""
    lumi = next(iter(norm.values()))["lumi_fb"] if norm else float("nan")
    res: dict = {"lumi_fb": lumi, "stack": {r: [p for p in STACK[r] if p in norm] for r in STACK}, "regions": {}}
    for region in REGIONS:
        per: dict[str, dict] = {}
        for p, n in norm.items():
            if p not in outputs.fullsim or p not in outputs.flashsim:
                continue
            full, full_err = _expected(outputs.fullsim[p], region, n["norm_weight"])
            flash, flash_err = _expected(outputs.flashsim[p], region, n["norm_weight"])
            r, r_err = ratio_error(flash, flash_err, full, full_err)
            per[p] = {"FullSim": full, "FullSim_err": full_err, "FlashSim": flash, "FlashSim_err": flash_err,
                      "ratio": r, "ratio_err": r_err, "xsec_pb": n["xsec_pb"],
                      "norm_weight": n["norm_weight"], "sumw_runs": n["sumw_runs"],
                      "in_stack": p in STACK.get(region, ())}
        stacked = [per[p] for p in STACK.get(region, ()) if p in per]
        total = {m: sum(x[m] for x in stacked) for m in ("FullSim", "FlashSim")}
        total.update({f"{m}_err": math.sqrt(sum(x[f"{m}_err"] ** 2 for x in stacked)) for m in ("FullSim", "FlashSim")})
        total["ratio"], total["ratio_err"] = ratio_error(total["FlashSim"], total["FlashSim_err"], total["FullSim"],
                                                         total["FullSim_err"])
        res["regions"][region] = {"processes": per, "total": total}
    return res
