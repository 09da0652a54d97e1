"""Running a processor over a fileset with the coffea ``Runner``: the library behind ``flashsim run``,
``flashsim demo``, the benchmarks and the notebooks.

What this module does, in the order :func:`run_processor` does it:

1. **Fileset** (:func:`load_fileset`, :func:`canonical_fileset`): coffea's JSON (``{dataset:
   [files]}`` or ``{dataset: {"files": [...] | {file: tree}, "treename": ..., "metadata":
   {...}}}``, relative paths relative to the JSON file) or plain ROOT files (dataset = file
   stem). Local paths are made absolute (``in/a.root`` and ``./in/a.root`` are one file); a file
   given twice (also through a symbolic link, or in two datasets) is refused with a
   :class:`~flashsim_coffea.errors.UserError`: its events would be counted twice. A dataset's
   ``metadata`` is kept and handed to coffea, so it reaches ``events.metadata``.
2. **Checks before any work**: ``proc.check()`` (driver-side model checks: DNN card, weights,
   flows), every file opened once (entries per file; branches the mode needs, named up front
   by ``proc.missing_branches``), unopenable files refused unless ``skip_bad_files``.
3. **Normalisation** (``lumi`` in fb⁻¹, :func:`normalisation`): per dataset Σ ``genEventSumw``
   of the ``Runs`` trees of all its (readable) files, read once, and the cross section σ in pb
   from the fileset metadata ``xsec`` or else the files' ``Runs/XSecPb`` (what ``flashsim
   generate`` writes: σ × filter efficiency); ``norm_weight = σ · L · 1000 / Σw`` (pb · fb⁻¹ =
   1000) goes into the dataset's fileset metadata, where the processor multiplies ``genWeight``
   by it, and ``{"xsec_pb", "lumi_fb", "sumw_runs", "norm_weight"}`` into the dataset's output
   under ``"normalisation"``.
4. **Executors** (:func:`executor_session`): ``"iterative"`` (this process), ``"futures"`` (a
   pool of W worker processes; the chunks in flight when a worker process died — killed,
   segfault, out of memory — are resubmitted to a fresh pool; one in flight at more than
   ``worker_retries`` deaths runs alone in a fresh process, and if its worker dies again the
   run stops with a UserError naming the chunk), ``"dask"`` (a ``LocalCluster`` of W single-threaded
   worker processes, or the scheduler at ``scheduler``), or a dask ``Client`` or cluster object
   (``dask.distributed.LocalCluster``, a dask-jobqueue ``SLURMCluster``/``HTCondorCluster``/
   ``LocalCluster``, coffea-casa's ``CoffeaCasaCluster``), or an executor made by
   :func:`executor_session` and shared by several runs. A chunk that raises is not retried (for
   local files the error is deterministic).
5. **Errors** (:func:`as_user_error`): a UserError raised on a worker reaches the caller as
   one clear UserError, not coffea's wrapping; a chunk whose baskets cannot be read (truncated
   file, corrupt basket: :func:`bad_file_errors`) gives the same one-line message as an
   unopenable file, naming the file and entries and ``--skip-bad-files``. With
   ``skip_bad_files`` such files and chunks are skipped and reported, also when no chunk is left.
6. **Bad-input report** per dataset: ``expected_events`` (entries per file, None when
   unopenable), ``skipped`` (file → events not processed, or ``"unreadable"``) and
   ``empty_files``.
7. **Outputs** (:func:`check_outputs` before the run, :func:`save_outputs` after it): the
   ``coffea.util.save`` file (FoldHists saved as plain ``hist.Hist``, readable without
   flashsim_coffea) and the ROOT file of histograms (:func:`write_root`); an output
   never overwrites an input or the other output, an existing one needs ``force``, and the
   folder must exist and be writable. Files are written to a temporary name and renamed, so an
   interrupted write leaves no truncated output.

coffea's "Missing cross-reference index" RuntimeWarnings (NanoAOD files without the
collections a cross-reference points to) are filtered, exactly that warning, in this process
during the run and inside the worker processes, so FlashSim's own warnings stay visible.

>>> from flashsim_coffea.runner import load_fileset, run_processor
>>> from flashsim_coffea.processors import VBFHmmProcessor
>>> out = run_processor(load_fileset(["vbf.root"]), VBFHmmProcessor(mode="fullsim"), "futures", lumi=300)
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import re
import tempfile
import warnings
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .errors import UserError

__all__ = [
    "EXECUTORS",
    "PB_TIMES_FB_INV",
    "as_user_error",
    "bad_file_errors",
    "canonical_fileset",
    "check_outputs",
    "default_threads",
    "executor_session",
    "expected_events",
    "format_summary",
    "ignore_crossref_warnings",
    "load_fileset",
    "normalisation",
    "region_yields",
    "run_processor",
    "save_outputs",
    "user_errors",
    "write_root",
]

#: executor names understood by :func:`executor_session` / :func:`run_processor`
EXECUTORS = ("iterative", "futures", "dask")
#: σ [pb] · L [fb⁻¹] = 1000 events
PB_TIMES_FB_INV = 1000.0
#: the coffea NanoAOD warnings filtered during runs (exactly these: a collection referenced by an
#: index branch is not stored, or the index branch is absent — real files reference SubJet, FsrPhoton, …)
CROSSREF_WARNING = r"Missing cross-reference (index|target)"

_SKIP_HINT = "use --skip-bad-files to skip and report them"


# =========================================================================== warnings
def ignore_crossref_warnings() -> None:
    """Install a filter for coffea's "Missing cross-reference index/target" RuntimeWarnings (only those)."""
    warnings.filterwarnings("ignore", message=CROSSREF_WARNING, category=RuntimeWarning)


@contextmanager
def _quiet_crossrefs() -> Iterator[None]:
    """The cross-reference warning filter for the duration of the block (this process)."""
    with warnings.catch_warnings():
        ignore_crossref_warnings()
        yield


# =========================================================================== fileset
def _is_remote(f: str) -> bool:
    """Whether ``f`` is a URL (root://, https://, ...) rather than a local path."""
    return "://" in str(f)


def _abs(f: str, base: Path | None) -> str:
    """Absolute, normalised local path (``base`` for relative ones; symbolic links kept)."""
    if _is_remote(f):
        return str(f)
    p = Path(os.path.expanduser(str(f)))
    if not p.is_absolute():
        p = (base if base is not None else Path.cwd()) / p
    return os.path.normpath(p)


def _identity(f: str) -> str:
    """What makes two paths the same file (symbolic links resolved)."""
    return str(f) if _is_remote(f) else os.path.realpath(f)


def canonical_fileset(fileset: Mapping, treename: str = "Events", base: str | Path | None = None,
                      source: str = "fileset") -> dict[str, dict[str, Any]]:
    """``{dataset: {"files": {abs_path: tree}[, "metadata": {...}]}}`` from any coffea fileset form.

    Accepted per dataset: a list of files, ``{file: tree}``, or ``{"files": list | {file: tree},
    "treename": tree, "metadata": {...}}``. Relative local paths are relative to ``base``
    (default: the working directory). A file given twice (within or across datasets, also
    through a symbolic link) is refused; so are metadata that are not a JSON object or that use
    a name coffea reserves. ``source`` names the fileset in the messages.
    """
    from coffea.processor.executor import _PROTECTED_NAMES

    if not isinstance(fileset, Mapping) or not fileset:
        raise UserError(f"{source}: a fileset is a non-empty mapping {{dataset: [files]}}")
    base = Path(base) if base is not None else None
    seen: dict[str, tuple[str, str, str]] = {}  # identity -> (dataset, as given, absolute path)
    out: dict[str, dict[str, Any]] = {}
    for ds, spec in fileset.items():
        ds = str(ds)
        meta = None
        tree = treename
        files: Any = spec
        if isinstance(spec, Mapping) and "files" in spec:
            files, tree, meta = spec["files"], spec.get("treename", treename), spec.get("metadata")
        elif isinstance(spec, Mapping) and {"metadata", "treename", "preload"} & set(spec):
            files = None  # a dataset spec without its "files"
        if isinstance(files, (str, Path)):
            files = [files]
        if isinstance(files, (list, tuple)):
            files = {f: tree for f in files}
        if not isinstance(files, Mapping) or not files:
            raise UserError(f"{source}: dataset {ds!r} has no files")
        entry: dict[str, Any] = {"files": {}}
        for f, t in files.items():
            path = _abs(str(f), base)
            ident = _identity(path)
            if ident in seen:
                first_ds, first, first_path = seen[ident]
                where = f"in dataset {ds!r}" if first_ds == ds else f"in datasets {first_ds!r} and {ds!r}"
                raise UserError(f"{source}: {first_path} is given twice {where} (as {first!r} and {str(f)!r}); "
                                "give each file once, or its events would be counted twice")
            seen[ident] = (ds, str(f), path)
            entry["files"][path] = str(t)
        if meta is not None:
            if not isinstance(meta, Mapping):
                raise UserError(f"{source}: the metadata of dataset {ds!r} must be a JSON object, got {meta!r}")
            reserved = sorted(set(meta) & set(_PROTECTED_NAMES))
            if reserved:
                raise UserError(f"{source}: dataset {ds!r} metadata uses the reserved name(s) {', '.join(reserved)}; "
                                "rename them")
            entry["metadata"] = dict(meta)
        out[ds] = entry
    return out


def load_fileset(inputs: Sequence[str | Path], treename: str = "Events") -> dict[str, dict[str, Any]]:
    """The canonical fileset (:func:`canonical_fileset`) of ``flashsim run``'s inputs: one coffea
    fileset JSON (relative paths relative to the JSON file, metadata kept) or ROOT files
    (dataset = file stem; files with the same stem form one dataset). A file given twice — also
    as ``in/a.root`` and ``./in/a.root`` — is refused."""
    inputs = [str(i) for i in inputs]
    if not inputs:
        raise UserError("no input: give a fileset JSON or ROOT files")
    if len(inputs) == 1 and inputs[0].endswith(".json"):
        path = Path(inputs[0])
        if not path.is_file():
            raise UserError(f"{path}: no such fileset file")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path}: not valid JSON ({err})") from err
        if not isinstance(raw, dict) or not raw:
            raise UserError(f"{path}: a fileset is a JSON object {{dataset: [files]}}")
        return canonical_fileset(raw, treename, base=path.resolve().parent, source=str(path))
    if any(i.endswith(".json") for i in inputs):
        raise UserError("give either one fileset JSON or ROOT files, not both")
    grouped: dict[str, list[str]] = {}
    for f in inputs:
        grouped.setdefault(Path(f).stem, []).append(f)
    return canonical_fileset(grouped, treename, source="command line")


def expected_events(fileset: Mapping, proc=None) -> dict[str, dict[str, int | None]]:
    """Entries per file per dataset of a canonical fileset (None when the file or its tree cannot
    be opened).

    With ``proc``, every readable non-empty file is also checked for the branches
    ``proc.missing_branches`` reports, so that a file unfit for the mode fails here with
    :class:`~flashsim_coffea.errors.MissingBranchesError` naming them, whatever the executor.
    """
    import uproot

    from .errors import MissingBranchesError

    out: dict[str, dict[str, int | None]] = {}
    for ds, spec in fileset.items():
        out[ds] = {}
        for f, tree in spec["files"].items():
            try:
                with uproot.open(f) as fh:
                    t = fh[tree]
                    out[ds][f] = int(t.num_entries)
                    available = set(t.keys())
            except Exception:  # noqa: BLE001 - reported as an unreadable file
                out[ds][f] = None
                continue
            if proc is not None and out[ds][f] > 0 and hasattr(proc, "missing_branches"):
                missing = proc.missing_branches(available)
                if missing:
                    raise MissingBranchesError(f, missing, f"run the processor in {getattr(proc, 'mode', '?')} mode")
    return out


# =========================================================================== normalisation
def _read_runs(path: str) -> tuple[float, list[float]]:
    """(Σ genEventSumw, [XSecPb of each Runs entry, NaN-free]) of one file; UserError if absent."""
    import numpy as np
    import uproot

    try:
        with uproot.open(path) as f:
            if "Runs" not in f:
                raise UserError(f"{path}: no 'Runs' tree, so no genEventSumw to normalise with; "
                                "run without --lumi (unnormalised) or use NanoAOD with its Runs tree")
            runs = f["Runs"]
            keys = set(runs.keys())
            name = next((n for n in ("genEventSumw", "genEventSumw_") if n in keys), None)
            if name is None:
                raise UserError(f"{path}: the Runs tree has no genEventSumw branch; run without --lumi")
            sumw = float(np.sum(runs[name].array(library="np"), dtype=np.float64))
            xs = runs["XSecPb"].array(library="np").astype(np.float64) if "XSecPb" in keys else np.zeros(0)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - corrupt Runs tree
        raise UserError(f"{path}: cannot read its Runs tree ({type(err).__name__}: {_one_line(err)}); "
                        "run without --lumi or fix the file") from err
    return sumw, [float(x) for x in xs if np.isfinite(x) and x > 0]


def _check_number(value: Any, what: str) -> float:
    """``value`` as a positive finite float, else a UserError naming ``what``."""
    if isinstance(value, bool):
        raise UserError(f"{what} must be a positive number, got {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{what} must be a positive number, got {value!r}") from None
    if not math.isfinite(x) or x <= 0:
        raise UserError(f"{what} must be a positive finite number, got {value!r}")
    return x


def normalisation(fileset: Mapping, lumi_fb: float, unreadable: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Per dataset ``{"xsec_pb", "lumi_fb", "sumw_runs", "norm_weight", "xsec_source",
    "files_without_runs"}`` for a canonical fileset and a luminosity in fb⁻¹.

    ``sumw_runs`` is Σ ``genEventSumw`` over the ``Runs`` trees of all the dataset's files
    except those in ``unreadable`` (files that cannot be opened, skipped with
    ``--skip-bad-files``: listed under ``files_without_runs``); σ is the metadata ``xsec`` [pb]
    or else the files' ``Runs/XSecPb`` (all files must agree); ``norm_weight = σ · L · 1000 /
    Σw``. A dataset without a cross section, without Runs or with Σw ≤ 0 is a UserError naming it.
    """
    lumi = _check_number(lumi_fb, "--lumi (integrated luminosity in fb^-1)")
    unreadable = set(unreadable)
    out: dict[str, dict[str, Any]] = {}
    for ds, spec in fileset.items():
        meta = spec.get("metadata") or {}
        sumw, file_xs, missing = 0.0, {}, []
        for f in spec["files"]:
            if f in unreadable:
                missing.append(f)
                continue
            s, xs = _read_runs(f)
            sumw += s
            if xs:
                file_xs[f] = xs
        if "xsec" in meta and meta["xsec"] is not None:
            xsec = _check_number(meta["xsec"], f"dataset {ds!r}: metadata xsec (cross section in pb)")
            source = "metadata"
        elif file_xs:
            values = sorted({v for xs in file_xs.values() for v in xs})
            if values[-1] - values[0] > 1e-6 * values[-1]:
                shown = ", ".join(f"{Path(f).name}: {xs[0]:.6g}" for f, xs in list(file_xs.items())[:4])
                raise UserError(f"dataset {ds!r}: its files give different cross sections Runs/XSecPb ({shown} pb); "
                                'set the dataset\'s cross section in the fileset JSON: "metadata": {"xsec": PB}')
            if len(file_xs) < len(spec["files"]) - len(missing):
                without = [f for f in spec["files"] if f not in file_xs and f not in unreadable]
                raise UserError(f"dataset {ds!r}: {without[0]} has no Runs/XSecPb while other files of the dataset do; "
                                'set the cross section in the fileset JSON: "metadata": {"xsec": PB}')
            xsec, source = values[0], "Runs/XSecPb"
        else:
            raise UserError(f"dataset {ds!r} has no cross section (no metadata xsec, no Runs/XSecPb in its files); "
                            'add "metadata": {"xsec": PB} to it in a fileset JSON, or run without --lumi')
        if not sumw > 0:
            raise UserError(f"dataset {ds!r}: Σ genEventSumw of its Runs trees is {sumw:g}; cannot normalise "
                            "(run without --lumi)")
        out[ds] = {"xsec_pb": xsec, "lumi_fb": lumi, "sumw_runs": sumw,
                   "norm_weight": xsec * lumi * PB_TIMES_FB_INV / sumw, "xsec_source": source,
                   "files_without_runs": missing}
    return out


# =========================================================================== errors
def bad_file_errors() -> tuple[type[BaseException], ...]:
    """Exception types treated as a bad file by ``--skip-bad-files``: OSError (unreadable or
    truncated), zlib.error and cramjam's DecompressionError (corrupt ZLIB/ZSTD/LZ4 baskets, as
    uproot decompresses them), uproot's DeserializationError."""
    import uproot

    errors: tuple[type[BaseException], ...] = (OSError, zlib.error, uproot.deserialization.DeserializationError)
    try:
        import cramjam

        errors += (cramjam.DecompressionError,)
    except (ImportError, AttributeError):
        pass
    return errors


def _chain(err: BaseException | None) -> list[BaseException]:
    """``err`` and its causes/contexts, outermost first (each once)."""
    out, seen = [], set()
    while err is not None and id(err) not in seen:
        out.append(err)
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return out


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line."""
    return re.sub(r"\s+", " ", str(err)).strip()


def _describe_item(item: Any) -> str:
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
            where = _describe_item(item) if item is not None else _item_from_message(chain)
            return UserError(f"{where}: cannot read its data, the file is truncated or corrupt "
                             f"({type(e).__name__}: {_one_line(e)[:300]}); {_SKIP_HINT}")
    for e in chain:
        if type(e).__name__ == "KilledWorker" or "KilledWorker exception" in str(e):
            return UserError(f"{_one_line(err)}; a dask worker died several times on it: try a smaller --chunksize "
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


# =========================================================================== executors
_FILTERED_PID: int | None = None  # the worker process in which the cross-reference filter is installed


class _ChunkGuard:
    """Wraps the function an executor applies to each work item; runs where the item runs.

    In a worker process it installs the cross-reference warning filter; it turns an error into
    its one-line UserError naming the chunk (:func:`as_user_error`, picklable: it crosses
    process boundaries without its chain); and with ``--skip-bad-files`` a skipped processing
    chunk (coffea returns None) becomes an empty result, so that a run whose chunks are all
    skipped still returns (and reports) instead of coffea's "No chunks returned results".
    """

    def __init__(self, function, processing: bool):
        self.function, self.processing, self.driver_pid = function, processing, os.getpid()

    def __call__(self, *args):
        item = args[0]
        if isinstance(item, tuple):  # dask with heavy_input: (item, processor)
            item = item[0]
        global _FILTERED_PID
        if os.getpid() not in (self.driver_pid, _FILTERED_PID):
            ignore_crossref_warnings()  # once per worker process (ours or a dask cluster's): only this warning
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


def _processing(executor) -> bool:
    """Whether the executor runs processing chunks (not coffea's metadata preprocessing)."""
    return getattr(executor, "function_name", None) != "get_metadata"


#: memory growth (bytes) after which loky restarts a worker (its default, 300 MB, is less than the models)
_WORKER_MEMORY_GROWTH = 2_000_000_000


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
    """``__call__`` of the futures executor (:func:`_executors`)."""
    from coffea.processor.accumulator import accumulate
    from coffea.processor.executor import rich_bar

    items = list(items)
    if len(items) == 0:
        return accumulator
    guard = _ChunkGuard(function, _processing(self))
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
                    for fut in futures:
                        fut.cancel()
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
                            f"a worker process died while processing {_describe_item(items[i])}, also when it ran "
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
def _executors() -> SimpleNamespace:
    """coffea executors with :class:`_ChunkGuard` around each chunk (built on first use, so that
    importing this module does not import coffea): ``iterative``, ``dask`` (coffea's own, guarded)
    and ``futures`` (a loky pool, results merged in item order; when a worker process dies the
    chunks in flight are resubmitted to a fresh pool, and a chunk in flight at more than
    ``worker_retries`` deaths then runs alone in a fresh process: if its worker dies again, the
    run stops with a UserError naming it; ``pool``: a :class:`_Pool` shared by several runs, else
    one per call); ``base``: coffea's ExecutorBase."""
    from coffea import processor
    from coffea.processor.accumulator import accumulate
    from coffea.processor.executor import ExecutorBase

    @dataclass
    class IterativeExecutor(processor.IterativeExecutor):
        def __call__(self, items, function, accumulator):
            guard = _ChunkGuard(function, _processing(self))
            if self.status or len(items) == 0:
                return super().__call__(items, guard, accumulator)
            # coffea draws its progress bar even with status=False: the same loop, without it
            return accumulate(map(guard, items), accumulator), 0

    @dataclass
    class DaskExecutor(processor.DaskExecutor):
        def __call__(self, items, function, accumulator):
            return super().__call__(items, _ChunkGuard(function, _processing(self)), accumulator)

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
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"--workers must be an integer ≥ 1, got {workers!r}")
    ex = _executors()
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
            yield ex.futures(status=status, workers=workers, worker_retries=worker_retries, pool=pool)
        finally:
            pool.shutdown()
        return
    if executor == "dask" or _is_dask_target(executor):
        closers = []
        if executor == "dask" and not scheduler:
            from dask.distributed import LocalCluster

            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
            closers.append(cluster.close)
            client, _ = _dask_client(cluster)
            closers.insert(0, client.close)
        else:
            client, owned = _dask_client(scheduler if executor == "dask" else executor)
            if owned:
                closers.append(client.close)
        try:
            yield ex.dask(client=client, status=status, retries=0)
        finally:
            for close in closers:
                close()
        return
    raise UserError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}, "
                    "or pass a dask Client or cluster object")


# =========================================================================== running
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
    """Run ``proc`` on ``fileset`` with the coffea Runner (module docstring, steps 1–6); returns
    the processor output with, per dataset, ``expected_events``, ``skipped``, ``empty_files``
    and, with ``lumi`` (fb⁻¹), ``normalisation``.

    ``fileset``: any coffea form (:func:`canonical_fileset`); ``executor``: a name of
    :data:`EXECUTORS`, a dask ``Client`` or cluster object, or an executor from
    :func:`executor_session`; ``skip_bad_files``: skip (and report) unopenable files and
    chunks with unreadable data instead of stopping with a UserError; ``worker_retries``: how
    often chunks in flight at a worker process' death are resubmitted before the run looks for
    the chunk that kills its worker (futures executor).
    """
    from coffea.nanoevents import NanoAODSchema

    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise UserError(f"--chunksize must be an integer ≥ 1, got {chunksize!r}")
    fileset = canonical_fileset(fileset, treename)
    if hasattr(proc, "check"):
        proc.check()  # driver-side model checks: one clear line, before any work
    with _quiet_crossrefs():
        expected = expected_events(fileset, proc)
        unreadable = [f for ds in expected.values() for f, n in ds.items() if n is None]
        if unreadable and not skip_bad_files:
            raise UserError(f"cannot open {', '.join(unreadable)} ({_SKIP_HINT})")
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
            with executor_session(executor, workers, scheduler, status=status, worker_retries=worker_retries) as ex, \
                    user_errors():
                runner = _executors().runner(
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
        res = out.setdefault(ds, proc.empty_output() | {"chunks": 0})
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


# =========================================================================== outputs
def _input_paths(inputs: Iterable[Any]) -> list[str]:
    """Local paths of ``inputs`` (paths and/or filesets)."""
    paths: list[str] = []
    for i in inputs:
        if isinstance(i, Mapping):  # a fileset
            for spec in canonical_fileset(i).values():
                paths.extend(f for f in spec["files"] if not _is_remote(f))
        elif not _is_remote(str(i)):
            paths.append(str(i))
    return paths


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file (symbolic links and hard links too)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(output: str | Path | None, root: str | Path | None = None, inputs: Iterable[Any] = (),
                  force: bool = False) -> None:
    """Refuse, before any work and with one clear line, output paths that would lose something:
    an output that is an input (``inputs``: paths and/or filesets), ``-o`` equal to ``--root``,
    an existing output without ``force``, a folder, a path under a file or a missing folder, a
    folder that cannot be written (tried with a temporary file)."""
    outs = [(flag, str(p)) for flag, p in (("-o", output), ("--root", root)) if p is not None]
    if len(outs) == 2 and _same_file(outs[0][1], outs[1][1]):
        raise UserError(f"-o and --root are the same file {outs[0][1]}; give two different files "
                        "(one would overwrite the other)")
    ins = _input_paths(inputs)
    for flag, p in outs:
        for i in ins:
            if _same_file(p, i):
                raise UserError(f"{flag} {p} is an input file; refusing to overwrite it, choose another output")
        path = Path(p)
        if path.is_dir():
            raise UserError(f"{flag} {p} is a folder; give a file name (e.g. {Path(p) / 'out.coffea'})")
        if path.exists() and not force:
            raise UserError(f"{flag} {p} already exists; use --force to overwrite it")
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            blocker = next((a for a in [folder, *folder.parents] if a.exists()), None)
            if blocker is not None and not blocker.is_dir():
                raise UserError(f"cannot write {flag} {p}: {blocker} is a file, not a folder")
            raise UserError(f"cannot write {flag} {p}: folder {folder} does not exist")
        try:
            fd, probe = tempfile.mkstemp(prefix=".flashsim-write-test-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise UserError(f"cannot write {flag} {p}: folder {folder} is not writable ({err.strerror or err})") from None


def _umask() -> int:
    """The process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _atomic(path: str | Path) -> Iterator[str]:
    """A temporary name beside ``path``, renamed to it when the block succeeds (removed otherwise)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())  # not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_root(output: Mapping, path: str | Path) -> int:
    """Write every histogram of a run's output as a TH1 ``DATASET/REGION/VARIABLE`` with uproot
    (FoldHists as their fold-weighted histogram; :func:`flashsim_coffea.outputs.write_root`);
    returns how many."""
    from .outputs import by_variable
    from .outputs import write_root as write_layout

    return write_layout(by_variable(output), path)


def save_outputs(out: Mapping, output: str | Path | None, root: str | Path | None = None) -> int | None:
    """Write ``out`` with ``coffea.util.save`` to ``output`` and its histograms to the ROOT file
    ``root`` (:func:`write_root`), each through a temporary file renamed at the end; returns the
    number of histograms written to ``root`` (None without it). Check the paths first with
    :func:`check_outputs`. The ``.coffea`` file holds every FoldHist as a plain ``hist.Hist``
    (fold-weighted values and variances, ``folds`` as its attribute;
    :func:`flashsim_coffea.outputs.portable`), so it opens with coffea and hist alone."""
    from coffea.util import save

    from .outputs import portable

    if output is not None:
        with _atomic(output) as tmp:
            save(portable(dict(out)), tmp)
    if root is None:
        return None
    with _atomic(root) as tmp:
        return write_root(out, tmp)


# =========================================================================== summary
def region_yields(res: Mapping) -> dict[str, float]:
    """Σ weights per region (content of its ``mass`` histogram, flow bins included; fold-weighted
    for FoldHists): expected events when the run was normalised."""
    out = {}
    for region, hists in res.get("hists", {}).items():
        h = hists["mass"] if "mass" in hists else next(iter(hists.values()), None)
        if h is not None:
            out[region] = float(h.values(flow=True).sum())
    return out


def format_summary(out: Mapping) -> list[str]:
    """The lines ``flashsim run`` prints per dataset: events, Σ weights, SR, cutflow, FlashSim's
    counts, skipped and empty files, and with a normalisation the expected events per region."""
    lines = []
    for ds, res in out.items():
        cf = res.get("cutflow", {})
        yields = region_yields(res)
        lines.append(f"{ds}: {res.get('nevents', 0)} events, sumw {res.get('sumw', 0.0):.6g}, "
                     f"SR {yields.get('SR', 0.0):.4g} (weighted); cutflow "
                     + " → ".join(f"{k} {v:g}" for k, v in cf.items()))
        norm = res.get("normalisation")
        if norm:
            regions = ", ".join(f"{r} {y:.4g}" for r, y in yields.items())
            lines.append(f"  expected events for L = {norm['lumi_fb']:g} fb^-1 (xsec {norm['xsec_pb']:.6g} pb, "
                         f"sum genEventSumw {norm['sumw_runs']:.6g}, norm_weight {norm['norm_weight']:.6g}): {regions}")
            for f in norm.get("files_without_runs", []):
                lines.append(f"  not in the normalisation (unreadable): {f}")
        if res.get("flashsim"):  # FlashSim's counts summed over the run (never warned per chunk)
            from .inject import describe_counts

            lines += [f"  FlashSim {line}" for line in describe_counts(res["flashsim"])]
        for f, n in res.get("skipped", {}).items():
            lines.append(f"  skipped {f}: {n}" + (" events not processed" if isinstance(n, int) else ""))
        for f in res.get("empty_files", []):
            lines.append(f"  empty file {f}")
    return lines
