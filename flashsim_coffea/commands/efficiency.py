"""``flashsim efficiency SPEC FILES... -o MODEL_DIR``: measure a reconstruction-efficiency map."""

from __future__ import annotations

import argparse

NAME = "efficiency"
HELP = "measure the reconstruction efficiency map of a spec (jets, muons) on MC NanoAOD; writes MODEL_DIR/efficiency.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", choices=["jets", "muons"])
    p.add_argument("files", nargs="+", help="NanoAOD files with Gen collections and matched reco objects")
    p.add_argument("-o", "--model-dir", required=True, help="model folder (the map is stored beside card.json)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..efficiency import measure_files
    from ..errors import UserError

    if not Path(args.model_dir).is_dir():
        raise UserError(f"model folder {args.model_dir} does not exist")
    m = measure_files(args.spec, args.files)
    path = m.save(args.model_dir)
    print(f"wrote {path}: efficiency of {args.spec} in {m.values.shape[0]}×{m.values.shape[1]} (pT, |η|) bins from {int(m.counts.sum())} Gen objects")
    return 0
