"""Where the dask time goes: flashsim throughput per executor, worker count and chunk size.

The VBF H→μμ processor in flashsim mode (folds 1, the shipped models and DNN) on one benchmark
file (``bench_processor.build_input``: a bundled sample repeated with shifted event numbers),
each configuration timed on a warm executor (a first pass loads the models in every worker):

* ``iterative`` (one process) at each ``--chunksizes`` value: the per-chunk fixed cost
  ``a`` and the per-event cost ``b`` of a fit t = n_chunks · a + n_events · b;
* dask ``LocalCluster`` with 1 and 2 single-threaded worker processes at each chunk size, as the
  runner starts it (:func:`flashsim_coffea.runner.local_cluster`) and with dask's own worker
  environment (``MALLOC_TRIM_THRESHOLD_=65536``, which halves the per-event speed of a worker);
  events/s, the speed-up 2/1 workers and the ratio to iterative at the same chunk size.

A 2-worker speed-up below 2 with iterative ≈ dask-1-worker means the cost is the chunking
(fixed cost per chunk) or the second core being shared, not dask; dask-1-worker well below
iterative at the same chunk size means per-event work runs slower in the worker process (its
environment, threads) or per-task overheads. Usage::

    python benchmarks/bench_dask.py [--events 40000] [--chunksizes 5000 20000] [--source vbf_hmm]

The last line printed is JSON with every figure; the CPU is printed first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _timed(fileset, proc, executor, chunksize: int) -> float:
    from flashsim_coffea.runner import run_processor

    run_processor(fileset, proc, executor, chunksize=chunksize)  # warm: models loaded where the work runs
    t = time.perf_counter()
    run_processor(fileset, proc, executor, chunksize=chunksize)
    return time.perf_counter() - t


def main() -> None:
    from bench_processor import build_input
    from machine import machine_info

    from flashsim_coffea.processors import VBFHmmProcessor
    from flashsim_coffea.samples import sample_path

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=40_000)
    p.add_argument("--chunksizes", type=int, nargs="+", default=[5_000, 20_000])
    p.add_argument("--source", default="vbf_hmm")
    p.add_argument("--workdir", default=str(ROOT / "benchmarks" / "data"))
    args = p.parse_args()
    warnings.simplefilter("ignore")
    cpu = machine_info()
    print(f"CPU: {cpu['cpu_model']} ({cpu['cores']} cores)", flush=True)
    path = build_input(sample_path(args.source), args.events, Path(args.workdir) / f"{args.source}_{args.events}.root")
    fileset = {args.source: [str(path)]}
    proc = VBFHmmProcessor(mode="flashsim", folds=1, dnn=True)
    res: dict = {"cpu": cpu["cpu_model"], "events": args.events, "source": args.source, "iterative": {}}
    for cs in args.chunksizes:
        t = _timed(fileset, proc, "iterative", cs)
        res["iterative"][cs] = round(t, 2)
        print(f"iterative chunksize {cs:>6}: {t:6.2f} s = {args.events / t:7.0f} ev/s", flush=True)
    # t = n_chunks·a + n·b from the iterative timings
    n_chunks = np.array([np.ceil(args.events / cs) for cs in args.chunksizes])
    times = np.array([res["iterative"][cs] for cs in args.chunksizes])
    if len(args.chunksizes) >= 2:
        a, c = np.linalg.lstsq(np.stack([n_chunks, np.ones_like(n_chunks)], axis=1), times, rcond=None)[0]
        res["per_chunk_s"] = round(float(a), 3)
        res["per_event_us"] = round(float(c) / args.events * 1e6, 1)
        print(f"iterative: {a:.3f} s fixed per chunk, {c / args.events * 1e6:.1f} µs per event", flush=True)

    import dask
    from dask.distributed import Client, LocalCluster

    from flashsim_coffea.runner import local_cluster

    def dask_default(workers: int):  # dask's own nanny environment (MALLOC_TRIM_THRESHOLD_=65536)
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)

    for label, make in (("dask", local_cluster), ("dask_default_env", dask_default)):
        res[label] = {}
        for workers in (1, 2):
            with make(workers) as cluster, Client(cluster) as client:
                for cs in args.chunksizes:
                    t = _timed(fileset, proc, client, cs)
                    res[label].setdefault(workers, {})[cs] = round(t, 2)
                    print(f"{label} {workers} worker(s) chunksize {cs:>6}: {t:6.2f} s = {args.events / t:7.0f} ev/s "
                          f"({res['iterative'][cs] / t:.2f} × iterative)", flush=True)
        res[f"{label}_speedup_2_over_1"] = {cs: round(res[label][1][cs] / res[label][2][cs], 2) for cs in args.chunksizes}
        res[f"{label}_2_over_iterative"] = {cs: round(res["iterative"][cs] / res[label][2][cs], 2) for cs in args.chunksizes}
    assert dask.config.get("distributed.nanny.pre-spawn-environ")["MALLOC_TRIM_THRESHOLD_"] is not None
    print(json.dumps(res))


if __name__ == "__main__":
    main()
