"""``flashsim run FILESET.json|FILES... --mode fullsim|flashsim|gen --folds N
--executor iterative|futures|dask [--workers W] [--scheduler ADDRESS] [--chunksize C]
-o OUT.coffea [--root HISTS.root] [--skip-bad-files]``

Runs :class:`processors.VBFHmmProcessor` with the coffea ``Runner``:

* ``iterative`` — in this process; ``futures`` — ``FuturesExecutor(workers=W)``;
* ``dask`` — a ``dask.distributed`` ``LocalCluster`` of W single-threaded worker processes,
  or the scheduler at ``--scheduler`` (e.g. one started by dask-jobqueue's
  ``SLURMCluster``/``HTCondorCluster`` or coffea-casa's ``CoffeaCasaCluster``).

The fileset is coffea's JSON (``{dataset: [files]}`` or ``{dataset: {"files": [...] | {file:
tree}}}``; relative paths are relative to the JSON file), or plain ROOT files (dataset = file
stem). The output is saved with ``coffea.util.save``; ``--root`` also writes every histogram
as ``DATASET/REGION/VARIABLE`` (FoldHists as their fold-weighted ``hist.Hist``) with uproot.

Bad input is never lost silently: every dataset's output gets ``expected_events`` (entries
per file, read before the run), ``skipped`` (files whose events were not all processed, with
the number missing) and ``empty_files``. With ``--skip-bad-files`` the Runner skips files or
chunks that raise ``OSError`` (unreadable/truncated files), ``zlib.error`` or an uproot
deserialization error or a decompression error (corrupt baskets) and they appear under
``skipped``; without it the run
stops with the error.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NAME = "run"
HELP = "run the VBF H->mumu processor (fullsim, flashsim or gen mode) with a coffea executor"

EXECUTORS = ("iterative", "futures", "dask")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="FILESET.json|FILE.root", help="a coffea fileset JSON or ROOT files")
    p.add_argument("--mode", choices=["fullsim", "flashsim", "gen"], default="fullsim")
    p.add_argument("--folds", type=int, default=1, help="FlashSim upsampling factor N (flashsim mode)")
    p.add_argument("--executor", choices=EXECUTORS, default="iterative")
    p.add_argument("--workers", type=int, default=2, help="worker processes (futures, dask LocalCluster)")
    p.add_argument("--scheduler", help="address of a running dask scheduler (dask executor; default: a LocalCluster)")
    p.add_argument("--chunksize", type=int, default=100_000)
    p.add_argument("--no-dnn", action="store_true", help="do not evaluate the DNN")
    p.add_argument("--dnn-model", help="DNN model folder (default: the shipped one)")
    p.add_argument("--jets-model", help="FlashSim jets flow folder (flashsim mode; default: the shipped one)")
    p.add_argument("--muons-model", help="FlashSim muons flow folder (flashsim mode; default: the shipped one)")
    p.add_argument("--device", default="cpu", help="where FlashSim samples the flows: cpu (default) or cuda (flashsim mode)")
    p.add_argument("--precision", default="float32",
                   help="FlashSim flow products in float32 (default) or bfloat16 (~1.1-1.2x faster on CPUs with AMX; flashsim mode)")
    p.add_argument("--skip-bad-files", action="store_true", help="skip unreadable files/corrupt baskets and report them")
    p.add_argument("-o", "--output", required=True, help="output file (coffea.util.save)")
    p.add_argument("--root", help="also write the histograms to this ROOT file")


# --------------------------------------------------------------------------- fileset
def load_fileset(inputs: Sequence[str], treename: str = "Events") -> dict[str, dict[str, dict[str, str]]]:
    """``{dataset: {"files": {path: treename}}}`` from a fileset JSON or a list of ROOT files."""
    from ..errors import UserError

    if len(inputs) == 1 and str(inputs[0]).endswith(".json"):
        path = Path(inputs[0])
        if not path.is_file():
            raise UserError(f"{path}: no such fileset file")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: not valid JSON ({err})") from err
        if not isinstance(raw, dict) or not raw:
            raise UserError(f"{path}: a fileset is a JSON object {{dataset: [files]}}")
        out = {}
        for ds, spec in raw.items():
            files = spec.get("files", spec) if isinstance(spec, dict) else spec
            if isinstance(files, list):
                files = {f: treename for f in files}
            if not isinstance(files, dict) or not files:
                raise UserError(f"{path}: dataset {ds!r} has no files")
            out[ds] = {"files": {_resolve(f, path.parent): t for f, t in files.items()}}
        return out
    out: dict[str, dict[str, dict[str, str]]] = {}
    for f in inputs:
        if str(f).endswith(".json"):
            raise UserError("give either one fileset JSON or ROOT files, not both")
        out.setdefault(Path(f).stem, {"files": {}})["files"][str(f)] = treename
    return out


def _resolve(f: str, base: Path) -> str:
    if "://" in f or Path(f).is_absolute():
        return f
    return str((base / f).resolve())


def expected_events(fileset: dict, proc=None) -> dict[str, dict[str, int | None]]:
    """Entries per file per dataset (None when the file cannot be opened).

    With ``proc``, every readable non-empty file is also checked for the branches
    ``proc.missing_branches`` reports, so that a file unfit for the mode fails here with
    :class:`MissingBranchesError` naming them, whatever the executor (errors raised on
    workers reach the driver wrapped by coffea).
    """
    import uproot

    from ..errors import MissingBranchesError

    out: dict[str, dict[str, int | None]] = {}
    for ds, spec in fileset.items():
        out[ds] = {}
        for f, tree in spec["files"].items():
            try:
                with uproot.open(f) as fh:
                    t = fh[tree]
                    out[ds][f] = int(t.num_entries)
                    available = set(t.keys())
            except Exception:  # noqa: BLE001 - reported as a skipped file
                out[ds][f] = None
                continue
            if proc is not None and out[ds][f] > 0:
                missing = proc.missing_branches(available)
                if missing:
                    raise MissingBranchesError(f, missing, f"run the VBF H->mumu processor in {proc.mode} mode")
    return out


# --------------------------------------------------------------------------- running
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


def make_executor(name: str, workers: int = 2, scheduler: str | None = None):
    """(coffea executor, cleanup callable) for ``name``."""
    from coffea import processor

    from ..errors import UserError

    if name == "iterative":
        return processor.IterativeExecutor(status=False), lambda: None
    if name == "futures":
        return processor.FuturesExecutor(workers=workers, status=False), lambda: None
    if name == "dask":
        from dask.distributed import Client, LocalCluster

        if scheduler:
            try:
                client = Client(scheduler, timeout="30s")
            except OSError as err:
                raise UserError(f"cannot reach the dask scheduler at {scheduler}: {err}") from err
            return processor.DaskExecutor(client=client, status=False), client.close
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)

        def close():
            client.close()
            cluster.close()

        return processor.DaskExecutor(client=client, status=False), close
    raise UserError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


def run_processor(
    fileset: dict,
    proc,
    executor: str = "iterative",
    workers: int = 2,
    scheduler: str | None = None,
    chunksize: int = 100_000,
    skip_bad_files: bool = False,
) -> dict[str, Any]:
    """Run ``proc`` on ``fileset`` with the coffea Runner; adds the bad-input report per dataset."""
    from coffea import processor
    from coffea.nanoevents import NanoAODSchema

    from ..errors import UserError

    if chunksize < 1:
        raise UserError(f"--chunksize must be ≥ 1, got {chunksize}")
    expected = expected_events(fileset, proc)
    unreadable = [f for ds in expected.values() for f, n in ds.items() if n is None]
    if unreadable and not skip_bad_files:
        raise UserError(f"cannot open {', '.join(unreadable)} (use --skip-bad-files to skip and report them)")
    readable = {ds: {"files": {f: t for f, t in spec["files"].items() if expected[ds][f] is not None}} for ds, spec in fileset.items()}
    readable = {ds: spec for ds, spec in readable.items() if spec["files"]}
    ex, close = make_executor(executor, workers, scheduler)
    try:
        runner = processor.Runner(
            executor=ex,
            schema=NanoAODSchema,
            chunksize=chunksize,
            skipbadfiles=bad_file_errors() if skip_bad_files else False,
        )
        out = runner(readable, processor_instance=proc, treename="Events") if readable else {}
    except Exception as err:  # surface user errors raised on workers as one clear line
        user = _find_user_error(err)
        if user is not None:
            raise UserError(str(user)) from err
        raise
    finally:
        close()
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
    return out


def _find_user_error(err: BaseException):
    from ..errors import UserError

    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def write_root(output: dict, path: str | Path) -> int:
    """Write every histogram as ``DATASET/REGION/VARIABLE`` with uproot; returns how many."""
    import uproot

    from ..hists import FoldHist

    n = 0
    with uproot.recreate(path) as f:
        for ds, res in output.items():
            for region, hists in res.get("hists", {}).items():
                for var, h in hists.items():
                    f[f"{ds}/{region}/{var}"] = h.to_hist() if isinstance(h, FoldHist) else h
                    n += 1
    return n


def run(args: argparse.Namespace) -> int:
    from coffea.util import save

    from processors import VBFHmmProcessor

    from ..errors import UserError
    from ..sampling_precision import check_precision

    if args.workers < 1:
        raise UserError(f"--workers must be ≥ 1, got {args.workers}")
    if args.scheduler and args.executor != "dask":
        raise UserError("--scheduler needs --executor dask")
    dnn: bool | str = False if args.no_dnn else (args.dnn_model or True)
    simulator = None
    if args.jets_model or args.muons_model or args.device != "cpu" or check_precision(args.precision) != "float32":
        if args.mode != "flashsim":
            raise UserError("--jets-model/--muons-model/--device/--precision need --mode flashsim")
        from ..inject import FlashSim  # carries only model paths: cheap to pickle to workers

        simulator = FlashSim(jets=args.jets_model or "default", muons=args.muons_model or "default", device=args.device,
                             precision=args.precision)
        if args.device != "cpu":  # fail here, not on every worker
            from ..flows.sampler import check_device

            check_device(args.device)
    proc = VBFHmmProcessor(mode=args.mode, folds=args.folds, dnn=dnn, flashsim=simulator)
    fileset = load_fileset(args.inputs)
    t0 = time.perf_counter()
    out = run_processor(fileset, proc, args.executor, args.workers, args.scheduler, args.chunksize, args.skip_bad_files)
    dt = time.perf_counter() - t0
    save(out, args.output)
    for ds, res in out.items():
        cf = res["cutflow"]
        sr = res["hists"]["SR"]["mass"].values(flow=True).sum()
        print(f"{ds}: {res['nevents']} events, sumw {res['sumw']:.6g}, SR {sr:.4g} (weighted); cutflow " + " → ".join(f"{k} {v:g}" for k, v in cf.items()))
        for f, n in res["skipped"].items():
            print(f"  skipped {f}: {n}" + (" events not processed" if isinstance(n, int) else ""))
        for f in res["empty_files"]:
            print(f"  empty file {f}")
    total = sum(r["nevents"] for r in out.values())
    print(f"{total} events in {dt:.1f} s ({total / dt if dt else 0:.0f} events/s, {args.executor}) -> {args.output}")
    if args.root:
        print(f"{write_root(out, args.root)} histograms -> {args.root}")
    return 0
