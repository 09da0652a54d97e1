"""Throughput of the reference detector response (single thread).

    python benchmarks/bench_reference.py [--objects 1000000] [--repeat 3]

Builds synthetic Gen events (``flashsim_coffea.generate.synthetic``) with about ``--objects``
GenJets + Gen muons, runs ``respond`` ``--repeat`` times (best time kept) and prints JSON:
input/output object counts and objects per second for jets (GenJets in → Jets out, timed
alone via the jet stage), muons (Gen muons → Muons, muon stage) and the whole ``respond``
(reading, matching, both stages, sorting, cross-references, precision, ``ak.unflatten``).
``--cpu-time`` measures CPU seconds of this process, which is the fair figure on a shared,
loaded machine (wall time there includes waiting for a core).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import awkward as ak  # noqa: E402
import numpy as np  # noqa: E402

from flashsim_coffea.reference import respond  # noqa: E402
from flashsim_coffea.reference._inputs import is_gen_muon, read_gen  # noqa: E402
from flashsim_coffea.reference.fakes import simulate_fakes  # noqa: E402
from flashsim_coffea.reference.jets import simulate_genjets  # noqa: E402
from flashsim_coffea.reference.muons import simulate_muons  # noqa: E402
from flashsim_coffea.generate.synthetic import synthetic_gen  # noqa: E402


CLOCK = time.perf_counter


def best(f, repeat):
    t = []
    for _ in range(repeat):
        t0 = CLOCK()
        r = f()
        t.append(CLOCK() - t0)
    return min(t), r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cpu-time", action="store_true",
                    help="time with process_time (CPU seconds of this process: robust on a shared machine)")
    a = ap.parse_args()
    from machine import machine_info  # benchmarks/machine.py (sys.path[0] when run as a script)

    global CLOCK
    if a.cpu_time:
        CLOCK = time.process_time
    n_events = max(a.objects // 5, 1)  # ~4 GenJets + ~0.9 Gen muons per event
    gen = synthetic_gen(n_events, seed=1)
    g = read_gen(gen)
    n_genjet = len(g.genjet)
    n_genmu = int((is_gen_muon(g.genpart) & (np.abs(g.genpart["eta"]) < 2.4) & (g.genpart["pt"] > 3)).sum())
    t_read, _ = best(lambda: read_gen(gen), a.repeat)
    t_jet, jets = best(lambda: (simulate_genjets(g, 7), simulate_fakes(g, 7)), a.repeat)
    n_fake = len(jets[1]["pt"])
    t_mu, mus = best(lambda: simulate_muons(g, 7), a.repeat)
    t_all, out = best(lambda: respond(gen, 7), a.repeat)
    n_jet_out = int(ak.sum(ak.num(out["Jet_pt"])))
    n_mu_out = int(ak.sum(ak.num(out["Muon_pt"])))
    res = {
        "events": n_events,
        "genjets_in": n_genjet,
        "gen_muons_in": n_genmu,
        "pileup_fakes_made": n_fake,
        "jets_out": n_jet_out,
        "muons_out": n_mu_out,
        "seconds": {"read_gen": round(t_read, 3), "jets": round(t_jet, 3), "muons": round(t_mu, 3), "respond": round(t_all, 3)},
        "jets_per_s": round(n_genjet / t_jet),
        "jet_candidates_per_s": round((n_genjet + n_fake) / t_jet),
        "muons_per_s": round(n_genmu / t_mu),
        "total_objects_per_s": round((n_genjet + n_genmu) / t_all),
        "total_candidates_per_s": round((n_genjet + n_fake + n_genmu) / t_all),
        "clock": "process_time" if a.cpu_time else "perf_counter",
        "note": ("objects = Gen inputs (GenJets + candidate Gen muons); candidates also count the "
                 "pile-up fake jets, which get the full jet treatment; single thread; best of repeats"),
        "machine": machine_info(),
    }
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
