"""``flashsim generate``: blocks of events on W worker processes, written in order to one file.

The file is the concatenation of blocks 0, 1, 2, … (see :mod:`.events`): workers only change
*who* makes a block, never its content, so the output is identical for any W. Blocks come
back through ``Pool.imap`` in order and are appended as they arrive; a progress bar counts
events. Cross section: Pythia's ``sigmaGen`` of each block, averaged with its ``nAccepted``
as weight (each block is an independent estimate); with a filter, the stored cross section
is σ_Pythia × ε_filter and ε_filter = accepted / tried is recorded.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np
from tqdm.auto import tqdm

from .. import __version__
from ..errors import UserError
from ..nanoaod.io import NanoAODWriter, check_output_path
from ..noise import check_seed
from .events import BLOCK_SIZE, BlockResult, generate_block
from .filters import FILTERS, expected_cost
from .processes import get_process


@dataclass
class GenerateSummary:
    path: Path
    process: str
    n_events: int
    n_tried: int
    xsec_pb: float
    xsec_err_pb: float
    filter_efficiency: float
    seconds: float
    workers: int
    n_jets: int = 0
    n_muons: int = 0
    extra: dict = field(default_factory=dict)

    def __str__(self) -> str:
        rate = self.n_events / self.seconds if self.seconds > 0 else float("nan")
        lines = [
            f"wrote {self.path}: {self.n_events} events of '{self.process}' in {self.seconds:.1f} s "
            f"({rate:.1f} events/s, {self.workers} worker{'s' if self.workers > 1 else ''})",
            f"  cross section {self.xsec_pb:.4g} ± {self.xsec_err_pb:.2g} pb (Pythia LO"
            + (f", × filter efficiency {self.filter_efficiency:.4g} = {self.n_events}/{self.n_tried})" if self.n_tried != self.n_events else ")"),
            f"  reference reco objects: {self.n_jets} jets, {self.n_muons} muons",
        ]
        return "\n".join(lines)


def _blocks(n_events: int, block_size: int) -> list[tuple[int, int]]:
    return [(b, min(block_size, n_events - b * block_size)) for b in range((n_events + block_size - 1) // block_size)]


def _run_block(args) -> BlockResult:
    return generate_block(*args)


def validate_request(process: str, n_events: int, seed: int, workers: int, filter_name: str | None) -> None:
    get_process(process)
    if n_events <= 0:
        raise UserError(f"-n must be a positive number of events, got {n_events}")
    check_seed(seed)
    if workers < 1:
        raise UserError(f"--workers must be ≥ 1, got {workers}")
    if filter_name is not None and filter_name not in FILTERS:
        raise UserError(f"unknown filter {filter_name!r}; known filters: {', '.join(FILTERS)}")


def generate(
    process: str,
    n_events: int,
    seed: int,
    output: str | os.PathLike,
    workers: int = 1,
    filter_name: str | None = None,
    force: bool = False,
    reference: bool = True,
    progress: bool = True,
    block_size: int = BLOCK_SIZE,
) -> GenerateSummary:
    """Generate ``n_events`` (after the filter) of ``process`` into the NanoAOD file ``output``."""
    validate_request(process, n_events, seed, workers, filter_name)
    path = check_output_path(output, force)
    proc = get_process(process)
    tasks = [(proc, seed, b, n, filter_name, reference, block_size) for b, n in _blocks(n_events, block_size)]
    warning = expected_cost(process, filter_name, n_events, workers)
    if warning:
        warnings.warn(f"flashsim generate {process}: {warning}", stacklevel=2)
    t0 = time.perf_counter()
    writer = NanoAODWriter(path)
    sig, sig_w, sig_err2, n_tried, n_jets, n_muons = 0.0, 0, 0.0, 0, 0, 0
    bar = tqdm(total=n_events, unit="ev", desc=f"generate {process}", disable=not progress)
    pool = mp.get_context("spawn").Pool(min(workers, len(tasks))) if workers > 1 else None
    try:
        results = pool.imap(_run_block, tasks) if pool else map(_run_block, tasks)
        for res in results:
            writer.extend(res.branches)
            n_tried += res.n_tried
            sig += res.sigma_pb * res.n_pythia_accepted
            sig_err2 += (res.sigma_err_pb * res.n_pythia_accepted) ** 2
            sig_w += res.n_pythia_accepted
            if "Jet_pt" in res.branches:
                n_jets += int(ak.sum(ak.num(res.branches["Jet_pt"])))
                n_muons += int(ak.sum(ak.num(res.branches["Muon_pt"])))
            bar.update(res.n_accepted)
            bar.set_postfix(tried=n_tried, filter_eff=f"{(bar.n / n_tried) if n_tried else 1:.2g}")
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
        if pool:
            pool.terminate()
    sigma = sig / sig_w if sig_w else float("nan")
    sigma_err = np.sqrt(sig_err2) / sig_w if sig_w else float("nan")
    eff = n_events / n_tried
    meta = {
        "generator": "Pythia 8 (pythia8mc) + fastjet anti-kT R=0.4",
        "flashsim_coffea_version": __version__,
        "process": process,
        "description": proc.description,
        "pythia_settings": list(proc.pythia_settings()),
        "notes": proc.notes,
        "seed": seed,
        "n_events": n_events,
        "n_tried": n_tried,
        "filter": filter_name,
        "filter_efficiency": eff,
        "xsec_pb_before_filter": sigma,
        "xsec_pb": sigma * eff,
        "xsec_err_pb": sigma_err * eff,
        "block_size": block_size,
        "reference_response": bool(reference),
    }
    writer.close(xsec_pb=sigma * eff, filter_efficiency=eff, metadata=meta)
    return GenerateSummary(
        path=path, process=process, n_events=n_events, n_tried=n_tried, xsec_pb=sigma * eff,
        xsec_err_pb=sigma_err * eff, filter_efficiency=eff, seconds=time.perf_counter() - t0,
        workers=workers, n_jets=n_jets, n_muons=n_muons,
    )
