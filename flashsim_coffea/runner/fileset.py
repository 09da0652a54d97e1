"""Filesets: coffea's forms made canonical, ``flashsim run``'s inputs read, entries per file counted.

Accepted per dataset (:func:`canonical_fileset`): a list of files, ``{file: tree}``, or
``{"files": list | {file: tree}, "treename": tree, "metadata": {...}}``; the canonical form is
``{dataset: {"files": {abs_path: tree}[, "metadata": {...}]}}``. Local paths are made absolute
(``in/a.root`` and ``./in/a.root`` are one file; relative to the fileset JSON for a JSON); a
file given twice (also through a symbolic or hard link: :func:`file_identity`; or in two
datasets) is refused with a :class:`~flashsim_coffea.errors.UserError`: its events would be
counted twice. A dataset's ``metadata`` is kept (it reaches ``events.metadata``) and may not
use a name coffea reserves. URLs (``root://``, ``https://`` …) are kept as given.

:func:`expected_events` opens every file once: its entries (None when it cannot be opened) and,
for a processor that names the branches it needs (:mod:`flashsim_coffea.runner.interface`),
a :class:`~flashsim_coffea.errors.MissingBranchesError` for a file that lacks them, and the
checks of :func:`check_input` (counters of the Gen collections read; for a processor that
simulates, no file already folded by ``flashsim simulate`` and no duplicate event identities).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError

__all__ = ["canonical_fileset", "check_input", "expected_events", "file_identity", "is_remote", "load_fileset",
           "simulation_folds"]


def is_remote(f: str) -> bool:
    """Whether ``f`` is a URL (root://, https://, ...) rather than a local path."""
    return "://" in str(f)


def _abs(f: str, base: Path | None) -> str:
    """Absolute, normalised local path (``base`` for relative ones; symbolic links kept)."""
    if is_remote(f):
        return str(f)
    p = Path(os.path.expanduser(str(f)))
    if not p.is_absolute():
        p = (base if base is not None else Path.cwd()) / p
    return os.path.normpath(p)


def file_identity(f: str | os.PathLike) -> tuple:
    """What makes two paths the same file: for a local file its (device, inode), so that symbolic
    and hard links are one file; the resolved path for a local path that does not exist (yet); a
    URL as given."""
    if is_remote(str(f)):
        return ("url", str(f))
    try:
        st = os.stat(f)
    except OSError:
        return ("path", os.path.realpath(f))
    return ("inode", st.st_dev, st.st_ino)


def canonical_fileset(fileset: Mapping, treename: str = "Events", base: str | Path | None = None,
                      source: str = "fileset") -> dict[str, dict[str, Any]]:
    """``{dataset: {"files": {abs_path: tree}[, "metadata": {...}]}}`` from any coffea fileset form.

    Accepted per dataset: a list of files, ``{file: tree}``, or ``{"files": list | {file: tree},
    "treename": tree, "metadata": {...}}``. Relative local paths are relative to ``base``
    (default: the working directory). A file given twice (within or across datasets, also
    through a symbolic or hard link: :func:`file_identity`) is refused; so are metadata that are
    not a JSON object or that use a name coffea reserves. ``source`` names the fileset in the
    messages.
    """
    from .executors import reserved_metadata_names

    if not isinstance(fileset, Mapping) or not fileset:
        raise UserError(f"{source}: a fileset is a non-empty mapping {{dataset: [files]}}")
    base = Path(base) if base is not None else None
    seen: dict[tuple, tuple[str, str, str]] = {}  # identity -> (dataset, as given, absolute path)
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
            ident = file_identity(path)
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
            reserved = sorted(set(meta) & reserved_metadata_names())
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

    With ``proc``, every readable non-empty file is also checked for the branches the processor
    reports missing (:meth:`~flashsim_coffea.runner.interface.FlashSimProcessor.missing_branches`;
    none for a processor without that method), so that a file unfit for the mode fails here
    with :class:`~flashsim_coffea.errors.MissingBranchesError` naming them, whatever the executor;
    then with :func:`check_input`.
    """
    import uproot

    from ..errors import MissingBranchesError
    from .interface import processor_interface

    checks = processor_interface(proc) if proc is not None else None
    out: dict[str, dict[str, int | None]] = {}
    for ds, spec in fileset.items():
        out[ds] = {}
        for f, tree in spec["files"].items():
            fh = None
            try:
                fh = uproot.open(f)
                t = fh[tree]
                out[ds][f] = int(t.num_entries)
                available = set(t.keys())
            except Exception:  # noqa: BLE001 - reported as an unreadable file
                if fh is not None:
                    fh.close()
                out[ds][f] = None
                continue
            with fh:
                if checks is not None and out[ds][f] > 0:
                    missing = checks.missing_branches(available)
                    if missing:
                        raise MissingBranchesError(f, missing, f"run the processor in {getattr(proc, 'mode', '?')} mode")
                    check_input(f, t, proc, checks.required_branches(available))
    return out


def simulation_folds(proc) -> int | None:
    """The folds of a processor that simulates with FlashSim, else None (the processor
    interface's ``simulation_folds``, :mod:`flashsim_coffea.runner.interface`)."""
    from .interface import processor_interface

    return processor_interface(proc).simulation_folds()


def check_input(path: str, tree, proc, required: Sequence[str] = ()) -> None:
    """The checks of one readable, non-empty input file before any work (a
    :class:`~flashsim_coffea.errors.UserError` naming the file): the counters of the Gen
    collections the processor reads (``required``, and its FlashSim's) agree with their branches
    (:func:`~flashsim_coffea.nanoaod.io.check_counters`); and for a processor that simulates
    (:func:`simulation_folds`) the file is not already folded by ``flashsim simulate``
    (:func:`~flashsim_coffea.nanoaod.io.check_not_folded`) and has no duplicate (run,
    luminosityBlock, event) — refused with folds > 1, one warning with folds = 1
    (:func:`~flashsim_coffea.nanoaod.io.check_duplicates`)."""
    from ..nanoaod.io import check_counters, check_duplicates, check_not_folded, gen_collections

    folds = simulation_folds(proc)
    simulator_reads = getattr(getattr(proc, "flashsim", None), "required_branches", None)
    read = list(required) + (list(simulator_reads()) if folds is not None and callable(simulator_reads) else [])
    check_counters(path, gen_collections(read), tree)
    if folds is not None:
        check_not_folded(path, "run --mode fullsim on it, or flashsim mode on the file it was simulated from", tree)
        check_duplicates(path, folds, tree=tree)
