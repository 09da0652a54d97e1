"""``flashsim validate SPEC FILE.root... [--model MODEL] -o REPORT_DIR``: FlashSim vs reference.

Without ``--model``, the model shipped for the spec (``flashsim_coffea/models/<spec>``), as
``flashsim run`` does; the command says which model it used.
"""

from __future__ import annotations

import argparse

from ._options import add_inputs, add_output, input_files

NAME = "validate"
HELP = "compare a flow with the reference response on held-out NanoAOD: W1 vs noise floor, C2ST, plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="object spec: jets, muons, a spec .json file or module:attribute")
    add_inputs(parser, "held-out NanoAOD files (Gen + reference reco)", deprecated=("--input",))
    parser.add_argument("--model", default=None,
                        help="model directory, or the name of a shipped model (jets, muons); default: the model shipped for SPEC")
    add_output(parser, "report directory (index.md, metrics.json, plots/)", metavar="REPORT_DIR")
    parser.add_argument("--ref-seed", type=int, default=90210, help="seed of the second reference draw (noise floor)")
    parser.add_argument("--floor-draws", type=int, default=None, metavar="K",
                        help="average W1 and its noise floor over K FlashSim folds and K reference′ draws "
                             "(seeds ref-seed .. ref-seed+K-1; default 5; 1 = a single draw each)")
    parser.add_argument("--resimulate", type=int, metavar="SEED", default=None,
                        help="reference R from a fresh reference draw (SEED) on the files' Gen instead of their reco")
    parser.add_argument("--max-events", type=int, default=None, help="read at most this many events per file")
    parser.add_argument("--title", default=None, help="sample label in plots (default: first file name)")
    parser.add_argument("--precision", default="float32",
                        help="products of the flow inverse in float32 (default) or bfloat16 (faster on AMX CPUs)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flashsim_coffea.flows.sampler import FlowModel, shipped_model_path
    from flashsim_coffea.objects import get_spec
    from flashsim_coffea.validation import run_validation

    spec = get_spec(args.spec)
    files = input_files(args)
    if args.model is None:
        path, how = _shipped(spec.name), f"the shipped {spec.name} model (default; --model to choose another)"
    elif Path(args.model).exists():
        path, how = Path(args.model), "given by --model"
    else:
        path, how = shipped_model_path(args.model), f"the shipped {args.model} model"
    print(f"{spec.name}: model {path} ({how})")
    model = FlowModel.load(path, spec=spec).set_precision(args.precision)
    m = run_validation(spec, model, files, args.output, ref_seed=args.ref_seed, title=args.title,
                       max_events=args.max_events, resimulate=args.resimulate,
                       **({} if args.floor_draws is None else {"floor_draws": args.floor_draws}))
    worst = max(m["targets"].items(), key=lambda kv: kv[1]["ratio"])
    print(f"{spec.name}: C2ST AUC {m['c2st_auc']:.4f}; worst W1 ratio {worst[1]['ratio']:.2f} ({worst[0]}); "
          f"report in {args.output}/index.md")
    return 0


def _shipped(name: str):
    """The model shipped for spec ``name``, or a clear error for a spec without one."""
    from flashsim_coffea.errors import UserError
    from flashsim_coffea.flows.sampler import shipped_model_path

    try:
        return shipped_model_path(name)
    except UserError:
        raise UserError(f"no model is shipped for spec {name!r}; give --model MODEL_DIR") from None
