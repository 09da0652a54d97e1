"""``flashsim resimulate IN.root -o OUT.root --seed S``."""

from __future__ import annotations

import argparse

NAME = "resimulate"
HELP = "apply the reference detector response to any NanoAOD with GenJet/GenPart (new Jet/Muon)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="NanoAOD file with GenJet, GenPart and Pileup branches")
    p.add_argument("-o", "--output", required=True, help="output .root file")
    p.add_argument("--seed", type=int, required=True, help="seed of the reference response, 1..900000000")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")


def run(args: argparse.Namespace) -> int:
    from ..reference.resimulate import resimulate_file

    s = resimulate_file(args.input, args.output, args.seed, force=args.force)
    print(f"wrote {s['output']}: {s['events']} events, {s['jets']} reference jets, {s['muons']} muons in {s['seconds']:.1f} s")
    return 0
