"""The coffea executors of a run, and the only module of the project that touches coffea's internals.

* :func:`executor_session` — an executor for one or several runs: ``"iterative"`` (this
  process), ``"futures"`` (a loky pool of W worker processes kept across the session's runs;
  the chunks in flight when a worker process died — killed, segfault, out of memory — are
  resubmitted to a fresh pool; one in flight at more than ``worker_retries`` deaths runs alone
  in a fresh process, and if its worker dies again the run stops with a UserError naming the
  chunk), ``"dask"`` (a ``LocalCluster`` of W single-threaded worker processes, or the
  scheduler at ``scheduler``), a dask ``Client`` or cluster object (``LocalCluster``,
  dask-jobqueue's ``SLURMCluster``/``HTCondorCluster``/``LocalCluster``, coffea-casa's
  ``CoffeaCasaCluster``), or an executor made by :func:`executor_session`. A chunk that raises
  is not retried (for local files the error is deterministic). Every chunk runs inside a
  :class:`~flashsim_coffea.runner.errors.ChunkGuard`.
* :func:`default_threads` — FlashSim sampling threads for an executor; :func:`local_cluster` — a
  dask ``LocalCluster`` whose workers run as fast as the iterative executor (no glibc trim
  threshold from dask's nanny).
* :func:`coffea_executors` — the executor classes and coffea's ``Runner``;
  :func:`reserved_metadata_names` — the fileset metadata names coffea keeps for itself.

coffea internals used here (and nowhere else; check them when coffea is upgraded):

* ``coffea.processor.executor._PROTECTED_NAMES`` — metadata names coffea sets itself;
* ``coffea.processor.executor.ExecutorBase`` (the executors' base dataclass: fields ``status``,
  ``desc``, ``unit``, ``function_name`` — ``"get_metadata"`` for the preprocessing pass — and
  the ``__call__(items, function, accumulator)`` protocol returning ``(result, 0)``) and
  ``coffea.processor.executor.rich_bar`` (its progress bar);
* subclassing ``coffea.processor.IterativeExecutor`` and ``DaskExecutor`` to wrap the function
  their ``__call__`` applies to each item;
* ``coffea.processor.executor._hash`` (the hash of a ``FileMeta``: MD5 of its dataset, file and
  tree names encoded as ASCII, a UnicodeEncodeError for ``Zμμ`` or ``dÿ.root``), replaced by
  :func:`adjust_coffea` with the MD5 of their UTF-8 bytes — the same value for ASCII names — in
  this process and in every worker process (:class:`~flashsim_coffea.runner.errors.ChunkGuard`).

Worker processes are never left behind: the futures pool and a dask ``LocalCluster`` are shut
down when the session ends, also on SIGTERM (raised as
:class:`~flashsim_coffea.runner.errors.Terminated` meanwhile:
:func:`~flashsim_coffea.runner.errors.terminate_on_signal`) and SIGINT.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from ..errors import UserError
from .errors import ChunkGuard, describe_item, terminate_on_signal

__all__ = ["EXECUTORS", "adjust_coffea", "coffea_executors", "default_threads", "executor_session",
           "reserved_metadata_names"]

#: executor names understood by :func:`executor_session` / :func:`~flashsim_coffea.runner.run_processor`
EXECUTORS = ("iterative", "futures", "dask")

#: memory growth (bytes) after which loky restarts a worker (its default, 300 MB, is less than the models)
_WORKER_MEMORY_GROWTH = 2_000_000_000


def reserved_metadata_names() -> frozenset[str]:
    """Fileset metadata names that coffea sets itself (a dataset's metadata may not use them)."""
    from coffea.processor.executor import _PROTECTED_NAMES

    return frozenset(_PROTECTED_NAMES)


def _utf8_hash(items) -> int:
    """coffea's ``_hash`` of a FileMeta (the first 64 bits of an MD5 of ``;``-joined items) over
    the UTF-8 bytes of the items: the same value as coffea's for ASCII names, defined for others."""
    import hashlib

    digest = hashlib.md5(";".join(str(x) for x in items).encode("utf-8"))
    return int(digest.hexdigest()[:16], base=16)


def adjust_coffea() -> None:
    """Let coffea hash non-ASCII dataset, file and tree names (module docstring); idempotent,
    called in the driver and once in every worker process."""
    import coffea.processor.executor as executor

    executor._hash = _utf8_hash


def _processing(executor) -> bool:
    """Whether the executor runs processing chunks (not coffea's metadata preprocessing)."""
    return getattr(executor, "function_name", None) != "get_metadata"


class _Pool:
    """A process pool that can be replaced when a worker process dies (shared by the runs of a session)."""

    def __init__(self, workers: int):
        self.workers, self._pool = workers, None

    def get(self):
        """The live pool (started on first use)."""
        if self._pool is None:
            from loky import ProcessPoolExecutor

            # loky restarts a worker (with a warning) whose memory grew by > 300 MB since its first
            # task; loading torch and the flows is ~0.5 GB that stays, so every worker restarted once
            # and loaded the models again. Its workers read this limit from the environment.
            os.environ.setdefault("LOKY_MAX_MEMORY_LEAK_SIZE", str(_WORKER_MEMORY_GROWTH))
            self._pool = ProcessPoolExecutor(max_workers=self.workers)
        return self._pool

    def replace(self) -> None:
        """Drop a broken pool; the next :meth:`get` starts a fresh one."""
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the pool and its worker processes."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                pool.shutdown(wait=True, kill_workers=True)
            except TypeError:  # a pool without kill_workers
                pool.shutdown(wait=True, cancel_futures=True)
            except Exception:  # noqa: BLE001 - a broken pool may fail to shut down cleanly
                pass


class _NoProgress:
    """Stands in for coffea's rich progress bar when ``status`` is off (prints nothing)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kw):
        return 0

    def update(self, *args, **kw):
        pass


def _futures_call(self, items, function, accumulator):
    """``__call__`` of the futures executor (:func:`coffea_executors`)."""
    from coffea.processor.accumulator import accumulate
    from coffea.processor.executor import rich_bar

    items = list(items)
    if len(items) == 0:
        return accumulator
    guard = ChunkGuard(function, _processing(self), setup=adjust_coffea)
    holder = self.pool if self.pool is not None else _Pool(self.workers)
    attempts = [0] * len(items)
    todo = set(range(len(items)))
    done: dict[int, Any] = {}
    next_index = 0
    result = accumulator
    try:
        with rich_bar() if self.status else _NoProgress() as progress:
            task = progress.add_task(self.desc, total=len(items), unit=self.unit)
            while todo:
                pool = holder.get()
                futures = {pool.submit(guard, items[i]): i for i in sorted(todo)}
                died: list[int] = []
                try:
                    for fut in concurrent.futures.as_completed(futures):
                        i = futures[fut]
                        try:
                            value = fut.result()
                        except concurrent.futures.process.BrokenProcessPool:
                            died.append(i)
                            continue
                        todo.discard(i)
                        done[i] = value
                        progress.update(task, advance=1)
                        while next_index in done:  # merge in item order: same sums as iterative
                            result = accumulate([done.pop(next_index)], result)
                            next_index += 1
                except BaseException:
                    # stop the chunks in flight and the worker processes (the next get() starts a fresh
                    # pool); not Future.cancel(): loky's shutdown then fails on the cancelled futures
                    # and leaves its workers running
                    holder.shutdown()
                    raise
                if not died:
                    continue
                holder.replace()
                warnings.warn(f"a worker process died while {len(died)} chunk(s) were in flight; "
                              "resubmitting them to a fresh pool", RuntimeWarning, stacklevel=2)
                for i in died:
                    attempts[i] += 1
                # chunks in flight at too many deaths: each alone in a fresh process, to find the one
                # that kills its worker (named in the error) and finish the others
                for i in sorted(i for i in died if attempts[i] > self.worker_retries):
                    solo = _Pool(1)
                    try:
                        value = solo.get().submit(guard, items[i]).result()
                    except concurrent.futures.process.BrokenProcessPool:
                        raise UserError(
                            f"a worker process died while processing {describe_item(items[i])}, also when it ran "
                            f"alone ({attempts[i] + 1} attempts; killed, crashed or out of memory); "
                            "try a smaller --chunksize or fewer --workers") from None
                    finally:
                        solo.shutdown()
                    todo.discard(i)
                    done[i] = value
                    progress.update(task, advance=1)
                while next_index in done:
                    result = accumulate([done.pop(next_index)], result)
                    next_index += 1
    finally:
        if self.pool is None:
            holder.shutdown()
    return result, 0


@lru_cache(maxsize=None)
def coffea_executors() -> SimpleNamespace:
    """coffea executors with :class:`~flashsim_coffea.runner.errors.ChunkGuard` around each chunk
    (built on first use, so that importing this module does not import coffea): ``iterative``,
    ``dask`` (coffea's own, guarded) and ``futures`` (a loky pool, results merged in item order;
    when a worker process dies the chunks in flight are resubmitted to a fresh pool, and a chunk
    in flight at more than ``worker_retries`` deaths then runs alone in a fresh process: if its
    worker dies again, the run stops with a UserError naming it; ``pool``: a :class:`_Pool`
    shared by several runs, else one per call); ``base``: coffea's ExecutorBase; ``runner``:
    coffea's ``Runner``."""
    from coffea import processor
    from coffea.processor.accumulator import accumulate
    from coffea.processor.executor import ExecutorBase

    adjust_coffea()

    @dataclass
    class IterativeExecutor(processor.IterativeExecutor):
        def __call__(self, items, function, accumulator):
            guard = ChunkGuard(function, _processing(self), setup=adjust_coffea)
            if self.status or len(items) == 0:
                return super().__call__(items, guard, accumulator)
            # coffea draws its progress bar even with status=False: the same loop, without it
            return accumulate(map(guard, items), accumulator), 0

    @dataclass
    class DaskExecutor(processor.DaskExecutor):
        def __call__(self, items, function, accumulator):
            return super().__call__(items, ChunkGuard(function, _processing(self), setup=adjust_coffea), accumulator)

    @dataclass
    class FuturesExecutor(ExecutorBase):
        workers: int = 1
        retries: int = 0  # coffea's in-process retries of a raising chunk (deterministic errors: none)
        worker_retries: int = 3
        pool: Any = None
        __call__ = _futures_call

    return SimpleNamespace(iterative=IterativeExecutor, dask=DaskExecutor, futures=FuturesExecutor, base=ExecutorBase,
                           runner=processor.Runner)


def _is_dask_target(obj: Any) -> bool:
    """A dask ``Client`` or a cluster object (anything with a ``scheduler_address``)."""
    if isinstance(obj, str) or obj is None:
        return False
    if hasattr(obj, "scheduler_address"):
        return True
    from dask.distributed import Client

    return isinstance(obj, Client)


def _dask_client(target) -> tuple[Any, bool]:
    """(Client, whether we own it) for a Client, a cluster object or a scheduler address."""
    from dask.distributed import Client

    if isinstance(target, Client):
        return target, False
    try:
        return Client(target, timeout="30s"), True
    except OSError as err:
        raise UserError(f"cannot reach the dask scheduler at {target}: {err}") from err


@contextmanager
def executor_session(executor: Any = "iterative", workers: int = 2, scheduler: str | None = None,
                     status: bool = False, worker_retries: int = 3) -> Iterator[Any]:
    """A coffea executor for one or several ``Runner`` calls; its workers/clients are closed on exit.

    ``executor``: ``"iterative"``; ``"futures"`` (one pool of ``workers`` processes kept across
    the runs of the session, so workers keep their loaded models; replaced when a worker dies);
    ``"dask"`` (the scheduler at ``scheduler``, else a ``LocalCluster`` of ``workers``
    single-threaded processes); a dask ``Client`` (used as is, not closed) or a cluster object
    with a ``scheduler_address`` (dask ``LocalCluster``, dask-jobqueue clusters, coffea-casa; a
    client is opened on it, the cluster is left to its owner); or a coffea executor (used as is).
    The worker processes it starts (futures, a dask ``LocalCluster``) are shut down on exit, also
    when the process gets SIGTERM meanwhile (:class:`~flashsim_coffea.runner.errors.Terminated`
    then propagates).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"--workers must be an integer ≥ 1, got {workers!r}")
    ex = coffea_executors()
    if isinstance(executor, ex.base):
        yield executor
        return
    if scheduler and executor != "dask":
        raise UserError("--scheduler needs --executor dask")
    if executor == "iterative":
        yield ex.iterative(status=status, retries=0)
        return
    if executor == "futures":
        pool = _Pool(workers)
        try:
            with terminate_on_signal():
                yield ex.futures(status=status, workers=workers, worker_retries=worker_retries, pool=pool)
        finally:
            pool.shutdown()
        return
    if executor == "dask" or _is_dask_target(executor):
        closers = []
        signals = terminate_on_signal() if executor == "dask" and not scheduler else contextlib.nullcontext()
        if executor == "dask" and not scheduler:
            cluster = local_cluster(workers)
            closers.append(cluster.close)
            client, _ = _dask_client(cluster)
            closers.insert(0, client.close)
        else:
            client, owned = _dask_client(scheduler if executor == "dask" else executor)
            if owned:
                closers.append(client.close)
        try:
            with signals:
                yield ex.dask(client=client, status=status, retries=0)
        finally:
            for close in closers:
                close()
        return
    raise UserError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}, "
                    "or pass a dask Client or cluster object")


#: the worker environment dask's nanny sets that FlashSim's workers must not get (dask config
#: ``distributed.nanny.pre-spawn-environ``): ``MALLOC_TRIM_THRESHOLD_=65536`` fixes glibc's
#: trim threshold, which also turns off its adaptive mmap threshold, so every large numpy
#: temporary is mmap-ed and unmapped again: the VBF H→μμ flashsim processor ran 2.1x slower per
#: event in a dask worker than in the iterative executor (benchmarks/bench_dask.py)
DASK_WORKER_ENVIRON_UNSET = ("MALLOC_TRIM_THRESHOLD_",)


def local_cluster(workers: int, **kwargs: Any):
    """A dask ``LocalCluster`` of ``workers`` single-threaded worker processes without the nanny
    environment of :data:`DASK_WORKER_ENVIRON_UNSET` (for a cluster started elsewhere —
    dask-jobqueue, coffea-casa — set ``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_:
    null`` in its dask configuration, see README)."""
    import dask
    from dask.distributed import LocalCluster

    options = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None, **kwargs}
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": None for k in DASK_WORKER_ENVIRON_UNSET}):
        return LocalCluster(**options)


def default_threads(executor: str) -> int:
    """FlashSim sampling threads for an executor (``flashsim run``/``closure`` without ``--threads``):
    the cores this process may use with the iterative executor (one process does everything),
    1 per worker process otherwise."""
    if executor != "iterative":
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
