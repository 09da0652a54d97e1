"""The demo's processor runs (coffea ``Runner``, one call per mode over all processes).

1. ``fullsim`` — the files' reference reco Jet/Muon (the "FullSim" of this project);
2. ``gen`` — Gen-level muons and jets;
3. ``flashsim`` — FlashSim injected on the fly, folds = 1;
4. ``flashsim_folds`` — FlashSim with folds = N (FoldHist) on the two VBF samples
   (upsampling comparison and the FlashSim-driven variation);
5. one Gen event of the signal sample reconstructed ``single_event_folds`` times
   (:func:`single_event`): the distribution of its DNN output and the fraction of its folds
   that pass the selection.

Runs 1–4 go through :func:`flashsim_coffea.runner.run_processor` (the path of ``flashsim
run``: driver-side model checks, one-line errors for errors raised on workers, the
cross-reference warnings filtered) and share one executor
(:func:`flashsim_coffea.runner.executor_session`): with ``futures`` one process pool whose
workers keep their loaded models across the runs, with ``dask`` one client. The processor is
:class:`flashsim_coffea.processors.VBFHmmProcessor`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..nanoaod.conventions import EVENT_ID
from .config import SIGNAL, UPSAMPLED, DemoConfig

__all__ = ["DemoOutputs", "Progress", "SingleEvent", "run_all", "single_event"]


class Progress:
    """Step-by-step progress lines: ``[k/n] what … done in T s (R events/s)``."""

    def __init__(self, total: int, enabled: bool = True, log: Callable[[str], None] = print):
        self.total, self.k, self.enabled, self.log = total, 0, enabled, log
        self.t_start = time.perf_counter()
        self.timings: dict[str, float] = {}

    def run(self, name: str, what: str, fn: Callable[[], Any], events: int | None = None) -> Any:
        self.k += 1
        if self.enabled:
            self.log(f"[{self.k}/{self.total}] {what} …")
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        self.timings[name] = round(dt, 2)
        if self.enabled:
            rate = f", {events / dt:.0f} events/s" if events and dt > 0 else ""
            self.log(f"      done in {dt:.1f} s{rate} (total {time.perf_counter() - self.t_start:.0f} s)")
        return out


@dataclass
class SingleEvent:
    """One Gen event reconstructed ``folds`` times by FlashSim (fractions are of its folds)."""

    process: str
    entry: int
    event_id: dict[str, int]
    folds: int
    output: dict  # the processor output of that event (FoldHists with folds = self.folds)
    fraction_selected: float  # VBF selection and 110 ≤ m_μμ < 150 (last cutflow step)
    fraction_sr: float  # signal region
    fullsim_dnn: float
    gen_dnn: float


@dataclass
class DemoOutputs:
    fullsim: dict
    gen: dict
    flashsim: dict
    flashsim_folds: dict
    single: SingleEvent | None
    timings: dict[str, float] = field(default_factory=dict)


def _fileset(samples: dict[str, Path], processes) -> dict:
    return {p: {"files": {str(samples[p]): "Events"}} for p in processes}


def run_all(cfg: DemoConfig, samples: dict[str, Path], simulator: Any, log: Callable[[str], None] = print) -> DemoOutputs:
    """Runs 1–5 of the module docstring with the executor of ``cfg``."""
    from flashsim_coffea.processors import VBFHmmProcessor

    from ..runner import executor_session, run_processor

    n_events = {p: _entries(samples[p]) for p in cfg.processes}
    total = sum(n_events.values())
    up = [p for p in UPSAMPLED if p in samples]
    n_up = sum(n_events[p] for p in up)
    prog = Progress(5 if SIGNAL in samples else 4, enabled=cfg.progress, log=log)
    ex_text = f"{cfg.executor}, {cfg.workers} worker(s)" if cfg.executor != "iterative" else "iterative"
    procs = list(cfg.processes)

    with executor_session(cfg.executor, cfg.workers, status=cfg.progress) as ex:

        def job(mode: str, processes, folds: int = 1) -> Callable[[], dict]:
            proc = VBFHmmProcessor(mode=mode, folds=folds, dnn=cfg.dnn, flashsim=simulator if mode == "flashsim" else None)
            return lambda: run_processor(_fileset(samples, processes), proc, ex, chunksize=cfg.chunksize)

        full = prog.run("fullsim", f"FullSim (reference reco) on {total} events of {len(procs)} processes [{ex_text}]",
                        job("fullsim", procs), total)
        gen = prog.run("gen", f"Gen level on {total} events", job("gen", procs), total)
        flash = prog.run("flashsim", f"FlashSim (folds 1) on {total} events", job("flashsim", procs), total)
        folded = prog.run("flashsim_folds", f"FlashSim folds {cfg.folds} on {n_up} events of {', '.join(up)} "
                          f"({n_up * cfg.folds} reconstructions)", job("flashsim", up, cfg.folds), n_up * cfg.folds)
    single = None
    if SIGNAL in samples:
        single = prog.run("single_event", f"one {SIGNAL} Gen event, {cfg.single_event_folds} folds",
                          lambda: single_event(samples[SIGNAL], SIGNAL, cfg.single_event_folds, simulator, cfg.dnn))
    return DemoOutputs(full, gen, flash, folded, single, prog.timings)


def _entries(path: Path) -> int:
    import uproot

    with uproot.open(path) as f:
        return int(f["Events"].num_entries)


def _events(path: Path, dataset: str, start: int, stop: int, mode: str = "virtual"):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    NanoAODSchema.warn_missing_crossrefs = False
    return NanoEventsFactory.from_root(
        {str(path): "Events"}, schemaclass=NanoAODSchema, mode=mode, entry_start=start, entry_stop=stop,
        metadata={"dataset": dataset, "filename": str(path), "entrystart": start, "entrystop": stop},
    ).events()


def pick_event(path: Path, dnn: bool | str = True, max_entries: int = 500) -> int:
    """Entry of the first event in the FullSim signal region (else the first one passing the VBF
    selection, else the first with a dimuon and two jets, else 0)."""
    from ..analysis import analyse, reco_jets, reco_muons

    events = _events(path, "pick", 0, min(max_entries, _entries(path)), mode="eager")
    res = analyse(reco_muons(events), reco_jets(events), dnn=dnn)
    for mask in (res.regions["SR"], res.cutflow["mass_window"], res.cutflow["two_jets"]):
        idx = np.flatnonzero(mask)
        if idx.size:
            return int(idx[0])
    return 0


def _dnn_value(events, mode: str, dnn: bool | str) -> float:
    from ..analysis import analyse, gen_jets, gen_muons, reco_jets, reco_muons

    if dnn is False:
        return float("nan")
    mu, jets = (reco_muons(events), reco_jets(events)) if mode == "fullsim" else (gen_muons(events), gen_jets(events))
    res = analyse(mu, jets, dnn=dnn)
    return float(res.variables["dnn_atanh"][0])


def single_event(path: Path, process: str, folds: int, simulator: Any, dnn: bool | str = True,
                 entry: int | None = None) -> SingleEvent:
    """One Gen event (default: :func:`pick_event`) reconstructed ``folds`` times in this process."""
    from flashsim_coffea.processors import VBFHmmProcessor

    entry = pick_event(path, dnn) if entry is None else entry
    eager = _events(path, process, entry, entry + 1, mode="eager")
    event_id = {k: int(eager[k][0]) for k in EVENT_ID}
    proc = VBFHmmProcessor(mode="flashsim", folds=folds, dnn=dnn, flashsim=simulator)
    out = proc.process(_events(path, process, entry, entry + 1))[process]
    weight = out["sumw"] or 1.0
    sr = float(out["hists"]["SR"]["mass"].values(flow=True).sum()) / weight
    return SingleEvent(
        process=process, entry=entry, event_id=event_id, folds=folds, output=out,
        fraction_selected=float(out["cutflow"]["mass_window"]) / folds, fraction_sr=sr,
        fullsim_dnn=_dnn_value(eager, "fullsim", dnn), gen_dnn=_dnn_value(eager, "gen", dnn),
    )
