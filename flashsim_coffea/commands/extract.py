"""``flashsim extract SPEC FILE.root... -o DATA``: matched (Gen, reco) training pairs from NanoAOD."""

from __future__ import annotations

import argparse

from ._options import add_inputs, add_no_progress, add_output, input_files

NAME = "extract"
HELP = "build flow training data (conditioning/target matrices) from NanoAOD with matched Gen objects"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="object spec: jets, muons, a spec .json file or module:attribute")
    add_inputs(parser, "NanoAOD ROOT files (MC, with Gen collections); none with --synthetic")
    parser.add_argument("--synthetic", type=int, metavar="N_EVENTS", default=None,
                        help="instead of files: N synthetic Gen events through the reference response")
    parser.add_argument("--gen-seed", type=int, default=1, help="seed of the synthetic Gen events")
    parser.add_argument("--ref-seed", type=int, default=11, help="seed of the reference response (synthetic)")
    parser.add_argument("--resimulate", type=int, nargs="+", metavar="SEED", default=None,
                        help="ignore the files' reco objects: re-run the reference response on their Gen "
                             "(one draw per SEED)")
    add_output(parser, "output .npz or .safetensors file")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file (never an input)")
    parser.add_argument("--max-objects", type=int, default=None, help="stop after this many matched objects")
    parser.add_argument("--step-size", type=int, default=20_000, help="events per chunk")
    add_no_progress(parser)


def run(args: argparse.Namespace) -> int:
    from flashsim_coffea.flows.data import save_data
    from flashsim_coffea.objects import get_spec
    from flashsim_coffea.objects.extract import extract_files

    from flashsim_coffea.errors import UserError
    from flashsim_coffea.objects.extract import extract_synthetic

    spec = get_spec(args.spec)
    files = input_files(args, required=False)
    _check_output(args.output, files, args.force)
    if args.synthetic is not None:
        data, prov = extract_synthetic(spec, args.synthetic, args.gen_seed, args.ref_seed, progress=not args.no_progress)
    elif files:
        _check_inputs(spec, files, args.resimulate)
        data, prov = extract_files(spec, files, step_size=args.step_size, progress=not args.no_progress,
                                   max_objects=args.max_objects, resimulate=args.resimulate)
    else:
        raise UserError("give NanoAOD input FILE.root files or --synthetic N_EVENTS")
    path = save_data(args.output, data.cond, data.targets, data.keys, data.gen, prov)
    dropped = ", ".join(f"{k} {v}" for k, v in prov["dropped"].items() if v) or "none"
    prov.setdefault("n_events", data.n_events)
    prov.setdefault("n_reco", data.n_reco)
    clipped = ", ".join(f"{k} {v}" for k, v in prov["clipped"].items()) or "none"
    print(f"{spec.name}: {len(data)} matched objects from {prov['n_events']} events "
          f"({prov['n_reco']} reco objects) -> {path}")
    print(f"dropped: {dropped}")
    print(f"clipped to bounds: {clipped}")
    return 0


def _check_output(output: str, files: list[str], force: bool) -> None:
    """The output before any work: a .npz or .safetensors file, never an input, an existing one
    only with ``force``, in a writable folder (:func:`flashsim_coffea.safe_write.check_output`)."""
    from pathlib import Path

    from flashsim_coffea.errors import UserError
    from flashsim_coffea.safe_write import check_output

    if Path(output).suffix not in (".npz", ".safetensors"):
        raise UserError(f"-o {output}: training data must be a .npz or .safetensors file")
    if not Path(output).parent.exists():  # a new folder for the data is made, as for model folders
        Path(output).parent.mkdir(parents=True)
    check_output(output, files, force, what="-o")


def _check_inputs(spec, files: list[str], resimulate) -> None:
    """Each input before any work (a UserError naming it): not a ``flashsim simulate`` output when
    its reco objects are the training targets (with ``--resimulate`` only its Gen is read: not a
    folded one), and the counters of the spec's Gen collections agree with their branches."""
    from flashsim_coffea.nanoaod.io import check_counters, check_not_folded, check_reference, gen_collections, open_events
    from flashsim_coffea.objects.extract import required_branches

    for f in files:
        tree = open_events(f)
        if resimulate is None:
            check_reference(f, "of training pairs", tree.keys())
        else:
            check_not_folded(f, "extract from the file it was simulated from", tree)
        check_counters(f, gen_collections(required_branches(spec)), tree)
