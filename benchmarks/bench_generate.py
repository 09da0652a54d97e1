"""Throughput of ``flashsim generate``: bare Pythia vs the full chain, and 1 vs 2 workers.

Prints one JSON object (last line) with, per process:
  pythia_ev_per_s      bare Pythia 8 (init + nextBatch), same block layout as `generate`
  generate_ev_per_s    `flashsim generate` with 1 worker (Pythia + GenPart/GenJet + reference + write)
  ratio_vs_pythia      generate / bare Pythia                               (target ≥ 0.80)
  *_per_cpu_s          the same per CPU second of this process (robust on a shared machine)
  stage_seconds        where the time goes in one block (pythia, genjets, genpart+pileup, reference, write)
  generate_2w_ev_per_s and speedup_2w_vs_1w                                  (target ≥ 1.7)
and the reference response alone in objects/s (target ≥ 1 M/s).

Usage: python benchmarks/bench_generate.py [--events 1000] [--processes ttbar vbf_hmm]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import awkward as ak
import numpy as np


def bare_pythia(process: str, n: int, seed: int, block_size: int) -> tuple[float, float]:
    from flashsim_coffea.generate.events import block_seed, make_pythia, pythia_batch
    from flashsim_coffea.generate.processes import get_process

    proc = get_process(process)
    t0, c0 = time.perf_counter(), time.process_time()
    done, block = 0, 0
    while done < n:
        m = min(block_size, n - done)
        pythia = make_pythia(proc, block_seed(seed, process, block))
        pythia_batch(pythia, m)
        done, block = done + m, block + 1
    return n / (time.perf_counter() - t0), n / (time.process_time() - c0)


def stages(process: str, n: int, seed: int) -> dict:
    """Seconds per stage for one block of n events (same code path as generate_block)."""
    from flashsim_coffea.generate.events import block_seed, gen_branches, make_pythia, pythia_batch
    from flashsim_coffea.generate.genjets import cluster_genjets
    from flashsim_coffea.generate.genpart import FlatRecord
    from flashsim_coffea.generate.processes import get_process
    from flashsim_coffea.nanoaod.io import NanoAODWriter
    from flashsim_coffea.reference import respond

    proc = get_process(process)
    out = {}
    t = time.perf_counter()
    pythia = make_pythia(proc, block_seed(seed, process, 0))
    ev = pythia_batch(pythia, n)
    out["pythia"] = time.perf_counter() - t
    t = time.perf_counter()
    rec = FlatRecord.from_pythia(ev.prt)
    jets = cluster_genjets(rec)
    out["genjets"] = time.perf_counter() - t
    t = time.perf_counter()
    br = gen_branches(ev.prt, ev.info, rec, jets, seed, 1)
    out["genpart_pileup"] = time.perf_counter() - t
    t = time.perf_counter()
    br.update(respond(br, seed))
    out["reference"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        w = NanoAODWriter(Path(d) / "x.root")
        w.extend(br)
        w.close()
        out["write"] = time.perf_counter() - t
    return {k: round(v, 3) for k, v in out.items()}


def reference_rate(n_events: int = 20000, seed: int = 1) -> dict:
    """Reference response alone on a synthetic Gen record of ~n_events tt̄-like events."""
    from flashsim_coffea.reference import respond

    rng = np.random.default_rng(seed)
    nj = rng.poisson(8, n_events)
    nm = rng.poisson(2, n_events)
    NJ, NM = int(nj.sum()), int(nm.sum())
    jag = lambda x, c: ak.unflatten(x, c)  # noqa: E731
    pdg = np.where(rng.random(NM) < 0.5, 13, -13).astype(np.int32)
    gen = {
        "run": np.ones(n_events, np.uint32), "luminosityBlock": np.ones(n_events, np.uint32),
        "event": np.arange(1, n_events + 1, dtype=np.uint64),
        "Pileup_nTrueInt": rng.uniform(10, 60, n_events).astype(np.float32),
        "GenJet_pt": jag((15 + rng.exponential(40, NJ)).astype(np.float32), nj),
        "GenJet_eta": jag(rng.uniform(-4.7, 4.7, NJ).astype(np.float32), nj),
        "GenJet_phi": jag(rng.uniform(-np.pi, np.pi, NJ).astype(np.float32), nj),
        "GenJet_mass": jag(rng.uniform(2, 20, NJ).astype(np.float32), nj),
        "GenJet_partonFlavour": jag(rng.choice([21, 1, 2, 3, 4, 5], NJ).astype(np.int32), nj),
        "GenJet_hadronFlavour": jag(rng.choice([0, 0, 0, 4, 5], NJ).astype(np.uint8), nj),
        "GenPart_pt": jag((5 + rng.exponential(30, NM)).astype(np.float32), nm),
        "GenPart_eta": jag(rng.uniform(-2.4, 2.4, NM).astype(np.float32), nm),
        "GenPart_phi": jag(rng.uniform(-np.pi, np.pi, NM).astype(np.float32), nm),
        "GenPart_mass": jag(np.full(NM, 0.1057, np.float32), nm),
        "GenPart_pdgId": jag(pdg, nm),
        "GenPart_status": jag(np.ones(NM, np.int32), nm),
        "GenPart_statusFlags": jag(np.where(rng.random(NM) < 0.6, 0b10000100000001, 0b10000001000000).astype(np.int32), nm),
        "GenPart_genPartIdxMother": jag(np.full(NM, -1, np.int32), nm),
    }
    respond(gen, seed)  # warm-up
    t = time.perf_counter()
    out = respond(gen, seed)
    dt = time.perf_counter() - t
    n_obj = NJ + NM
    return {"objects": n_obj, "seconds": round(dt, 3), "objects_per_s": round(n_obj / dt), "reco_jets": int(ak.sum(ak.num(out["Jet_pt"]))), "reco_muons": int(ak.sum(ak.num(out["Muon_pt"])))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--processes", nargs="+", default=["ttbar", "vbf_hmm"])
    ap.add_argument("--seed", type=int, default=4242)
    args = ap.parse_args()

    from flashsim_coffea.generate.driver import generate
    from flashsim_coffea.generate.events import BLOCK_SIZE
    from machine import machine_info  # benchmarks/machine.py (sys.path[0] when run as a script)

    import os

    result: dict = {"events": args.events, "block_size": BLOCK_SIZE, "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as d:
        for proc in args.processes:
            r: dict = {}
            wall, cpu = bare_pythia(proc, args.events, args.seed, BLOCK_SIZE)
            r["pythia_ev_per_s"], r["pythia_ev_per_cpu_s"] = round(wall, 1), round(cpu, 1)
            c0 = time.process_time()
            s1 = generate(proc, args.events, args.seed, Path(d) / f"{proc}_1.root", workers=1, progress=False)
            r["generate_ev_per_s"] = round(args.events / s1.seconds, 1)
            r["generate_ev_per_cpu_s"] = round(args.events / (time.process_time() - c0), 1)
            r["ratio_vs_pythia"] = round(r["generate_ev_per_s"] / r["pythia_ev_per_s"], 3)
            # CPU-time ratio: robust when other processes share the cores
            r["ratio_vs_pythia_cpu"] = round(r["generate_ev_per_cpu_s"] / r["pythia_ev_per_cpu_s"], 3)
            s2 = generate(proc, args.events, args.seed, Path(d) / f"{proc}_2.root", workers=2, progress=False)
            r["generate_2w_ev_per_s"] = round(args.events / s2.seconds, 1)
            r["speedup_2w_vs_1w"] = round(s1.seconds / s2.seconds, 3)
            r["stage_seconds_per_500_events"] = stages(proc, 500, args.seed)
            result[proc] = r
            print(proc, json.dumps(r), flush=True)
    result["reference_alone"] = reference_rate()
    result["machine"] = machine_info()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
