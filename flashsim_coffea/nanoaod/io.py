"""Reading and writing NanoAOD-format ROOT files with uproot.

Writing: :class:`NanoAODWriter` declares the ``Events`` TTree from the first block of
branches (``file.mktree`` + ``extend``; assigning ``file["Events"] = ...`` would write an
RNTuple). Jagged branches ``X_a, X_b`` are grouped into one record ``X`` so uproot writes the
NanoAOD counter ``nX`` once. On close it writes the ``Runs`` tree (``genEventCount``,
``genEventSumw``, ``genEventSumw2`` as in NanoAOD, plus ``XSecPb`` and
``genFilterEfficiency``) and a ``FlashSimMetadata`` TObjString with the provenance as JSON.
The file is written under a temporary name beside its path and renamed on close
(:class:`flashsim_coffea.safe_write.AtomicFile`): an interrupted write leaves no truncated file.
:func:`check_output_path` checks an output ``.root`` path before any work
(:func:`flashsim_coffea.safe_write.check_output`).

Reading: :func:`read_branches` reads a set of branches as awkward arrays and names the file
and the missing branches when some are absent.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping

import awkward as ak
import numpy as np
import uproot

from ..errors import MissingBranchesError, UserError
from ..safe_write import AtomicFile, check_output, ensure_writable_dir  # noqa: F401 - ensure_writable_dir: also here

METADATA_KEY = "FlashSimMetadata"


def check_output_path(path: str | os.PathLike, force: bool, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Fail before any work if ``path`` is one of ``inputs`` (even with ``force``), exists (without
    ``force``), its folder is missing or not writable (:func:`flashsim_coffea.safe_write.check_output`),
    or it is not a ``.root`` file."""
    path = check_output(path, inputs, force)
    if path.suffix != ".root":
        raise UserError(f"output {path} must be a .root file")
    return path


def is_counter(name: str, names) -> bool:
    """NanoAOD counter ``nX`` of a jagged collection ``X_*`` (uproot writes counters itself)."""
    if not name.startswith("n") or len(name) < 2:
        return False
    base = name[1:]
    return any(other == base or other.startswith(base + "_") for other in names if other != name)


def _group(branches: Mapping[str, Any]) -> dict[str, Any]:
    """{"GenJet_pt": jag, "GenJet_eta": jag, "run": flat} → {"GenJet": record(pt, eta), "run": flat}."""
    groups: dict[str, dict[str, Any]] = defaultdict(dict)
    out: dict[str, Any] = {}
    for name, arr in branches.items():
        if isinstance(arr, ak.Array) and arr.ndim == 2 and "_" in name.strip("_"):
            prefix, field = name.split("_", 1)
            groups[prefix][field] = arr
        elif isinstance(arr, ak.Array) and arr.ndim > 1:
            out[name] = arr  # a lone jagged branch: uproot names its counter "n" + name
        else:
            out[name] = np.asarray(arr)
    for prefix, fields in groups.items():
        out[prefix] = ak.zip(fields, depth_limit=None)
    return out


class NanoAODWriter:
    """Streams blocks of NanoAOD branches into ``Events`` and writes ``Runs`` + metadata on close
    (into a temporary file beside ``path``, renamed to ``path`` by :meth:`close`, removed by
    :meth:`abort`)."""

    def __init__(self, path: str | os.PathLike, compression: Any = None):
        self.path = Path(path)
        self._staged = AtomicFile(self.path)
        try:
            self._file = uproot.recreate(self._staged.path, compression=compression or uproot.ZSTD(5))
        except BaseException:
            self._staged.discard()
            raise
        self._tree = None
        self._order: list[str] | None = None
        self.n_events = 0
        self.sumw = 0.0
        self.sumw2 = 0.0

    def extend(self, branches: Mapping[str, Any]) -> None:
        grouped = _group(branches)
        if self._tree is None:
            types = {}
            for name, arr in grouped.items():
                types[name] = arr.type.content if isinstance(arr, ak.Array) else arr.dtype
            self._tree = self._file.mktree("Events", types, title="Events")
            self._order = list(grouped)
        elif set(grouped) != set(self._order):
            raise ValueError(f"branch set changed between blocks: {sorted(set(grouped) ^ set(self._order))}")
        self._tree.extend({k: grouped[k] for k in self._order})
        w = np.asarray(branches["genWeight"], dtype=np.float64)
        self.n_events += len(w)
        self.sumw += float(w.sum())
        self.sumw2 += float((w**2).sum())

    def close(
        self,
        xsec_pb: float = float("nan"),
        filter_efficiency: float = 1.0,
        metadata: Mapping[str, Any] | None = None,
        runs: Mapping[str, Any] | None = None,
    ) -> None:
        """Write ``Runs`` and the metadata, then close the file.

        ``runs`` (e.g. the input's ``Runs`` in a resimulation) is copied as given; otherwise
        one entry is built from the written events: genEventCount/Sumw/Sumw2 as in NanoAOD,
        plus ``XSecPb`` and ``genFilterEfficiency``.
        """
        if runs is None:
            runs = {
                "run": np.array([1], dtype=np.uint32),
                "genEventCount": np.array([self.n_events], dtype=np.int64),
                "genEventSumw": np.array([self.sumw], dtype=np.float64),
                "genEventSumw2": np.array([self.sumw2], dtype=np.float64),
                "XSecPb": np.array([xsec_pb], dtype=np.float64),
                "genFilterEfficiency": np.array([filter_efficiency], dtype=np.float64),
            }
        grouped = _group({k: v for k, v in runs.items() if not is_counter(k, runs)})
        types = {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in grouped.items()}
        self._file.mktree("Runs", types, title="Runs").extend(grouped)
        if metadata is not None:
            self._file[METADATA_KEY] = json.dumps(dict(metadata), sort_keys=True, default=float)
        self._file.close()
        self._staged.commit()

    def abort(self) -> None:
        """Close and delete the partly written file (so no truncated output is left behind; an
        existing file at ``path`` is left as it was)."""
        try:
            self._file.close()
        finally:
            self._staged.discard()


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``FlashSimMetadata`` JSON of a generated file ({} for other NanoAOD files)."""
    with uproot.open(path) as f:
        if METADATA_KEY not in f:
            return {}
        return json.loads(str(f[METADATA_KEY]))


def open_events(path: str | os.PathLike):
    """The ``Events`` tree of a NanoAOD file, with a clear error for unreadable files."""
    try:
        f = uproot.open(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as err:  # uproot raises many kinds for non-ROOT input
        raise UserError(f"{path}: not a readable ROOT file ({type(err).__name__}: {err})") from None
    if "Events" not in f:
        raise UserError(f"{path}: no 'Events' tree (keys: {', '.join(f.keys()) or 'none'}); is it NanoAOD?")
    return f["Events"]


def read_branches(
    path: str | os.PathLike,
    required: Iterable[str],
    optional: Iterable[str] = (),
    what: str = "read it",
    entry_start: int | None = None,
    entry_stop: int | None = None,
) -> dict[str, ak.Array]:
    """Read ``required`` (error naming all missing ones) and whichever ``optional`` branches exist."""
    tree = open_events(path)
    have = set(tree.keys())
    required = list(required)
    missing = [b for b in required if b not in have]
    if missing:
        raise MissingBranchesError(str(path), missing, what)
    names = required + [b for b in optional if b in have]
    return tree.arrays(names, entry_start=entry_start, entry_stop=entry_stop, how=dict)
