"""``flashsim run FILESET.json|FILES... --mode fullsim|flashsim|gen --folds N
--executor iterative|futures|dask [--workers W] [--scheduler ADDRESS] [--chunksize C]
[--lumi L] [--threads T] -o OUT.coffea [--root HISTS.root] [--force] [--skip-bad-files]``

A thin command line over :mod:`flashsim_coffea.runner` (which documents the fileset forms,
executors, bad-input policy, normalisation and outputs): it builds
:class:`flashsim_coffea.processors.VBFHmmProcessor` from the options
(:func:`flashsim_coffea.runner.build.make_processor`), checks the output paths before any work
(never an input, ``-o`` ≠ ``--root``, an existing file only with ``--force``, a writable
folder), runs :func:`~flashsim_coffea.runner.run_processor`, saves the output with
``coffea.util.save`` (``--root``: every histogram as ``DATASET/REGION/VARIABLE``) and prints a
summary per dataset (:mod:`flashsim_coffea.commands._summary`) — with ``--lumi`` (fb⁻¹) the
expected events per region (presel, SR, SB).
"""

from __future__ import annotations

import argparse
import math
import time

from ..runner import EXECUTORS

NAME = "run"
HELP = "run the VBF H->mumu processor (fullsim, flashsim or gen mode) with a coffea executor"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="FILESET.json|FILE.root",
                   help="a coffea fileset JSON or ROOT files (each file once)")
    p.add_argument("--mode", choices=["fullsim", "flashsim", "gen"], default="fullsim")
    p.add_argument("--folds", type=int, default=1, help="FlashSim upsampling factor N (flashsim mode)")
    p.add_argument("--executor", choices=EXECUTORS, default="iterative")
    p.add_argument("--workers", type=int, default=2, help="worker processes (futures, dask LocalCluster)")
    p.add_argument("--scheduler", help="address of a running dask scheduler (dask executor; default: a LocalCluster)")
    p.add_argument("--chunksize", type=int, default=100_000)
    p.add_argument("--lumi", type=float, metavar="L",
                   help="normalise to L fb^-1: genWeight x xsec*L*1000/sum(genEventSumw) per dataset "
                        "(xsec in pb from the fileset metadata 'xsec' or the files' Runs/XSecPb)")
    p.add_argument("--no-dnn", action="store_true", help="do not evaluate the DNN")
    p.add_argument("--dnn-model", help="DNN model folder (default: the shipped one)")
    p.add_argument("--jets-model", help="FlashSim jets flow folder (flashsim mode; default: the shipped one)")
    p.add_argument("--muons-model", help="FlashSim muons flow folder (flashsim mode; default: the shipped one)")
    p.add_argument("--pileup-jets-model", metavar="DIR|none",
                   help="FlashSim pile-up jets model folder, or none for no pile-up jets (flashsim mode; default: the shipped one)")
    p.add_argument("--threads", type=int, default=None, metavar="T",
                   help="FlashSim sampling threads per worker (flashsim mode): T blocks of objects sampled at once, "
                        "the same samples for every T (default: this machine's cores with --executor iterative, "
                        "1 per worker process otherwise)")
    p.add_argument("--device", default="cpu", help="where FlashSim samples the flows: cpu (default) or cuda (flashsim mode)")
    p.add_argument("--precision", default="float32",
                   help="FlashSim flow products in float32 (default) or bfloat16 (~1.1-1.2x faster on CPUs with AMX; flashsim mode)")
    p.add_argument("--skip-bad-files", action="store_true", help="skip unreadable files/corrupt baskets and report them")
    p.add_argument("-o", "--output", required=True, help="output file (coffea.util.save)")
    p.add_argument("--root", help="also write the histograms to this ROOT file")
    p.add_argument("--force", action="store_true", help="overwrite existing output files (never an input)")


def _processor(args: argparse.Namespace):
    """The VBFHmmProcessor the options describe (UserError for options that do not fit the mode)."""
    from ..runner.build import make_processor

    return make_processor(
        args.mode, args.folds, dnn=False if args.no_dnn else (args.dnn_model or True),
        models={"jets": args.jets_model, "muons": args.muons_model, "pileup_jets": args.pileup_jets_model},
        threads=args.threads, device=args.device, precision=args.precision, executor=args.executor)


def run(args: argparse.Namespace) -> int:
    """``flashsim run`` (module docstring): options checked, outputs checked, run, saved, summary printed."""
    from .. import runner
    from ..errors import UserError
    from ..runner.output import lock_outputs
    from ._summary import format_summary

    if args.workers < 1:
        raise UserError(f"--workers must be ≥ 1, got {args.workers}")
    if args.scheduler and args.executor != "dask":
        raise UserError("--scheduler needs --executor dask")
    if args.chunksize < 1:
        raise UserError(f"--chunksize must be ≥ 1, got {args.chunksize}")
    if args.lumi is not None and not (math.isfinite(args.lumi) and args.lumi > 0):
        raise UserError(f"--lumi must be a positive integrated luminosity in fb^-1, got {args.lumi}")
    proc = _processor(args)  # option errors first; it loads no model (that is proc.check(), in run_processor)
    fileset = runner.load_fileset(args.inputs)
    json_inputs = [i for i in args.inputs if str(i).endswith(".json")]
    runner.check_outputs(args.output, args.root, inputs=[*json_inputs, fileset], force=args.force)
    with lock_outputs(args.output, args.root):  # a second run to the same file fails at once
        t0 = time.perf_counter()
        out = runner.run_processor(fileset, proc, args.executor, args.workers, args.scheduler, args.chunksize,
                                   args.skip_bad_files, lumi=args.lumi)
        dt = time.perf_counter() - t0
        runner.save_outputs(out, args.output)
        for line in format_summary(out):
            print(line)
        total = sum(r["nevents"] for r in out.values())
        print(f"{total} events in {dt:.1f} s ({total / dt if dt else 0:.0f} events/s, {args.executor}) -> {args.output}")
        if args.root:
            print(f"{runner.save_outputs(out, None, args.root)} histograms -> {args.root}")
    return 0
