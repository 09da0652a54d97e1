"""Regenerate the bundled samples: ``python -m flashsim_coffea.samples [--workers W] [PROCESS ...]``."""

from __future__ import annotations

import argparse

from ..generate.driver import generate
from . import BUNDLED, generate_args, sample_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("processes", nargs="*", default=list(BUNDLED))
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    for name in args.processes:
        process, settings = generate_args(name)
        print(generate(process, output=sample_dir() / f"{name}.root", workers=args.workers, force=True, **settings))


if __name__ == "__main__":
    main()
