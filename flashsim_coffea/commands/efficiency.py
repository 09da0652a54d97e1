"""``flashsim efficiency SPEC FILE.root... -o MODEL_DIR``: measure a reconstruction-efficiency map."""

from __future__ import annotations

import argparse

from ._options import add_inputs, add_output, input_files, output_of

NAME = "efficiency"
HELP = "measure the reconstruction efficiency map of a spec (jets, muons) on MC NanoAOD; writes MODEL_DIR/efficiency.json"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", choices=["jets", "muons"])
    add_inputs(p, "NanoAOD files with Gen collections and matched reco objects")
    add_output(p, "model folder (the map is stored beside its card.json)", metavar="MODEL_DIR", deprecated=("--model-dir",))


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..efficiency import measure_files
    from ..errors import UserError

    files, model_dir = input_files(args), output_of(args, "MODEL_DIR")
    if not Path(model_dir).is_dir():
        raise UserError(f"model folder {model_dir} does not exist")
    m = measure_files(args.spec, files)
    path = m.save(model_dir)
    print(f"wrote {path}: efficiency of {args.spec} in {m.values.shape[0]}×{m.values.shape[1]} (pT, |η|) bins from {int(m.counts.sum())} Gen objects")
    return 0
