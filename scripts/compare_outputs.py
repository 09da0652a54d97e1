#!/usr/bin/env python
"""Compare two ``flashsim run`` outputs bit for bit: cutflows, Σw, events and every histogram.

    python scripts/compare_outputs.py BEFORE.coffea AFTER.coffea [--ignore VAR ...] [--fold-rtol R]

Prints one line per dataset (histograms compared, identical or not) and every difference
(dataset/region/variable, largest |Δ| of the values and variances); exits 1 when anything
differs. ``--ignore`` skips variables whose binning changed on purpose (e.g. ``dnn_atanh``);
``--fold-rtol R`` compares folded histograms (and their weighted cutflow) to R relative — they are
identical across chunkings and executors only to floating-point rounding (1e-12 is safe).
Used to show that a refactoring leaves the analysis output unchanged.
"""

from __future__ import annotations

import argparse
import sys

from coffea.util import load

from flashsim_coffea.outputs import output_differences


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--ignore", nargs="*", default=[], help="variables not compared")
    p.add_argument("--fold-rtol", type=float, default=0.0, help="relative tolerance for folded histograms (default: bit for bit)")
    args = p.parse_args(argv)
    before, after = load(args.before), load(args.after)
    diffs = output_differences(before, after, set(args.ignore), fold_rtol=args.fold_rtol)
    for ds, res in before.items():
        n = sum(var not in args.ignore for hists in res.get("hists", {}).values() for var in hists)
        bad = sum(line.startswith(f"{ds}/") for line in diffs)
        print(f"{ds}: {n - bad}/{n} histograms identical")
    for d in diffs:
        print("DIFF", d)
    print("identical" if not diffs else f"{len(diffs)} difference(s)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
