"""One block of events: Pythia 8 → GenPart, GenJet, Pileup, reference Jet/Muon branches.

Events are produced in blocks of a fixed size (:data:`BLOCK_SIZE`), each with its own Pythia
seed derived from (user seed, process, block index). A file of N events is the same sequence
of blocks whether one worker or several make them, so ``--workers`` never changes the events.

Event identity (NanoAOD ``run, luminosityBlock, event``): ``run = 1`` (as in CMS MC),
``luminosityBlock = seed``, ``event = block·BLOCK_SIZE + i + 1`` — unique per file and seed,
and the key of every random number drawn afterwards (reference response, FlashSim noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from .. import noise
from ..noise import SEED_MAX
from ..nanoaod.precision import apply_nanoaod_precision
from .._quiet import quiet_stdout as _quiet_stdout
from .filters import apply_filter
from .genjets import cluster_genjets
from .genpart import FlatRecord, build_genpart
from .pileup import pileup_branches
from .processes import Process

BLOCK_SIZE = 500
_MB_TO_PB = 1e9


@dataclass
class BlockResult:
    branches: dict
    n_accepted: int
    n_tried: int
    sigma_pb: float  # Pythia's sigmaGen after this block
    sigma_err_pb: float
    n_pythia_accepted: int  # events Pythia counted for sigmaGen


def block_seed(seed: int, process: str, block: int) -> int:
    """Pythia seed of a block, in 1..900000000, from a hash of (seed, process, block)."""
    h = noise.hash_keys(seed, f"pythia.{process}", block)
    return int(h % np.uint64(SEED_MAX)) + 1


def make_pythia(process: Process, pythia_seed: int):
    import pythia8mc

    with _quiet_stdout():
        pythia = pythia8mc.Pythia("", False)
        for s in process.pythia_settings() + ("Random:setSeed = on", f"Random:seed = {pythia_seed}"):
            if not pythia.readString(s):
                raise RuntimeError(f"Pythia rejected the setting {s!r} of process {process.name}")
        ok = pythia.init()
    if not ok:
        raise RuntimeError(f"Pythia failed to initialise process {process.name} (seed {pythia_seed})")
    return pythia


def pythia_batch(pythia, n: int) -> ak.Array:
    with _quiet_stdout():
        return pythia.nextBatch(n, "skip")


def gen_branches(prt: ak.Array, info: ak.Array, rec: FlatRecord, genjets: dict, seed: int, first_event: int) -> dict:
    """The Gen-level NanoAOD branches of a batch (event ids, weights, Pileup, GenJet, GenPart)."""
    n = len(prt)
    event = np.arange(first_event, first_event + n, dtype=np.uint64)
    run = np.ones(n, dtype=np.uint32)
    lumi = np.full(n, seed, dtype=np.uint32)
    weights = info["weights"]
    gen_weight = ak.to_numpy(ak.fill_none(ak.firsts(weights), 1.0)).astype(np.float32)
    out = {"run": run, "luminosityBlock": lumi, "event": event, "genWeight": gen_weight}
    out.update(pileup_branches(seed, run, lumi, event))
    out.update(genjets)
    out.update(build_genpart(rec))
    return apply_nanoaod_precision(out)  # stored precision, before the reference response sees it


def generate_block(
    process: Process,
    seed: int,
    block: int,
    n_events: int,
    filter_name: str | None,
    reference: bool = True,
    block_size: int = BLOCK_SIZE,
) -> BlockResult:
    """Generate ``n_events`` accepted events of block ``block`` (see module docstring)."""
    pythia = make_pythia(process, block_seed(seed, process.name, block))
    parts = []
    first = block * block_size + 1
    n_kept = n_tried = n_used = 0
    batch = n_events
    while n_kept < n_events:
        events = pythia_batch(pythia, batch)
        n_batch = len(events)
        rec = FlatRecord.from_pythia(events.prt)
        genjets = cluster_genjets(rec)
        idx = np.flatnonzero(apply_filter(filter_name, rec, genjets))[: n_events - n_kept]
        if len(idx):
            # events tried up to the last one kept: the filter efficiency is n_events / n_used
            n_used = n_tried + int(idx[-1]) + 1
            if len(idx) != len(events):
                # keep only the accepted events, packed, so rejected ones free their memory
                events = ak.to_packed(events[idx])
                genjets = {k: ak.to_packed(v[idx]) for k, v in genjets.items()}
                rec = FlatRecord.from_pythia(events.prt)
            parts.append(gen_branches(events.prt, events.info, rec, genjets, seed, first))
            first += len(idx)
            n_kept += len(idx)
        n_tried += n_batch
        # next batch sized by the efficiency seen so far (bounded, so memory stays small)
        eff = max(n_kept, 1) / n_tried
        batch = int(min(max((n_events - n_kept) / eff * 1.1, 20), 500))

    branches = {k: _concat([p[k] for p in parts]) for k in parts[0]}
    if reference:
        from ..reference import respond

        branches.update(respond(branches, seed))

    info = pythia.infoPython()
    return BlockResult(
        branches=branches,
        n_accepted=n_events,
        n_tried=n_used,
        sigma_pb=info.sigmaGen() * _MB_TO_PB,
        sigma_err_pb=info.sigmaErr() * _MB_TO_PB,
        n_pythia_accepted=int(info.nAccepted()),
    )


def _concat(arrays: list):
    if len(arrays) == 1:
        return arrays[0]
    if isinstance(arrays[0], ak.Array):
        return ak.concatenate(arrays)
    return np.concatenate(arrays)
