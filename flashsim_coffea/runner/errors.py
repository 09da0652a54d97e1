"""Errors of a run as one clear line, the bad-file policy, and the cross-reference warning filter.

* :func:`bad_file_errors` — the exception types that mean "this file's data cannot be read"
  (truncated file, corrupt basket): skipped and reported with ``skip_bad_files``.
* :func:`as_user_error` / :func:`user_errors` — the one-line
  :class:`~flashsim_coffea.errors.UserError` an error of a run stands for: a UserError
  raised on a worker (not coffea's wrapping of it), an unreadable chunk named by file and
  entries with the ``--skip-bad-files`` hint (:data:`SKIP_HINT`), a dask ``KilledWorker``.
* :class:`ChunkGuard` — wraps the function an executor applies to each work item: the same
  translation where the chunk runs (it crosses process boundaries as a picklable UserError),
  the cross-reference filter in each worker process, and a skipped chunk as an empty result.
* :class:`RunNotice` — a one-line note to the user (a warning category the command line prints
  as one line); :class:`Terminated` / :func:`terminate_on_signal` — SIGTERM as an exception
  while a run owns worker processes, so that they are shut down.
* :func:`ignore_crossref_warnings` / :func:`quiet_crossrefs` — coffea's "Missing
  cross-reference index/target" RuntimeWarnings (NanoAOD files without the collections an
  index points to) filtered, exactly that warning, so FlashSim's own warnings stay visible.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import UserError

__all__ = ["CROSSREF_WARNING", "SKIP_HINT", "ChunkGuard", "RunNotice", "Terminated", "as_user_error", "bad_file_errors",
           "describe_item", "ignore_crossref_warnings", "one_line", "quiet_crossrefs", "terminate_on_signal", "user_errors"]

#: the coffea NanoAOD warnings filtered during runs (exactly these: a collection referenced by an
#: index branch is not stored, or the index branch is absent — real files reference SubJet, FsrPhoton, …)
CROSSREF_WARNING = r"Missing cross-reference (index|target)"

SKIP_HINT = "use --skip-bad-files to skip and report them"


# =========================================================================== warnings
def ignore_crossref_warnings() -> None:
    """Install a filter for coffea's "Missing cross-reference index/target" RuntimeWarnings (only those)."""
    warnings.filterwarnings("ignore", message=CROSSREF_WARNING, category=RuntimeWarning)


@contextmanager
def quiet_crossrefs() -> Iterator[None]:
    """The cross-reference warning filter for the duration of the block (this process)."""
    with warnings.catch_warnings():
        ignore_crossref_warnings()
        yield


# =========================================================================== errors
def bad_file_errors() -> tuple[type[BaseException], ...]:
    """Exception types treated as a bad file by ``--skip-bad-files``: OSError (unreadable or
    truncated), zlib.error and cramjam's DecompressionError (corrupt ZLIB/ZSTD/LZ4 baskets, as
    uproot decompresses them), uproot's DeserializationError
    (:func:`flashsim_coffea.nanoaod.io.read_errors`)."""
    from ..nanoaod.io import read_errors

    return read_errors()


class RunNotice(UserWarning):
    """A one-line note for the user about how a run is done (e.g. fewer worker processes than
    asked); the command line prints it as ``flashsim COMMAND: MESSAGE``."""


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM while a run owns worker processes, so that they are
    shut down on the way out (:func:`terminate_on_signal`); ``signum``: the signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    def __str__(self) -> str:
        import signal

        return f"terminated by {signal.Signals(self.signum).name}"


@contextmanager
def terminate_on_signal() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (SIGINT raises
    KeyboardInterrupt already), so that ``finally`` clauses — shutting down worker processes — run
    instead of the process dying at once and leaving them behind (temporary files and output locks
    of :mod:`flashsim_coffea.safe_write` are removed on the way out too). Only in the main thread,
    and only where SIGTERM would kill the process: its default disposition, or safe_write's
    handler (which removes those files, then dies of the signal); a program's own handler or
    SIG_IGN is left alone. The previous handler is restored on exit."""
    import signal
    import threading

    from .. import safe_write

    def raise_terminated(signum, frame):
        raise Terminated(signum)

    previous = None
    if threading.current_thread() is threading.main_thread():
        try:
            current = signal.getsignal(signal.SIGTERM)
            if current == signal.SIG_DFL or current is safe_write._on_signal:
                signal.signal(signal.SIGTERM, raise_terminated)
                previous = current
        except (ValueError, OSError):  # not the main interpreter
            pass
    try:
        yield
    finally:
        if previous is not None and signal.getsignal(signal.SIGTERM) is raise_terminated:
            signal.signal(signal.SIGTERM, previous)


def _chain(err: BaseException | None) -> list[BaseException]:
    """``err`` and its causes/contexts, outermost first (each once)."""
    out, seen = [], set()
    while err is not None and id(err) not in seen:
        out.append(err)
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return out


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line."""
    return re.sub(r"\s+", " ", str(err)).strip()


def describe_item(item: Any) -> str:
    """``FILE (entries a-b of TREE)`` for a coffea WorkItem/FileMeta, else its repr."""
    filename = getattr(item, "filename", None)
    if filename is None:
        return repr(item)
    start, stop = getattr(item, "entrystart", None), getattr(item, "entrystop", None)
    tree = getattr(item, "treename", "Events")
    return f"{filename} (entries {start}-{stop} of {tree})" if start is not None else f"{filename} ({tree})"


def as_user_error(err: BaseException, item: Any = None) -> UserError | None:
    """The one-line :class:`UserError` that ``err`` (raised by a run, possibly on a worker and
    wrapped by coffea) stands for, or None for an unexpected error (to be raised as is):

    * a UserError anywhere in the chain → its message;
    * an unreadable/corrupt-data error (:func:`bad_file_errors`) → ``FILE (entries a-b): cannot
      read its data (...); use --skip-bad-files ...`` (``item``: the chunk, when known);
    * dask's ``KilledWorker`` → the chunk coffea names, with what to try.
    """
    chain = _chain(err)
    for e in chain:
        if isinstance(e, UserError):
            return e if e is err else UserError(str(e))
    bad = bad_file_errors()
    for e in chain:
        if isinstance(e, bad):
            where = describe_item(item) if item is not None else _item_from_message(chain)
            return UserError(f"{where}: cannot read its data, the file is truncated or corrupt "
                             f"({type(e).__name__}: {one_line(e)[:300]}); {SKIP_HINT}")
    for e in chain:
        if type(e).__name__ == "KilledWorker" or "KilledWorker exception" in str(e):
            return UserError(f"{one_line(err)}; a dask worker died several times on it: try a smaller --chunksize "
                             "or workers with more memory")
    return None


def _item_from_message(chain: list[BaseException]) -> str:
    """The file coffea names in its wrapping message ("Failed processing file: WorkItem(...)")."""
    for e in chain:
        m = re.search(r"filename='([^']*)'.*?entrystart=(\d+), entrystop=(\d+)", str(e))
        if m:
            return f"{m.group(1)} (entries {m.group(2)}-{m.group(3)})"
    return "an input file"


@contextmanager
def user_errors() -> Iterator[None]:
    """Re-raise errors of a run as their one-line UserError (:func:`as_user_error`) when they have one."""
    try:
        yield
    except UserError:
        raise
    except Exception as err:
        user = as_user_error(err)
        if user is None:
            raise
        raise user from err


# =========================================================================== per chunk
_FILTERED_PID: int | None = None  # the worker process in which the cross-reference filter is installed


class ChunkGuard:
    """Wraps the function an executor applies to each work item; runs where the item runs.

    In a worker process it installs the cross-reference warning filter; it turns an error into
    its one-line UserError naming the chunk (:func:`as_user_error`, picklable: it crosses
    process boundaries without its chain); and with ``--skip-bad-files`` a skipped processing
    chunk (coffea returns None) becomes an empty result, so that a run whose chunks are all
    skipped still returns (and reports) instead of coffea's "No chunks returned results".
    ``processing``: whether the wrapped function processes chunks (not coffea's metadata
    preprocessing); ``setup``: a picklable function called once in each worker process, before
    its first item (the executors' adjustments of coffea, :mod:`flashsim_coffea.runner.executors`).
    """

    def __init__(self, function, processing: bool, setup=None):
        self.function, self.processing, self.driver_pid = function, processing, os.getpid()
        self.setup = setup

    def __call__(self, *args):
        item = args[0]
        if isinstance(item, tuple):  # dask with heavy_input: (item, processor)
            item = item[0]
        global _FILTERED_PID
        if os.getpid() not in (self.driver_pid, _FILTERED_PID):
            ignore_crossref_warnings()  # once per worker process (ours or a dask cluster's): only this warning
            if self.setup is not None:
                self.setup()
            _FILTERED_PID = os.getpid()
        try:
            out = self.function(*args)
        except UserError:
            raise
        except Exception as err:
            user = as_user_error(err, item)
            if user is None:
                raise
            raise user from err
        if out is None and self.processing:
            return {"out": {}}
        return out
