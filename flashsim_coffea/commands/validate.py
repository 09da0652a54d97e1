"""``flashsim validate SPEC FILE.root... [--model MODEL] -o REPORT_DIR [--force]``: FlashSim vs reference.

REPORT_DIR must be empty (or ``--force``: the report's files are replaced, other files kept);
it is checked before any work.

Without ``--model``, the model shipped for the spec (``flashsim_coffea/models/<spec>``), as
``flashsim run`` does; the command says which model it used.

``flashsim validate pileup_jets [--model MODEL] -o REPORT_DIR [--events N] [--gen-seed S]
[--resimulate 201] [--ref-seed 202]``: the pile-up jets (no GenJet) are validated on held-out
pile-up-only events generated on the fly (no input files), FlashSim against a reference draw R
(``--resimulate``) with a second draw R′ (``--ref-seed``) as the noise floor
(:func:`flashsim_coffea.validation.pileup.write_pileup_report`).
"""

from __future__ import annotations

import argparse

from ._options import add_inputs, add_output, input_files

NAME = "validate"
HELP = ("compare a flow with the reference response on held-out NanoAOD (pileup_jets: on generated pile-up "
        "events): W1 vs noise floor, C2ST, plots")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="object spec: jets, muons, a spec .json file or module:attribute")
    add_inputs(parser, "held-out NanoAOD files (Gen + reference reco); none for pileup_jets", deprecated=("--input",))
    parser.add_argument("--model", default=None,
                        help="model directory, or the name of a shipped model (jets, muons); default: the model shipped for SPEC")
    add_output(parser, "report directory (index.md, metrics.json, plots/; pileup_jets: report.md, metrics.json, "
                       "pileup_jets.png)", metavar="REPORT_DIR")
    parser.add_argument("--ref-seed", type=int, default=None,
                        help="seed of the second reference draw (noise floor; default 90210, for pileup_jets 202)")
    parser.add_argument("--floor-draws", type=int, default=None, metavar="K",
                        help="average W1 and its noise floor over K FlashSim folds and K reference′ draws "
                             "(seeds ref-seed .. ref-seed+K-1; default 5; 1 = a single draw each)")
    parser.add_argument("--resimulate", type=int, metavar="SEED", default=None,
                        help="reference R from a fresh reference draw (SEED) on the files' Gen instead of their reco "
                             "(pileup_jets: always a fresh draw, default 201)")
    parser.add_argument("--max-events", type=int, default=None, help="read at most this many events per file")
    parser.add_argument("--title", default=None, help="sample label in plots (default: first file name)")
    parser.add_argument("--precision", default="float32",
                        help="products of the flow inverse in float32 (default) or bfloat16 (faster on AMX CPUs)")
    parser.add_argument("--events", type=int, default=None, metavar="N",
                        help="pileup_jets: held-out pile-up-only events to generate (default 200000)")
    parser.add_argument("--gen-seed", type=int, default=None, metavar="S",
                        help="pileup_jets: seed of those events (their generator seed is 1000·S; default 2)")
    parser.add_argument("--force", action="store_true",
                        help="write the report into a non-empty REPORT_DIR (its files are replaced, other files kept)")


def run(args: argparse.Namespace) -> int:
    from flashsim_coffea.flows.sampler import FlowModel
    from flashsim_coffea.objects import get_spec
    from flashsim_coffea.validation import run_validation
    from flashsim_coffea.validation.pileup import SPEC as PILEUP_SPEC

    spec = get_spec(args.spec)
    if spec.name == PILEUP_SPEC:
        return _validate_pileup(args)
    if args.events is not None or args.gen_seed is not None:
        from flashsim_coffea.errors import UserError

        raise UserError(f"--events and --gen-seed are for {PILEUP_SPEC} (generated pile-up events); "
                        f"{spec.name} is validated on the given files (--max-events)")
    files = input_files(args)
    _check_report_dir(args)
    path, how = _model_path(args.model, spec.name)
    print(f"{spec.name}: model {path} ({how})")
    model = FlowModel.load(path, spec=spec).set_precision(args.precision)
    with _locked(args):
        m = run_validation(spec, model, files, args.output, ref_seed=90210 if args.ref_seed is None else args.ref_seed,
                           title=args.title, max_events=args.max_events, resimulate=args.resimulate,
                           **({} if args.floor_draws is None else {"floor_draws": args.floor_draws}))
    worst = max(m["targets"].items(), key=lambda kv: kv[1]["ratio"])
    print(f"{spec.name}: C2ST AUC {m['c2st_auc']:.4f}; worst W1 ratio {worst[1]['ratio']:.2f} ({worst[0]}); "
          f"report in {args.output}/index.md")
    return 0


def _model_path(model: str | None, spec_name: str):
    """(model directory, how it was chosen) from ``--model`` (a directory, a shipped model's name, or
    None: the model shipped for the spec)."""
    from pathlib import Path

    from flashsim_coffea.flows.sampler import shipped_model_path

    if model is None:
        return _shipped(spec_name), f"the shipped {spec_name} model (default; --model to choose another)"
    if Path(model).exists():
        return Path(model), "given by --model"
    return shipped_model_path(model), f"the shipped {model} model"


def _validate_pileup(args: argparse.Namespace) -> int:
    """``flashsim validate pileup_jets``: generated pile-up-only events, no input files."""
    from flashsim_coffea.errors import UserError
    from flashsim_coffea.validation.pileup import SPEC, write_pileup_report

    unused = [opt for opt, value in (("input files", input_files(args, required=False)), ("--floor-draws", args.floor_draws),
                                     ("--max-events", args.max_events), ("--title", args.title))
              if value] + (["--precision"] if args.precision != "float32" else [])
    if unused:
        raise UserError(f"{SPEC} is validated on pile-up-only events generated here (--events, --gen-seed): "
                        f"{', '.join(unused)} do not apply")
    path, how = _model_path(args.model, SPEC)
    print(f"{SPEC}: model {path} ({how})")
    ref_seed = 201 if args.resimulate is None else args.resimulate
    ref_seed2 = 202 if args.ref_seed is None else args.ref_seed
    if ref_seed == ref_seed2:
        raise UserError(f"--resimulate (reference R) and --ref-seed (reference′, the noise floor) must differ, got {ref_seed} twice")
    _check_report_dir(args)
    with _locked(args):
        m = write_pileup_report(path, args.output, n_events=200_000 if args.events is None else args.events,
                                gen_seed=2 if args.gen_seed is None else args.gen_seed, ref_seed=ref_seed, ref_seed2=ref_seed2)
    worst = max(m["w1"].items(), key=lambda kv: kv[1]["ratio"])
    print(f"{SPEC}: pile-up jets FlashSim {m['jets']['F']}, reference {m['jets']['R']}, reference′ {m['jets']['R2']} "
          f"on {m['events']} events; worst W1 ratio {worst[1]['ratio']:.2f} ({worst[0]}); report in {args.output}/report.md")
    return 0


def _check_report_dir(args: argparse.Namespace) -> None:
    """The report folder before any work: not a file, empty unless ``--force``, writable (created)."""
    from flashsim_coffea.safe_write import check_output_dir, ensure_writable_dir

    ensure_writable_dir(check_output_dir(args.output, args.force))


def _locked(args: argparse.Namespace):
    """The report folder's lock while the report is written: a second writer fails at once."""
    from flashsim_coffea.safe_write import output_lock

    return output_lock(args.output, what="report folder")


def _shipped(name: str):
    """The model shipped for spec ``name``, or a clear error for a spec without one."""
    from flashsim_coffea.errors import UserError
    from flashsim_coffea.flows.sampler import shipped_model_path

    try:
        return shipped_model_path(name)
    except UserError:
        raise UserError(f"no model is shipped for spec {name!r}; give --model MODEL_DIR") from None
