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
    p.add_argument("--force", action="store_true", help="replace an existing efficiency.json in MODEL_DIR")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..efficiency import measure_files
    from ..errors import UserError

    files, model_dir = input_files(args), output_of(args, "MODEL_DIR")
    if not Path(model_dir).is_dir():
        raise UserError(f"model folder {model_dir} does not exist")
    _check_model_dir(args.spec, model_dir, files, args.force)
    from ..efficiency import FILENAME
    from ..safe_write import output_lock

    with output_lock(Path(model_dir) / FILENAME, what="efficiency map"):  # a second writer fails at once
        m = measure_files(args.spec, files)
        path = m.save(model_dir)
    print(f"wrote {path}: efficiency of {args.spec} in {m.values.shape[0]}×{m.values.shape[1]} (pT, |η|) bins from {int(m.counts.sum())} Gen objects")
    return 0


def _check_model_dir(spec: str, model_dir: str, files: list[str], force: bool) -> None:
    """Before any work: a model in ``model_dir`` (its card.json) must be one of ``spec`` (even with
    ``force``: the map belongs to the flow beside it), and an existing efficiency.json is replaced
    only with ``force`` (never an input; :func:`flashsim_coffea.safe_write.check_output`)."""
    from pathlib import Path

    from ..cards import CARD_NAME
    from ..efficiency import FILENAME
    from ..errors import UserError
    from ..flows.checkpoint import read_card
    from ..safe_write import check_output

    if (Path(model_dir) / CARD_NAME).exists():
        card, card_path = read_card(model_dir)
        name = card.get("spec", {}).get("name") if isinstance(card.get("spec"), dict) else None
        if name != spec:
            raise UserError(f"model folder {model_dir} holds a model of spec {name!r} ({card_path}), not {spec!r}: "
                            f"measure the {spec} map into the {spec} model's folder")
    check_output(Path(model_dir) / FILENAME, files, force, what="efficiency map")
