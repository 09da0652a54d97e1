"""``flashsim resimulate FILE.root -o OUT.root --seed S [--no-progress]``."""

from __future__ import annotations

import argparse

from ._options import add_inputs, add_no_progress, add_output, input_files

NAME = "resimulate"
HELP = "apply the reference detector response to any NanoAOD with GenJet/GenPart (new Jet/Muon)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_inputs(p, "NanoAOD file with GenJet, GenPart and Pileup branches", one=True)
    add_output(p, "output .root file", metavar="OUT.root")
    p.add_argument("--seed", type=int, required=True, help="seed of the reference response, 1..900000000")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    add_no_progress(p)


def run(args: argparse.Namespace) -> int:
    from ..reference.resimulate import resimulate_file
    from ..safe_write import output_lock

    (source,) = input_files(args, one=True)
    with output_lock(args.output, what="-o"):  # a second writer of OUT.root fails at once
        s = resimulate_file(source, args.output, args.seed, force=args.force, progress=not args.no_progress)
    print(f"wrote {s['output']}: {s['events']} events, {s['jets']} reference jets, {s['muons']} muons in {s['seconds']:.1f} s")
    return 0
