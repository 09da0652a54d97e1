"""``run_processor``: a processor over a fileset with the coffea ``Runner``, nothing lost on bad input.

In order (:func:`run_processor`):

1. the fileset made canonical (:mod:`flashsim_coffea.runner.fileset`);
2. checks before any work: the processor's ``check()`` (driver-side model checks), every file
   opened once (entries per file, and the branches the processor names as missing:
   :mod:`flashsim_coffea.runner.interface`; the counters of the Gen collections it reads; for a
   processor that simulates, no file already folded by ``flashsim simulate`` and no duplicate
   event identity with folds > 1: :func:`~flashsim_coffea.runner.fileset.check_input`),
   unopenable files refused unless ``skip_bad_files`` (the message says why: no such file, no such
   tree — with the file's trees —, not a ROOT file: :func:`flashsim_coffea.nanoaod.io.open_problem`);
3. with ``lumi``, the normalisation (:mod:`flashsim_coffea.runner.normalise`): ``norm_weight``
   into each dataset's metadata;
4. the run with the executor (:mod:`flashsim_coffea.runner.executors`; never more worker
   processes than chunks, with a :class:`~flashsim_coffea.runner.errors.RunNotice`), errors as one line and
   bad chunks skipped with ``skip_bad_files`` (:mod:`flashsim_coffea.runner.errors`); coffea's
   cross-reference warnings filtered during it;
5. the bad-input report per dataset: ``expected_events`` (entries per file, None when
   unopenable), ``skipped`` (file → events not processed, or ``"unreadable"``),
   ``empty_files``; and ``normalisation`` with ``lumi``. A dataset without any processed chunk
   gets the processor's ``empty_output()``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from ..errors import UserError
from .errors import SKIP_HINT, RunNotice, bad_file_errors, quiet_crossrefs, user_errors
from .executors import coffea_executors, executor_session
from .fileset import canonical_fileset, expected_events
from .interface import processor_interface
from .normalise import normalisation

__all__ = ["run_processor"]


def _capped_workers(executor: Any, workers: int, scheduler: str | None, expected: Mapping, chunksize: int) -> int:
    """``workers``, or the number of chunks coffea makes of the non-empty files (its rule: a file
    of n entries in max(round(n / chunksize), 1) chunks) when the run would start more worker
    processes than that (``"futures"``, ``"dask"`` without a scheduler); a :class:`RunNotice` says so."""
    if executor not in ("futures", "dask") or scheduler or isinstance(workers, bool) or not isinstance(workers, int):
        return workers
    chunks = sum(max(round(n / chunksize), 1) for files in expected.values() for n in files.values() if n)
    if 1 <= chunks < workers:
        warnings.warn(f"starting {chunks} worker process{'es' if chunks > 1 else ''}, not {workers}: the input has "
                      f"{chunks} chunk{'s' if chunks > 1 else ''} of at most {chunksize} events (--chunksize)",
                      RunNotice, stacklevel=3)
        return chunks
    return workers


def run_processor(
    fileset: Mapping,
    proc,
    executor: Any = "iterative",
    workers: int = 2,
    scheduler: str | None = None,
    chunksize: int = 100_000,
    skip_bad_files: bool = False,
    *,
    lumi: float | None = None,
    status: bool = False,
    worker_retries: int = 3,
    treename: str = "Events",
) -> dict[str, Any]:
    """Run ``proc`` on ``fileset`` with the coffea Runner (module docstring, steps 1–5); returns
    the processor output with, per dataset, ``expected_events``, ``skipped``, ``empty_files``
    and, with ``lumi`` (fb⁻¹), ``normalisation``.

    ``fileset``: any coffea form (:func:`~flashsim_coffea.runner.fileset.canonical_fileset`);
    ``executor``: a name of :data:`~flashsim_coffea.runner.executors.EXECUTORS`, a dask
    ``Client`` or cluster object, or an executor from
    :func:`~flashsim_coffea.runner.executors.executor_session`; ``skip_bad_files``: skip (and
    report) unopenable files and chunks with unreadable data instead of stopping with a
    UserError; ``worker_retries``: how often chunks in flight at a worker process' death are
    resubmitted before the run looks for the chunk that kills its worker (futures executor).
    """
    from coffea.nanoevents import NanoAODSchema

    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise UserError(f"--chunksize must be an integer ≥ 1, got {chunksize!r}")
    fileset = canonical_fileset(fileset, treename)
    interface = processor_interface(proc)
    interface.check()  # driver-side model checks: one clear line, before any work
    with quiet_crossrefs():
        expected = expected_events(fileset, proc)
        unreadable = [f for ds in expected.values() for f, n in ds.items() if n is None]
        if unreadable and not skip_bad_files:
            from ..nanoaod.io import open_problem

            trees = {f: t for spec in fileset.values() for f, t in spec["files"].items()}
            raise UserError(f"{'; '.join(open_problem(f, trees[f]) for f in unreadable)} ({SKIP_HINT})")
        norm = normalisation(fileset, lumi, unreadable) if lumi is not None else None
        readable = {}
        for ds, spec in fileset.items():
            # unopenable files are reported as skipped, empty ones as empty_files: neither goes to coffea
            files = {f: t for f, t in spec["files"].items() if expected[ds][f]}
            if not files:
                continue
            meta = dict(spec.get("metadata") or {})
            if norm is not None:
                meta["norm_weight"] = norm[ds]["norm_weight"]
            readable[ds] = {"files": files, **({"metadata": meta} if meta else {})}
        out: dict[str, Any] = {}
        if readable:
            workers = _capped_workers(executor, workers, scheduler, expected, chunksize)
            with executor_session(executor, workers, scheduler, status=status, worker_retries=worker_retries) as ex, \
                    user_errors():
                runner = coffea_executors().runner(
                    executor=ex,
                    schema=NanoAODSchema,
                    chunksize=chunksize,
                    skipbadfiles=bad_file_errors() if skip_bad_files else False,
                    # a fresh cache: coffea's process-wide default keys file metadata on (dataset, file,
                    # tree) and would hand a later run the fileset metadata (norm_weight!) of an earlier one
                    metadata_cache={},
                )
                try:
                    out = runner(readable, processor_instance=proc, treename=treename)
                except ValueError as err:  # an executor of the caller's, every chunk skipped
                    if not (skip_bad_files and "No chunks returned results" in str(err)):
                        raise
                    out = {}
    out = dict(out or {})
    for ds, files in expected.items():
        res = out.setdefault(ds, interface.empty_output() | {"chunks": 0})
        processed = res.get("files", {})
        res["expected_events"] = dict(files)
        res["empty_files"] = sorted(f for f, n in files.items() if n == 0)
        res["skipped"] = {}
        for f, n in files.items():
            if n is None:
                res["skipped"][f] = "unreadable"
            elif processed.get(f, 0) < n:
                res["skipped"][f] = n - processed.get(f, 0)
        if norm is not None:
            res["normalisation"] = dict(norm[ds])
    return out
