"""``flashsim simulate FILE.root... -o OUT.root [--folds N] [--jets-model DIR] [--muons-model DIR]
[--force] [--chunksize C] [--no-progress]``.

Writes a NanoAOD file whose ``Jet``/``Muon`` are FlashSim's, simulated from the inputs'
GenJet/GenPart, with every other branch and the ``Runs`` tree carried over, a ``fold`` branch
and the provenance in ``FlashSimMetadata`` (:mod:`flashsim_coffea.simulate_file`). Several
inputs are concatenated into one output. Analyse it as FullSim: ``flashsim run OUT.root --mode
fullsim`` gives what ``flashsim run IN.root --mode flashsim --folds N`` gives (genWeight is
scaled by 1/N; see docs/simulate.md).
"""

from __future__ import annotations

import argparse

from ._options import add_inputs, add_no_progress, add_output, input_files

NAME = "simulate"
HELP = "write a NanoAOD file with FlashSim Jet/Muon simulated from the inputs' GenJet/GenPart (all other branches kept)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_inputs(p, "NanoAOD files with GenJet, GenPart and Pileup branches (several: concatenated into one output)")
    add_output(p, "output .root file", metavar="OUT.root")
    p.add_argument("--folds", type=int, default=1, metavar="N",
                   help="reconstructions per Gen event N: each event written N times with fold 0..N-1, genWeight/N (default 1)")
    p.add_argument("--jets-model", default="default", metavar="DIR", help="FlashSim jets flow folder (default: the shipped one)")
    p.add_argument("--muons-model", default="default", metavar="DIR", help="FlashSim muons flow folder (default: the shipped one)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file (never an input)")
    p.add_argument("--pileup-jets-model", metavar="DIR|none",
                   help="FlashSim pile-up jets model folder (default: the shipped one); 'none': no FlashSim pile-up jets")
    p.add_argument("--chunksize", type=int, default=None, metavar="C",
                   help="Gen events read per chunk (default 50000/folds); the output does not depend on it")
    p.add_argument("--device", default="cpu", help="where the flows are sampled: cpu (default) or cuda")
    p.add_argument("--precision", default="float32", help="flow products in float32 (default) or bfloat16")
    p.add_argument("--threads", type=int, default=1, metavar="T",
                   help="sampling threads (default 1): T blocks of objects at once, same samples for every T")
    add_no_progress(p)


def format_counts(counts: dict[str, dict[str, int]]) -> list[str]:
    """One line per collection with FlashSim's counts (:func:`flashsim_coffea.inject.describe_counts`)."""
    from ..inject import describe_counts

    return [f"  {line}" for line in describe_counts(counts)]


def run(args: argparse.Namespace) -> int:
    from ..safe_write import output_lock
    from ..simulate_file import simulate_file

    files = input_files(args)
    with output_lock(args.output, what="-o"):  # a second writer of OUT.root fails at once
        s = simulate_file(
            files, args.output, folds=args.folds, jets=args.jets_model, muons=args.muons_model,
            pileup_jets=args.pileup_jets_model,
            force=args.force, chunksize=args.chunksize, progress=not args.no_progress, device=args.device,
            precision=args.precision, threads=args.threads,
        )
    objs = ", ".join(f"{n} {reco}" for reco, n in s["objects"].items())
    fold_note = f" × {s['folds']} folds = {s['events_out']} events (genWeight / {s['folds']})" if s["folds"] > 1 else ""
    print(f"wrote {s['output']}: {s['events_in']} Gen events{fold_note}, FlashSim {objs} in {s['seconds']:.1f} s")
    for line in format_counts(s["counts"]):
        print(line)
    if s["dropped_branches"]:
        print(f"  replaced/dropped {len(s['dropped_branches'])} input branches (Jet/Muon and indices into them)")
    return 0
