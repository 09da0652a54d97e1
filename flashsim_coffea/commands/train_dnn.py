"""``flashsim train-dnn --signal FILE.root... --background FILE.root... [-o DIR] [--seed S] [--epochs E]``.

The one command whose input files are options, not positional ``FILE.root...``: they have two
roles (see :mod:`flashsim_coffea.commands._options`).

Trains the VBF H→μμ DNN (see :mod:`flashsim_coffea.analysis.training`) and writes
``model.safetensors`` + ``card.json``; by default into the package's shipped model folder.
"""

from __future__ import annotations

import argparse

from ._options import add_output

NAME = "train-dnn"
HELP = "train the VBF H->mumu DNN (signal vs backgrounds, VBF SR + SB) on NanoAOD MC files"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--signal", nargs="+", required=True, metavar="FILE.root", help="signal NanoAOD files (VBF H->mumu)")
    p.add_argument("--background", nargs="+", required=True, metavar="FILE.root",
                   help="background NanoAOD files (DY, EWK mumujj, ttbar)")
    add_output(p, "output folder (default: the shipped flashsim_coffea/models/dnn)", required=False, metavar="DIR")
    p.add_argument("--seed", type=int, default=1, help="seed of the split, initialisation and shuffling")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--val-fraction", type=float, default=0.3)
    p.add_argument("--weighting", choices=["events", "xsec"], default="events",
                   help="background weights: per selected event (default) or by cross section (see analysis.training)")


def run(args: argparse.Namespace) -> int:
    from ..analysis.dnn import DEFAULT_MODEL_DIR
    from ..analysis.training import train_dnn

    out = args.output or DEFAULT_MODEL_DIR
    print(f"train-dnn: {len(args.signal)} signal and {len(args.background)} background file(s) -> {out}")
    train_dnn(
        args.signal, args.background, out, seed=args.seed, epochs=args.epochs,
        batch_size=args.batch_size, val_fraction=args.val_fraction, weighting=args.weighting,
    )
    return 0
