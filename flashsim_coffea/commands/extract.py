"""``flashsim extract SPEC FILES... -o DATA``: matched (Gen, reco) training pairs from NanoAOD."""

from __future__ import annotations

import argparse

NAME = "extract"
HELP = "build flow training data (conditioning/target matrices) from NanoAOD with matched Gen objects"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="object spec: jets, muons, a spec .json file or module:attribute")
    parser.add_argument("files", nargs="+", help="NanoAOD ROOT files (MC, with Gen collections)")
    parser.add_argument("-o", "--output", required=True, help="output .npz or .safetensors file")
    parser.add_argument("--max-objects", type=int, default=None, help="stop after this many matched objects")
    parser.add_argument("--step-size", type=int, default=20_000, help="events per chunk")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from flashsim_coffea.flows.data import save_data
    from flashsim_coffea.objects import get_spec
    from flashsim_coffea.objects.extract import extract_files

    spec = get_spec(args.spec)
    data, prov = extract_files(spec, args.files, step_size=args.step_size, progress=not args.no_progress,
                               max_objects=args.max_objects)
    path = save_data(args.output, data.cond, data.targets, data.keys, data.gen, prov)
    dropped = ", ".join(f"{k} {v}" for k, v in prov["dropped"].items() if v) or "none"
    clipped = ", ".join(f"{k} {v}" for k, v in prov["clipped"].items()) or "none"
    print(f"{spec.name}: {len(data)} matched objects from {prov['n_events']} events "
          f"({prov['n_reco']} reco objects) -> {path}")
    print(f"dropped: {dropped}")
    print(f"clipped to bounds: {clipped}")
    return 0
