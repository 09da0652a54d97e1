#!/usr/bin/env python
"""Compare two ``flashsim run`` outputs bit for bit: cutflows, Σw, events and every histogram.

    python scripts/compare_outputs.py BEFORE.coffea AFTER.coffea [--ignore VAR ...]

Prints one line per dataset (histograms compared, identical or not) and every difference
(dataset/region/variable, largest |Δ| of the values and variances); exits 1 when anything
differs. ``--ignore`` skips variables whose binning changed on purpose (e.g. ``dnn_atanh``).
Used to show that a refactoring leaves the analysis output unchanged.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from coffea.util import load


def _hists(res: dict):
    for region, hists in res.get("hists", {}).items():
        for var, h in hists.items():
            yield region, var, h


def compare(a: dict, b: dict, ignore: set[str]) -> list[str]:
    """Differences between outputs ``a`` and ``b`` (empty when identical)."""
    diffs = []
    if set(a) != set(b):
        diffs.append(f"datasets differ: {sorted(a)} vs {sorted(b)}")
    for ds in sorted(set(a) & set(b)):
        ra, rb = a[ds], b[ds]
        for key in ("cutflow", "cutflow_weighted", "sumw", "nevents"):
            if ra.get(key) != rb.get(key):
                diffs.append(f"{ds}: {key} {ra.get(key)} != {rb.get(key)}")
        hb = {(r, v): h for r, v, h in _hists(rb)}
        n = same = 0
        for region, var, h in _hists(ra):
            if var in ignore:
                continue
            n += 1
            other = hb.get((region, var))
            if other is None:
                diffs.append(f"{ds}/{region}/{var}: missing in the second output")
                continue
            va, vb = h.values(flow=True), other.values(flow=True)
            wa, wb = h.variances(flow=True), other.variances(flow=True)
            if va.shape == vb.shape and np.array_equal(va, vb) and np.array_equal(wa, wb):
                same += 1
            else:
                d = np.max(np.abs(va - vb)) if va.shape == vb.shape else "shape"
                diffs.append(f"{ds}/{region}/{var}: values differ (max |Δ| {d})")
        print(f"{ds}: {same}/{n} histograms identical")
    return diffs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--ignore", nargs="*", default=[], help="variables not compared")
    args = p.parse_args(argv)
    diffs = compare(load(args.before), load(args.after), set(args.ignore))
    for d in diffs:
        print("DIFF", d)
    print("identical" if not diffs else f"{len(diffs)} difference(s)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
