"""Regenerate the bundled samples: ``python -m flashsim_coffea.samples [--workers W] [--reference-only] [PROCESS ...]``.

``--reference-only`` re-draws only the reference response on each sample's own Gen events with its
generation seed (seconds instead of Pythia's minutes to an hour): the result is the file the full
regeneration writes, bit for bit, when only the reference response changed."""

from __future__ import annotations

import argparse

import os
from pathlib import Path

from ..generate.driver import generate
from ..reference.resimulate import resimulate_file
from . import BUNDLED, generate_args, sample_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("processes", nargs="*", default=list(BUNDLED))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--reference-only", action="store_true",
                    help="re-draw only the reference response of the existing samples (their Gen events and seeds)")
    args = ap.parse_args()
    for name in args.processes:
        process, settings = generate_args(name)
        path = sample_dir() / f"{name}.root"
        if args.reference_only:
            tmp = path.with_name(f".{name}.reference.root")
            result = resimulate_file(path, tmp, settings["seed"], force=True, progress=False, record=False)
            os.replace(tmp, path)
            print(f"{Path(path).name}: {result['events']} events, {result['jets']} reference jets, {result['muons']} muons")
        else:
            print(generate(process, output=path, workers=args.workers, force=True, **settings))


if __name__ == "__main__":
    main()
