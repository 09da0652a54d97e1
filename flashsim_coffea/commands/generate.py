"""``flashsim generate PROCESS -n EVENTS --seed SEED [--workers W] [--filter vbf|vbf_window] -o FILE.root [--no-progress]``."""

from __future__ import annotations

import argparse

from ._options import add_no_progress, add_output

NAME = "generate"
HELP = "generate NanoAOD-format events with Pythia 8 + fastjet and the reference detector response"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("process", nargs="?", help="process name (see --list)")
    p.add_argument("-n", "--events", type=int, help="number of events to write (after the filter)")
    p.add_argument("--seed", type=int, help="random seed, 1..900000000 (same seed and -n → identical file)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (does not change the events)")
    p.add_argument("--filter", dest="filter_name", metavar="FILTER",
                   help="Gen-level pre-filter, vbf or vbf_window (flashsim_coffea.generate.filters; checked by the generator); "
                        "its efficiency is stored")
    add_output(p, "output .root file", required=False, metavar="FILE.root")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--no-reference", action="store_true", help="write Gen-level branches only (no Jet/Muon)")
    p.add_argument("--list", action="store_true", help="list the processes and their Pythia settings")
    add_no_progress(p)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..generate.processes import describe_processes

    if args.list:
        print(describe_processes())
        return 0
    missing = [flag for flag, v in (("PROCESS", args.process), ("-n", args.events), ("--seed", args.seed), ("-o", args.output)) if v is None]
    if missing:
        raise UserError(f"missing {', '.join(missing)}; e.g. flashsim generate vbf_hmm -n 1000 --seed 1 -o vbf.root")
    from ..generate.driver import generate
    from ..safe_write import output_lock

    with output_lock(args.output, what="-o"):  # a second writer of FILE.root fails at once
        summary = generate(
            args.process, args.events, args.seed, args.output, workers=args.workers,
            filter_name=args.filter_name, force=args.force, reference=not args.no_reference,
            progress=not args.no_progress,
        )
    print(summary)
    return 0
