"""Print the markdown tables of docs/flows.md from the shipped models' validation reports.

    python scripts/validation_table.py [jets muons]

Rows: C2ST AUC, then the W1 ratio W1(FlashSim, ref) / W1(ref′, ref) of the targets in spec
order, three per row; columns: the held-out samples tt/dy/vbf (sizes from provenance.json).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parents[1] / "flashsim_coffea" / "models"
SAMPLES = (("tt", "tt̄"), ("dy", "DY"), ("vbf", "VBF H→μμ"))


def table(spec: str) -> str:
    reports = [MODELS / spec / "validation" / s for s, _ in SAMPLES]
    metrics = [json.loads((r / "metrics.json").read_text()) for r in reports]
    sizes = [json.loads((r / "provenance.json").read_text())["n_ref"] for r in reports]
    head = " | ".join(f"{label} ({n / 1000:.1f}k)" for (_, label), n in zip(SAMPLES, sizes))
    lines = [f"| {spec} | {head} |", "|---" * (len(SAMPLES) + 1) + "|",
             "| C2ST AUC | " + " | ".join(f"{m['c2st_auc']:.3f}" for m in metrics) + " |"]
    names = list(metrics[0]["targets"])
    for i in range(0, len(names), 3):
        group = names[i : i + 3]
        cells = [" / ".join(f"{m['targets'][t]['ratio']:.2f}" for t in group) for m in metrics]
        lines.append(f"| {' / '.join(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    for spec in sys.argv[1:] or ["jets", "muons"]:
        print(table(spec) + "\n")
