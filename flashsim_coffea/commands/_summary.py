"""The summary ``flashsim run`` prints per dataset, from the VBF H→μμ processor's output.

* :func:`region_yields` — Σ weights per region: the content of the region's ``mass``
  histogram (its first histogram when it has none), flow bins included, fold-weighted for
  FlashSims; the expected events when the run was normalised.
* :func:`format_summary` — per dataset: events, Σ weights, the SR yield and the cutflow; with a
  normalisation the luminosity, σ, Σ genEventSumw, ``norm_weight`` and the expected events per
  region; FlashSim's counts; skipped and empty files.

This module's name starts with ``_``: :mod:`flashsim_coffea.cli` does not take it for a command.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["format_summary", "region_yields"]


def region_yields(res: Mapping) -> dict[str, float]:
    """Σ weights per region (content of its ``mass`` histogram, flow bins included; fold-weighted
    for FoldHists): expected events when the run was normalised."""
    out = {}
    for region, hists in res.get("hists", {}).items():
        h = hists["mass"] if "mass" in hists else next(iter(hists.values()), None)
        if h is not None:
            out[region] = float(h.values(flow=True).sum())
    return out


def format_summary(out: Mapping) -> list[str]:
    """The lines ``flashsim run`` prints per dataset: events, Σ weights, SR, cutflow, FlashSim's
    counts, skipped and empty files, and with a normalisation the expected events per region."""
    lines = []
    for ds, res in out.items():
        cf = res.get("cutflow", {})
        yields = region_yields(res)
        lines.append(f"{ds}: {res.get('nevents', 0)} events, sumw {res.get('sumw', 0.0):.6g}, "
                     f"SR {yields.get('SR', 0.0):.4g} (weighted); cutflow "
                     + " → ".join(f"{k} {v:g}" for k, v in cf.items()))
        norm = res.get("normalisation")
        if norm:
            regions = ", ".join(f"{r} {y:.4g}" for r, y in yields.items())
            lines.append(f"  expected events for L = {norm['lumi_fb']:g} fb^-1 (xsec {norm['xsec_pb']:.6g} pb, "
                         f"sum genEventSumw {norm['sumw_runs']:.6g}, norm_weight {norm['norm_weight']:.6g}): {regions}")
            for f in norm.get("files_without_runs", []):
                lines.append(f"  not in the normalisation (unreadable): {f}")
        if res.get("flashsim"):  # FlashSim's counts summed over the run (never warned per chunk)
            from ..inject import describe_counts

            lines += [f"  FlashSim {line}" for line in describe_counts(res["flashsim"])]
        for f, n in res.get("skipped", {}).items():
            lines.append(f"  skipped {f}: {n}" + (" events not processed" if isinstance(n, int) else ""))
        for f in res.get("empty_files", []):
            lines.append(f"  empty file {f}")
    return lines
