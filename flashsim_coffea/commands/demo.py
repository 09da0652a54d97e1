"""``flashsim demo [-o DIR] [--events N] [--folds N] [--executor iterative|futures|dask] [--workers W]
[--force]``: FullSim vs FlashSim vs Gen on the VBF H→μμ analysis, upsampling and a
FlashSim-driven variation (alternative generator), on the bundled samples and shipped models; report in DIR
(``summary.md`` with figures, ``summary.json``). See :mod:`flashsim_coffea.demo`.

``--events N`` generates N events of each process with ``flashsim generate`` (the bundled
samples' seeds and filters; cached in ``DIR/samples``) instead of using the bundled ones;
``--samples FOLDER`` uses ``FOLDER/<process>.root``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import add_no_progress

NAME = "demo"
HELP = "the analysis comparison report: FullSim vs FlashSim vs Gen, upsampling, systematics (bundled samples)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="flashsim-demo", help="report folder (default: flashsim-demo/)")
    p.add_argument("--events", type=int, default=None,
                   help="generate N events per process with `flashsim generate` instead of the bundled samples")
    p.add_argument("--samples", metavar="FOLDER", help="use FOLDER/<process>.root instead of the bundled samples")
    p.add_argument("--folds", type=int, default=25, help="FlashSim upsampling factor of the comparison (default 25)")
    p.add_argument("--single-event-folds", type=int, default=10_000,
                   help="folds of the one-Gen-event study (default 10000)")
    p.add_argument("--executor", choices=["iterative", "futures", "dask"], default="futures", help="coffea executor (default futures)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (futures, dask LocalCluster)")
    p.add_argument("--chunksize", type=int, default=1000, help="events per chunk")
    p.add_argument("--jets-model", help="FlashSim jets model folder (default: the shipped one)")
    p.add_argument("--muons-model", help="FlashSim muons model folder (default: the shipped one)")
    p.add_argument("--force", action="store_true", help="overwrite the report in a non-empty output folder")
    add_no_progress(p, "no progress lines", deprecated=("--quiet",))


def run(args: argparse.Namespace) -> int:
    from ..demo import DemoConfig, run_demo
    from ..errors import UserError

    if args.events is not None and args.samples:
        raise UserError("give either --events or --samples, not both")
    models = {k: Path(v) for k, v in (("jets", args.jets_model), ("muons", args.muons_model)) if v}
    cfg = DemoConfig(
        output=Path(args.output), events=args.events, folds=args.folds, single_event_folds=args.single_event_folds,
        executor=args.executor, workers=args.workers, chunksize=args.chunksize, force=args.force,
        sample_dir=Path(args.samples) if args.samples else None, models=models or None, progress=not args.no_progress,
    )
    s = run_demo(cfg)
    up = s["upsampling"]
    f = cfg.folds
    print(f"report: {cfg.output / 'summary.md'} ({len(s['figures'])} figures, {s['wall_time_s']:.0f} s)")
    print(f"  FlashSim/FullSim yield, VBF H->mumu SR: {s['flash_full_yield_ratio'].get('vbf_hmm/SR', float('nan')):.3f}")
    if "dnn_error_folds1" in up:
        print(f"  mean stat. error folds 1 -> {f}: DNN18Atan {up['dnn_error_folds1']:.1f} -> {up[f'dnn_error_folds{f}']:.1f} %, "
              f"ln z* {up['zstar_error_folds1']:.1f} -> {up[f'zstar_error_folds{f}']:.1f} %")
    print(f"  FlashSim-driven variation vs FullSim, chi2/ndf (DNN18Atan, SR): {s['variation_chi2_ndf']:.2f}")
    return 0
