"""``flashsim closure REF.root [REF2.root] -o DIR [--dataset NAME] [--folds N] [--ref-seed S]
[--executor iterative|futures|dask] [--workers W] [--chunksize C] [--force] [--no-progress]``

Analysis-level closure of FlashSim against the reference on the same Gen events, with a second
reference draw REF2 as the noise floor (drawn from REF with ``--ref-seed`` when not given): the
VBF H→μμ processor in fullsim mode on REF and REF2 and in flashsim mode on REF; cutflow
efficiency ratios, χ²(FlashSim, ref)/χ²(ref′, ref) per histogram, m_μμ RMS; ``summary.md``,
``summary.json`` and figures in DIR. One reference file (dataset) per call. See
:mod:`flashsim_coffea.closure` and docs/closure.md.
"""

from __future__ import annotations

import argparse

from ._options import add_inputs, add_no_progress, add_output, input_files, output_of

NAME = "closure"
HELP = "analysis-level closure: FlashSim vs the reference on the same Gen events, a second reference draw as noise floor"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..closure import DEFAULT_REF_SEED

    add_inputs(p, "REF.root (Gen + reference reco) and optionally REF2.root, a second reference draw of the same "
                  "Gen events (default: drawn from REF with --ref-seed)")
    add_output(p, "report folder (summary.md, summary.json, figures/)", metavar="DIR")
    p.add_argument("--dataset", metavar="NAME", help="name of the sample in the report (default: REF's file stem, e.g. vbf_hmm)")
    p.add_argument("--folds", type=int, default=1, metavar="N", help="FlashSim upsampling factor N (default 1)")
    p.add_argument("--ref-seed", type=int, default=None, metavar="S",
                   help=f"seed of the reference' draw when REF2 is not given (default {DEFAULT_REF_SEED}; must differ "
                        "from the seed that drew REF)")
    p.add_argument("--executor", choices=["iterative", "futures", "dask"], default="futures",
                   help="coffea executor (default futures)")
    p.add_argument("--workers", type=int, default=2, metavar="W", help="worker processes (futures, dask LocalCluster)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="address of a running dask scheduler (--executor dask)")
    p.add_argument("--chunksize", type=int, default=10_000, metavar="C", help="events per chunk (default 10000)")
    p.add_argument("--no-dnn", action="store_true", help="do not evaluate the DNN (no dnn_atanh histogram)")
    p.add_argument("--jets-model", metavar="DIR", help="FlashSim jets flow folder (default: the shipped one)")
    p.add_argument("--muons-model", metavar="DIR", help="FlashSim muons flow folder (default: the shipped one)")
    p.add_argument("--pileup-jets-model", metavar="DIR|none",
                   help="FlashSim pile-up jets model folder (default: the shipped one); 'none': no FlashSim pile-up jets")
    p.add_argument("--mass-draws", type=int, default=0, metavar="K",
                   help="K more reference draws (seeds ref-seed+1..+K) for a precise m_mumu RMS comparison: FlashSim's "
                        "folds pooled vs K+2 reference draws pooled, error from their spread (default 0: off; e.g. "
                        "--folds 20 --mass-draws 18)")
    p.add_argument("--no-figures", action="store_true", help="numbers only: summary.md and summary.json")
    p.add_argument("--force", action="store_true", help="overwrite the report in a non-empty DIR")
    add_no_progress(p)


def run(args: argparse.Namespace) -> int:
    from ..closure import DEFAULT_REF_SEED, ClosureConfig, run_closure
    from ..errors import UserError

    files = input_files(args, metavar="REF.root")
    if len(files) > 2:
        raise UserError(f"give REF.root and at most one REF2.root, got {len(files)} files; run one closure per sample")
    if args.workers < 1:
        raise UserError(f"--workers must be ≥ 1, got {args.workers}")
    if args.scheduler and args.executor != "dask":
        raise UserError("--scheduler needs --executor dask")
    if args.ref_seed is not None and len(files) == 2:
        raise UserError("--ref-seed is the seed REF2 is drawn with; leave it out when REF2.root is given")
    pileup = False if (args.pileup_jets_model or "").lower() == "none" else args.pileup_jets_model
    cfg = ClosureConfig(
        ref=files[0], ref2=files[1] if len(files) == 2 else None, output=output_of(args, "DIR"), dataset=args.dataset,
        folds=args.folds, ref_seed=DEFAULT_REF_SEED if args.ref_seed is None else args.ref_seed,
        executor=args.executor, workers=args.workers, scheduler=args.scheduler, chunksize=args.chunksize,
        force=args.force, progress=not args.no_progress, dnn=not args.no_dnn, jets_model=args.jets_model,
        muons_model=args.muons_model, pileup_jets_model=pileup, figures=not args.no_figures,
        mass_draws=args.mass_draws,
    )
    s = run_closure(cfg)
    cs = s["chi2_summary"]
    worst = cs["worst"] or {"histogram": "-", "ratio": float("nan")}
    print(f"report: {cfg.output}/summary.md ({len(s['figures'])} figures, {s['timings_s']['total']:.0f} s)")
    last = s["cutflow"][-1]
    print(f"  cutflow {last['step']}: FlashSim/ref {last['ratio_flashsim']['value']:.3f} ± {last['ratio_flashsim']['err']:.3f}, "
          f"floor ref'/ref {last['ratio_floor']['value']:.3f} ± {last['ratio_floor']['err']:.3f}")
    print(f"  chi2 ratio FlashSim/floor: median {cs['median_ratio']:.2f}, worst {worst['ratio']:.2f} ({worst['histogram']}); "
          f"{len(cs['above_target'])} of {cs['compared']} histograms > {s['thresholds']['target']:g}, "
          f"{len(cs['above_goal'])} > {s['thresholds']['goal']:g}")
    m = s["mass_rms"]
    print(f"  m_mumu RMS ({m['region']}): FlashSim {m['flashsim']['rms']:.3f}, reference {m['reference']['rms']:.3f}, "
          f"reference' {m['reference2']['rms']:.3f} GeV "
          f"(rel. diff. {m['rel_diff_flashsim']:+.4f}, floor {m['rel_diff_floor']:+.4f})")
    p = m.get("pooled")
    if p:
        print(f"  m_mumu RMS, FlashSim {p['folds']} folds vs {p['draws']} reference draws pooled: "
              f"{p['flashsim_pooled']:.4f} vs {p['reference_pooled']:.4f} GeV, "
              f"rel. diff. {p['rel_diff']:+.4f} ± {p['err']:.4f} (single-draw spread {p['sigma_draw']:.4f} GeV)")
    return 0
