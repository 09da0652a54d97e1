"""Throughput of the VBF H→μμ processor: fullsim vs flashsim, upsampling, dask scaling, memory.

All figures come from one run, with the coffea ``Runner`` as an analyst uses it
(``flashsim_coffea.runner.run_processor``: NanoAODSchema, the shipped DNN, histograms), on an
analysis-like mix of inputs (``--sources``: the bundled VBF H→μμ and tt̄ samples and an
**unfiltered** DY sample made once with ``flashsim generate dy -n 5000 --seed 3101``):

1. per source, ``fullsim`` and ``flashsim`` (folds 1) events/s with the iterative executor and
   their ratio (targets: flashsim ≥ 0.10 of fullsim on VBF H→μμ, goal 0.25; ≥ 0.5 on tt̄; both on
   one core), flashsim with ``staged=False`` (jets simulated for every event instead of only the
   dimuon events: the gain of simulating only what the analysis reads), and flashsim with
   ``FlashSim(threads=2)`` (two sampling blocks at once: the gain of a second core without dask);
2. per source, flashsim with ``--folds`` (default 25) vs folds 1 on ``--fold-events`` events
   (one chunk): wall-time ratio (target ≤ 10);
3. dask ``LocalCluster`` with 1 and 2 worker processes (one thread each), flashsim, cluster
   started and models loaded (a warm-up pass) before the clock starts: speed-up (target ≥ 1.7);
4. peak RSS (``VmHWM`` of a fresh child process running the iterative executor) at
   chunksize 100k, folds 1 (target ≤ 2 GB; fullsim for comparison) and for folds N on the
   ``--fold-events`` chunk (folds are simulated in batches of ≤ 200k (event, fold) pairs).

Input: a benchmark file of ``--events`` events (default 100k, so that one chunk really holds
100k events) built once from a bundled sample by repeating it with shifted event numbers
(``event + copy · 10^7``: every copy gets its own FlashSim noise) and cached under
``--workdir``. Usage::

    python benchmarks/bench_processor.py [--events 100000] [--folds 25] [--sources vbf_hmm ttbar dy_incl] [--skip-dask]

The last line printed is JSON with all figures and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_input(src: Path, n_events: int, out: Path) -> Path:
    """NanoAOD file of ``n_events`` events: ``src`` repeated, ``event`` shifted by copy·10^7."""
    import uproot

    from flashsim_coffea.nanoaod.io import NanoAODWriter, is_counter

    if out.exists() and uproot.open(out)["Events"].num_entries == n_events:
        return out
    tree = uproot.open(src)["Events"]
    names = [k for k in tree.keys() if not is_counter(k, tree.keys())]
    block = tree.arrays(names, how=dict)
    n_src = tree.num_entries
    tmp = out.with_suffix(".tmp.root")
    writer = NanoAODWriter(tmp)
    done, copy = 0, 0
    while done < n_events:
        m = min(n_src, n_events - done)
        part = {k: v[:m] for k, v in block.items()}
        part["event"] = np.asarray(part["event"]).astype(np.uint64) + np.uint64(copy * 10**7)
        writer.extend(part)
        done += m
        copy += 1
    writer.close(xsec_pb=1.0)
    tmp.rename(out)
    return out


def fileset_for(path: Path) -> dict:
    return {"bench": {"files": {str(path): "Events"}}}


def run_iterative(path: Path, mode: str, folds: int, chunksize: int, staged: bool = True,
                  threads: int = 1) -> tuple[float, int]:
    from flashsim_coffea.inject import FlashSim
    from flashsim_coffea.runner import run_processor
    from flashsim_coffea.processors import VBFHmmProcessor

    flashsim = FlashSim(threads=threads) if mode == "flashsim" else None
    proc = VBFHmmProcessor(mode=mode, folds=folds, dnn=True, staged=staged, flashsim=flashsim)
    t = time.perf_counter()
    out = run_processor(fileset_for(path), proc, "iterative", chunksize=chunksize)
    return time.perf_counter() - t, int(out["bench"]["nevents"])


def source_file(name: str, workdir: Path) -> Path:
    """A bundled sample by process name, ``dy_incl`` (unfiltered DY, generated once), or a path."""
    if name == "dy_incl":
        path = workdir / "dy_incl_5000_3101.root"
        if not path.exists():
            from flashsim_coffea.generate.driver import generate

            generate("dy", 5000, 3101, path, progress=False)
        return path
    if name.endswith(".root"):
        return Path(name)
    return ROOT / "flashsim_coffea" / "samples" / f"{name}.root"


def measure_source(src: Path, args, workdir: Path) -> dict:
    """Events/s of fullsim, flashsim (staged and not) and the folds-N/folds-1 time ratio on one source."""
    path = build_input(src, args.events, workdir / f"{src.stem}_{args.events}.root")
    run_iterative(path, "flashsim", 1, 2_000)  # warm-up: imports, model and DNN loading, page cache
    rates = {}
    for label, mode, staged, threads in (("fullsim", "fullsim", True, 1), ("flashsim", "flashsim", True, 1),
                                         ("flashsim_unstaged", "flashsim", False, 1),
                                         ("flashsim_threads2", "flashsim", True, 2)):
        dt, n = run_iterative(path, mode, 1, args.chunksize, staged=staged, threads=threads)
        rates[label] = n / dt
        print(f"{src.stem:12s} {label:18s} folds 1 : {n} events in {dt:6.2f} s = {n / dt:8.0f} events/s", flush=True)
    res = {"events_per_s": {k: round(v) for k, v in rates.items()},
           "ratio_flashsim_vs_fullsim": round(rates["flashsim"] / rates["fullsim"], 3),
           "ratio_staged_vs_unstaged": round(rates["flashsim"] / rates["flashsim_unstaged"], 2),
           "ratio_threads2_vs_threads1": round(rates["flashsim_threads2"] / rates["flashsim"], 2)}
    fpath = build_input(src, args.fold_events, workdir / f"{src.stem}_{args.fold_events}.root")
    t1, _ = run_iterative(fpath, "flashsim", 1, args.fold_events)
    dtn, _ = run_iterative(fpath, "flashsim", args.folds, args.fold_events)
    res["folds"] = {"events": args.fold_events, "seconds_folds1": round(t1, 2), f"seconds_folds{args.folds}": round(dtn, 2),
                    f"ratio_folds{args.folds}_vs_folds1": round(dtn / t1, 2)}
    print(f"{src.stem:12s} flashsim {args.fold_events} events: folds 1 {t1:.2f} s, folds {args.folds} {dtn:.2f} s "
          f"= {dtn / t1:.2f} x", flush=True)
    return res


def run_dask(path: Path, workers: int, chunksize: int) -> float:
    """Seconds for flashsim (folds 1) on a warm LocalCluster of ``workers`` processes, as the
    runner starts it (:func:`flashsim_coffea.runner.local_cluster`)."""
    from dask.distributed import Client

    from flashsim_coffea.processors import VBFHmmProcessor
    from flashsim_coffea.runner import local_cluster, run_processor

    with local_cluster(workers) as cluster, Client(cluster) as client:
        proc = VBFHmmProcessor(mode="flashsim", folds=1, dnn=True)
        # warm-up pass: every worker imports and loads the models (not part of the measurement)
        run_processor(fileset_for(path), proc, client, chunksize=chunksize)
        t = time.perf_counter()
        run_processor(fileset_for(path), proc, client, chunksize=chunksize)
        return time.perf_counter() - t


def peak_rss_gb(path: Path, mode: str, folds: int, chunksize: int) -> float:
    """Peak RSS (GB) of a fresh Python process running the processor (iterative executor)."""
    code = (
        "import sys, warnings; warnings.simplefilter('ignore'); sys.path.insert(0, %r)\n"
        "from benchmarks.bench_processor import run_iterative\n"
        "from pathlib import Path\n"
        "run_iterative(Path(%r), %r, %d, %d)\n"
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])\n"
        % (str(ROOT), str(path), mode, folds, chunksize)
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True).stdout
    # VmHWM (kB), not ru_maxrss: on Linux ru_maxrss survives execve, so a child started from
    # this (large) process would report at least the parent's size
    return int(out.split()[-1]) / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sources", nargs="+", default=["vbf_hmm", "ttbar", "dy_incl"],
                        help="bundled process names, dy_incl (unfiltered DY, generated once) or ROOT files; "
                             "the first one is also used for the dask and memory figures")
    parser.add_argument("--workdir", default=str(ROOT / "benchmarks" / "data"))
    parser.add_argument("--folds", type=int, default=25)
    parser.add_argument("--chunksize", type=int, default=100_000)
    parser.add_argument("--fold-events", type=int, default=10_000,
                        help="events (one chunk) for the folds-N vs folds-1 comparison and its peak RSS")
    parser.add_argument("--dask-events", type=int, default=40_000, help="events for the dask scaling measurement")
    parser.add_argument("--dask-chunksize", type=int, default=5_000)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    args = parser.parse_args()
    from machine import machine_info  # benchmarks/machine.py (sys.path[0] when run as a script)

    warnings.simplefilter("ignore")
    os.makedirs(args.workdir, exist_ok=True)
    workdir = Path(args.workdir)
    res: dict = {"events": args.events, "chunksize": args.chunksize, "cpus": os.cpu_count(), "sources": {}}
    for name in args.sources:
        src = source_file(name, workdir)
        res["sources"][name] = measure_source(src, args, workdir)
    src = source_file(args.sources[0], workdir)
    path = build_input(src, args.events, workdir / f"{src.stem}_{args.events}.root")
    fpath = build_input(src, args.fold_events, workdir / f"{src.stem}_{args.fold_events}.root")

    if not args.skip_dask:
        dpath = build_input(src, args.dask_events, workdir / f"{src.stem}_{args.dask_events}.root")
        w1 = run_dask(dpath, 1, args.dask_chunksize)
        w2 = run_dask(dpath, 2, args.dask_chunksize)
        res["dask"] = {"events": args.dask_events, "chunksize": args.dask_chunksize,
                       "seconds_1_worker": round(w1, 2), "seconds_2_workers": round(w2, 2), "speedup": round(w1 / w2, 2)}
        print(f"dask flashsim: 1 worker {w1:.2f} s, 2 workers {w2:.2f} s, speed-up {w1 / w2:.2f}", flush=True)
    if not args.skip_rss:
        rss = {"fullsim_chunk100k": round(peak_rss_gb(path, "fullsim", 1, args.chunksize), 2),
               "flashsim_folds1_chunk100k": round(peak_rss_gb(path, "flashsim", 1, args.chunksize), 2),
               f"flashsim_folds{args.folds}_chunk{args.fold_events}":
                   round(peak_rss_gb(fpath, "flashsim", args.folds, args.fold_events), 2)}
        for k, v in rss.items():
            print(f"peak RSS {k}: {v:.2f} GB", flush=True)
        res["peak_rss_gb"] = rss
    res["machine"] = machine_info()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
