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

**FlashSim-driven variation** (the seed thesis' use of FlashSim for systematics): the effect
of a variation (e.g. an alternative generator) is measured with FlashSim, where it is cheap,
and applied to the FullSim nominal, bin by bin::

    VAR_Full ≈ PRED = REF_Full · (VAR_Flash / Σw_VAR) / (REF_Flash / Σw_REF)
    σ_PRED² = PRED² (σ_RF²/RF² + σ_VF²/VF² + σ_RFl²/RFl²)

(:func:`flashsim_coffea.stats.closure_prediction` on per-unit-Σw FlashSim shapes;
PRED = 0 where an input bin is empty). :func:`flash_variation` returns it in the layout of a
run's output, so it enters :func:`by_variable` as one more entry of the variation axis.

ROOT files for fit tools (:func:`write_root`): one TH1 per dataset, region, variable and
variation, named ``DATASET/REGION/VARIABLE`` (nominal) and ``DATASET/REGION/VARIABLE_VARIATION``
(the ``$PROCESS_$SYSTEMATIC`` convention of CMS combine shape files).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import hist
import numpy as np

from .hists import FoldHist
from .stats import Hist1D, as_arrays, closure_prediction

__all__ = ["NOMINAL", "by_variable", "flash_variation", "output_differences", "write_root"]

NOMINAL = "nominal"


def _plain(h) -> hist.Hist:
    """A Weight-storage ``hist.Hist`` (FoldHists: fold-weighted values and variances)."""
    return h.to_hist() if isinstance(h, FoldHist) else h


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
            pred = closure_prediction(as_arrays(h), shape(flash[varied], region, var), shape(flash[reference], region, var))
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


def output_differences(a: Mapping, b: Mapping, ignore: tuple[str, ...] | set[str] = ()) -> list[str]:
    """How two run outputs differ, one line per difference (empty: identical bit for bit): datasets,
    their cutflow, cutflow_weighted, sumw and nevents, and every histogram's values and variances
    (flow bins included); variables in ``ignore`` are not compared. Used by the executor/chunking
    identity tests and ``scripts/compare_outputs.py``."""
    diffs = [] if set(a) == set(b) else [f"datasets differ: {sorted(a)} vs {sorted(b)}"]
    for ds in sorted(set(a) & set(b)):
        ra, rb = a[ds], b[ds]
        diffs += [f"{ds}: {key} {ra.get(key)} != {rb.get(key)}"
                  for key in ("cutflow", "cutflow_weighted", "sumw", "nevents") if ra.get(key) != rb.get(key)]
        for region, hists in ra.get("hists", {}).items():
            for var, h in hists.items():
                if var in ignore:
                    continue
                other = rb.get("hists", {}).get(region, {}).get(var)
                if other is None:
                    diffs.append(f"{ds}/{region}/{var}: missing in the second output")
                    continue
                va, vb = h.values(flow=True), other.values(flow=True)
                if va.shape != vb.shape:
                    diffs.append(f"{ds}/{region}/{var}: binning differs")
                elif not (np.array_equal(va, vb) and np.array_equal(h.variances(flow=True), other.variances(flow=True))):
                    diffs.append(f"{ds}/{region}/{var}: values differ (max |Δ| {np.max(np.abs(va - vb)):.3g})")
    return diffs
