"""Where the time goes in ``VBFHmmProcessor`` (flashsim mode): a cProfile breakdown.

Runs the processor once (iterative executor, one chunk) under ``cProfile`` and prints the
cumulative seconds of the stages below, and their share of the whole ``process()``:

    process                       the whole processor call per chunk
    ├─ FlashSim._prepare          Gen objects, conditioning matrix, noise keys (once per chunk)
    ├─ FlowModel.sample           flow sampling, of which
    │  ├─ FlowModel.base_noise    counter-based Gaussian noise
    │  ├─ FastInverse.__call__    the flow inverse (matrix products + spline inverses)
    │  └─ Preprocessor.decode_targets / in_support
    ├─ ObjectSpec.rebuild         targets → NanoAOD fields (pt = ptRatio·pt_gen, snapping, precision)
    └─ analyse                    the selection, variables and DNN

Usage: ``python benchmarks/profile_processor.py [--events 10000] [--folds 1]`` (builds its input
like ``bench_processor.py``). The last line is JSON.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = {
    "process": ("vbf_hmumu.py", "process"),
    "prepare (conditioning)": ("inject.py", "_prepare"),
    "sample": ("sampler.py", "sample"),
    "base_noise": ("sampler.py", "base_noise"),
    "flow inverse": ("fast_inverse.py", "__call__"),
    "decode_targets": ("preprocess.py", "decode_targets"),
    "in_support": ("preprocess.py", "in_support"),
    "rebuild": ("spec.py", "rebuild"),
    "analyse": ("pipeline.py", "analyse"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--folds", type=int, default=1)
    parser.add_argument("--source", default=str(ROOT / "flashsim_coffea" / "samples" / "vbf_hmm.root"))
    parser.add_argument("--workdir", default=str(ROOT / "benchmarks" / "data"))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_processor import build_input, run_iterative
    from machine import machine_info

    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    src = Path(args.source)
    path = build_input(src, args.events, Path(args.workdir) / f"{src.stem}_{args.events}.root")
    run_iterative(path, "flashsim", 1, 2_000)  # warm-up: imports, models, page cache
    prof = cProfile.Profile()
    prof.enable()
    run_iterative(path, "flashsim", args.folds, max(args.events, 1))
    prof.disable()
    stats = pstats.Stats(prof).stats  # {(file, line, func): (cc, nc, tt, ct, callers)}
    seconds = {}
    for label, (file, func) in STAGES.items():
        seconds[label] = round(sum(v[3] for k, v in stats.items() if k[0].endswith(file) and k[2] == func), 3)
    total = seconds["process"] or 1.0
    for label, s in seconds.items():
        print(f"{label:24s} {s:8.3f} s  {100 * s / total:5.1f} %")
    print(json.dumps({"events": args.events, "folds": args.folds, "seconds": seconds, "machine": machine_info()}))


if __name__ == "__main__":
    main()
