"""Analysis-ready histograms: one ``hist.Hist`` per variable with dataset, region and variation axes.

A processor run (:func:`flashsim_coffea.runner.run_processor`) returns, per dataset, the
histograms per region and variable (``out[dataset]["hists"][region][variable]``, ``hist.Hist``
or :class:`~flashsim_coffea.hists.FoldHist`). :func:`by_variable` turns them into what analysts
slice::

    hists = by_variable(out)                     # {variable: hist.Hist}
    h = hists["mass"]                            # axes: dataset, region, variation, mass
    h[{"dataset": "vbf_hmm", "region": "SR", "variation": "nominal"}]

with ``Weight()`` storage (FoldHists enter with their fold-weighted values and variances, i.e.
content Σ w·c/N and error √Σ (w·c/N)² per Gen event).

**FlashSim-driven variation** (the reference FlashSim study's use of FlashSim for systematics,
docs/analysis.md): the effect of a variation (e.g. an alternative generator) is measured with
FlashSim, where it is cheap, and applied to the FullSim nominal, bin by bin::

    VAR_Full ≈ PRED = REF_Full · (VAR_Flash / Σw_VAR) / (REF_Flash / Σw_REF)
    σ_PRED² = PRED² (σ_RF²/RF² + σ_VF²/VF² + σ_RFl²/RFl²)      (inputs taken as independent)

(PRED = 0 with no error where an input bin is empty). :func:`flash_variation` returns it in the
layout of a run's output, so it enters :func:`by_variable` as one more entry of the variation
axis; ``flashsim demo`` compares it with the FullSim run of the varied sample.

ROOT files for fit tools (:func:`write_root`): one TH1 per dataset, region, variable and
variation, named ``DATASET/REGION/VARIABLE`` (nominal) and ``DATASET/REGION/VARIABLE_VARIATION``
(the ``$PROCESS_$SYSTEMATIC`` convention of CMS combine shape files).

Saved outputs (:func:`portable`): the ``.coffea`` file of a run holds every FoldHist as a plain
``hist.Hist`` (:meth:`~flashsim_coffea.hists.FoldHist.to_hist`: same values and variances, the
folds in its attribute ``folds``), so it opens with coffea and hist alone.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hist
import numpy as np

from .hists import FoldHist, folds_of
from .stats import Hist1D, as_arrays

__all__ = ["NOMINAL", "by_variable", "flash_variation", "output_differences", "portable", "write_root"]

NOMINAL = "nominal"


def _plain(h) -> hist.Hist:
    """A Weight-storage ``hist.Hist`` (FoldHists: fold-weighted values and variances)."""
    return h.to_hist() if isinstance(h, FoldHist) else h


def portable(output: Any) -> Any:
    """A copy of a run's output (nested dicts, lists, tuples) with every FoldHist replaced by its
    plain ``hist.Hist`` (:meth:`~flashsim_coffea.hists.FoldHist.to_hist`, ``folds`` kept as its
    attribute): what :func:`flashsim_coffea.runner.save_outputs` writes, so that the file opens
    without flashsim_coffea. Other objects are shared with ``output``, not copied."""
    if isinstance(output, FoldHist):
        return output.to_hist()
    if isinstance(output, dict):
        out = copy.copy(output)  # keeps a dict subclass' type (and a defaultdict's factory)
        for key, value in output.items():
            out[key] = portable(value)
        return out
    if isinstance(output, list):
        return [portable(v) for v in output]
    if type(output) is tuple:
        return tuple(portable(v) for v in output)
    return output


def by_variable(output: Mapping, variations: Mapping[str, Mapping] | None = None) -> dict[str, hist.Hist]:
    """``{variable: hist.Hist(dataset, region, variation, x)}`` from a run's output (nominal) and
    ``variations`` (``{name: output-like mapping}``, e.g. from :func:`flash_variation`)."""
    entries: dict[str, list[tuple[str, str, str, hist.Hist]]] = {}
    for variation, out in ((NOMINAL, output), *((variations or {}).items())):
        for ds, res in out.items():
            for region, hists in res.get("hists", {}).items():
                for var, h in hists.items():
                    entries.setdefault(var, []).append((ds, region, variation, _plain(h)))
    result = {}
    for var, items in entries.items():
        axis = items[0][3].axes[0]
        names = [sorted({it[i] for it in items}, key=lambda s, i=i: [x[i] for x in items].index(s)) for i in range(3)]
        out = hist.Hist(hist.axis.StrCategory(names[0], name="dataset", label="dataset"),
                        hist.axis.StrCategory(names[1], name="region", label="region"),
                        hist.axis.StrCategory(names[2], name="variation", label="systematic variation"),
                        axis, storage=hist.storage.Weight())
        view = out.view(flow=True)
        for ds, region, variation, h in items:
            if h.axes[0] != axis:
                raise ValueError(f"{ds}/{region}/{var} ({variation}) has another binning than the other entries")
            i, j, k = (out.axes[n].index(v) for n, v in (("dataset", ds), ("region", region), ("variation", variation)))
            view.value[i, j, k] = h.values(flow=True)
            view.variance[i, j, k] = h.variances(flow=True)
        result[var] = out
    return result


def _from_arrays(template: hist.Hist, values: np.ndarray, variances: np.ndarray) -> hist.Hist:
    """A Weight-storage copy of ``template``'s binning holding ``values``/``variances`` (no flow)."""
    out = hist.Hist(template.axes[0], storage=hist.storage.Weight())
    view = out.view(flow=False)
    view.value, view.variance = values, variances
    return out


def _predict(ref_full: Hist1D, var_flash: Hist1D, ref_flash: Hist1D) -> Hist1D:
    """PRED = REF_Full · VAR_Flash / REF_Flash bin by bin with its propagated variance (module docstring)."""
    ok = (ref_flash.values > 0) & (ref_full.values > 0) & (var_flash.values > 0)
    rf, vf, rl = (np.where(ok, h.values, 1.0) for h in (ref_full, var_flash, ref_flash))
    pred = np.where(ok, rf * vf / rl, 0.0)
    rel2 = ref_full.variances / rf**2 + var_flash.variances / vf**2 + ref_flash.variances / rl**2
    return Hist1D(pred, np.where(ok, pred**2 * rel2, 0.0), ref_full.edges)


def flash_variation(full: Mapping, flash: Mapping, reference: str, varied: str, dataset: str | None = None) -> dict:
    """The FlashSim-driven variation of ``reference`` (module docstring) in the layout of a run's
    output: ``{dataset: {"hists": {region: {variable: hist.Hist}}}}`` with PRED for every
    histogram of ``full[reference]``; ``flash`` holds FlashSim runs of both ``reference`` and
    ``varied`` (e.g. upsampled). ``dataset``: the name it is filed under (default ``reference``)."""
    missing = [f"{name} in {what}" for what, out, names in (("the FullSim output", full, (reference,)),
                                                             ("the FlashSim output", flash, (reference, varied)))
               for name in names if name not in out]
    if missing:
        raise KeyError(f"flash_variation needs {', '.join(missing)}")

    def shape(res: Mapping, region: str, var: str) -> Hist1D:
        return as_arrays(res["hists"][region][var]).scaled(1.0 / (res["sumw"] or 1.0))

    hists: dict[str, dict[str, hist.Hist]] = {}
    for region, by_var in full[reference]["hists"].items():
        for var, h in by_var.items():
            pred = _predict(as_arrays(h), shape(flash[varied], region, var), shape(flash[reference], region, var))
            hists.setdefault(region, {})[var] = _from_arrays(_plain(h), pred.values, pred.variances)
    return {dataset or reference: {"hists": hists}}


def write_root(hists: Mapping[str, hist.Hist], path: str | Path) -> int:
    """Write :func:`by_variable` histograms as one TH1 per dataset/region/variable/variation
    (names in the module docstring) with uproot; returns how many."""
    import uproot

    n = 0
    with uproot.recreate(path) as f:
        for var, h in hists.items():
            for ds in h.axes["dataset"]:
                for region in h.axes["region"]:
                    for variation in h.axes["variation"]:
                        one = h[{"dataset": ds, "region": region, "variation": variation}]
                        if variation != NOMINAL and one.values(flow=True).sum() == 0 and one.variances(flow=True).sum() == 0:
                            continue  # a variation defined for other datasets/regions only
                        f[f"{ds}/{region}/{var}" + ("" if variation == NOMINAL else f"_{variation}")] = one
                        n += 1
    return n


def _binning(h) -> list[tuple]:
    """Each axis' type, name and bin edges (numeric) or categories, for comparing binnings."""
    return [(type(ax).__name__, ax.name, tuple(ax.edges) if ax.traits.continuous else tuple(ax)) for ax in h.axes]


def _close(a: np.ndarray, b: np.ndarray, rtol: float, floor: np.ndarray | float = 0.0) -> bool:
    """Equal bin by bin (``rtol`` = 0), or |a − b| ≤ rtol · (max(|a|, |b|) + floor) per bin."""
    if rtol == 0:
        return np.array_equal(a, b)
    return bool(np.all(np.abs(a - b) <= rtol * (np.maximum(np.abs(a), np.abs(b)) + floor)))


def _same_sums(a: Mapping | None, b: Mapping | None, rtol: float) -> bool:
    """Weighted cutflows: equal, or (``rtol`` > 0) equal to ``rtol`` per step — with folds each pair
    carries w/N, whose sums depend on the order of addition in the last bits."""
    if rtol == 0 or a is None or b is None or set(a) != set(b):
        return a == b
    return all(_close(np.asarray(a[k], dtype=float), np.asarray(b[k], dtype=float), rtol) for k in a)


def output_differences(a: Mapping, b: Mapping, ignore: tuple[str, ...] | set[str] = (),
                       fold_rtol: float = 0.0) -> list[str]:
    """How two run outputs differ, one line per difference (empty: identical): datasets, their
    cutflow, cutflow_weighted, sumw and nevents, and every histogram's binning, folds
    (:func:`~flashsim_coffea.hists.folds_of`: a FoldHist and its saved plain copy compare equal),
    values and variances (flow bins included); variables in ``ignore`` are not compared.
    ``cutflow_weighted`` of a folded output is compared to ``fold_rtol`` as well (Σ of the pairs' w/N).

    Histograms are compared bit for bit, except those with folds > 1 when ``fold_rtol`` > 0: a
    folded histogram is identical across chunkings and executors only to floating-point
    rounding (relative ≲ 1e-15; :mod:`flashsim_coffea.hists`), so its variances are compared to
    ``fold_rtol`` relative per bin and its values to ``fold_rtol`` · (|value| + √variance) (a bin
    whose weights cancel keeps the rounding of its terms). Used by the executor/chunking
    identity tests (``fold_rtol=1e-12``) and ``scripts/compare_outputs.py`` (bit for bit)."""
    diffs = [] if set(a) == set(b) else [f"datasets differ: {sorted(a)} vs {sorted(b)}"]
    for ds in sorted(set(a) & set(b)):
        ra, rb = a[ds], b[ds]
        diffs += [f"{ds}: {key} {ra.get(key)} != {rb.get(key)}"
                  for key in ("cutflow", "sumw", "nevents") if ra.get(key) != rb.get(key)]
        folded = any(folds_of(h) > 1 for hs in ra.get("hists", {}).values() for h in hs.values())
        if not _same_sums(ra.get("cutflow_weighted"), rb.get("cutflow_weighted"), fold_rtol if folded else 0.0):
            diffs.append(f"{ds}: cutflow_weighted {ra.get('cutflow_weighted')} != {rb.get('cutflow_weighted')}")
        for region, hists in ra.get("hists", {}).items():
            for var, h in hists.items():
                if var in ignore:
                    continue
                other = rb.get("hists", {}).get(region, {}).get(var)
                if other is None:
                    diffs.append(f"{ds}/{region}/{var}: missing in the second output")
                    continue
                where = f"{ds}/{region}/{var}"
                if _binning(h) != _binning(other):
                    diffs.append(f"{where}: binning differs")
                    continue
                if folds_of(h) != folds_of(other):
                    diffs.append(f"{where}: folds differ ({folds_of(h)} vs {folds_of(other)})")
                    continue
                rtol = fold_rtol if folds_of(h) > 1 else 0.0
                va, vb = h.values(flow=True), other.values(flow=True)
                wa, wb = h.variances(flow=True), other.variances(flow=True)
                if wa is None or wb is None:
                    same = wa is None and wb is None and _close(va, vb, rtol)
                else:  # a value's rounding scales with Σ|terms| ≥ its error √variance (cancelling weights)
                    same = _close(wa, wb, rtol) and _close(va, vb, rtol, np.sqrt(np.maximum(np.abs(wa), np.abs(wb))))
                if not same:
                    diffs.append(f"{where}: values differ (max |Δ| {np.max(np.abs(va - vb), initial=0.0):.3g})")
    return diffs
