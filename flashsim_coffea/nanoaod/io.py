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
and the missing branches when some are absent; :func:`open_tree`/:func:`open_events` name a
missing file, a missing tree (with the file's trees) or an unreadable header; :func:`reading`
turns the errors of truncated or corrupt data (:func:`read_errors`) into one line naming the
file (:func:`unreadable`).

Input checks (a :class:`~flashsim_coffea.errors.UserError` naming the file and the value):
:func:`check_reference` refuses a ``flashsim simulate`` output where a reference is needed
(:func:`simulate_record`); :func:`check_not_folded` a file already folded by ``flashsim
simulate`` (:func:`file_folds`); :func:`check_counters` a counter ``nX`` that disagrees with
the per-entry lengths of its ``X_*`` branches; :func:`check_duplicates` repeated (run,
luminosityBlock, event) when events are folded (a warning otherwise).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Mapping

import awkward as ak
import numpy as np
import uproot

from ..errors import MissingBranchesError, UserError
from ..safe_write import AtomicFile, check_output

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


def read_errors() -> tuple[type[BaseException], ...]:
    """Exception types of reading a ROOT file's data that mean the file is truncated or corrupt:
    OSError (uproot's short reads), zlib.error and cramjam's DecompressionError (corrupt
    ZLIB/ZSTD/LZ4 baskets, as uproot decompresses them), uproot's DeserializationError."""
    import zlib

    errors: tuple[type[BaseException], ...] = (OSError, zlib.error, uproot.deserialization.DeserializationError)
    try:
        import cramjam

        errors += (cramjam.DecompressionError,)
    except (ImportError, AttributeError):
        pass
    return errors


def unreadable(path: str | os.PathLike, err: BaseException) -> UserError:
    """The one-line error of a file whose data cannot be read (:func:`read_errors`):
    ``FILE: cannot read (corrupt or truncated ROOT file?: <first line of the error>)``."""
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    return UserError(f"{path}: cannot read (corrupt or truncated ROOT file?: {type(err).__name__}"
                     f"{': ' + first if first else ''})")


@contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Errors of :func:`read_errors` raised in the block become :func:`unreadable`'s UserError naming ``path``."""
    try:
        yield
    except UserError:
        raise
    except read_errors() as err:
        raise unreadable(path, err) from err


def tree_names(f) -> list[str]:
    """The names of the trees (TTree, RNTuple) in an open uproot file, in file order."""
    return [k for k, c in f.classnames(cycle=False).items() if c in ("TTree", "ROOT::RNTuple", "ROOT::Experimental::RNTuple")]


def open_tree(path: str | os.PathLike, tree: str = "Events", hint: str = ""):
    """The tree ``tree`` of a ROOT file; a one-line UserError for a missing or non-ROOT file, a file
    without that tree (``FILE has no tree 'X' (trees: Events, Runs)``, then ``hint``) or one whose
    header cannot be read (:func:`unreadable`)."""
    try:
        f = uproot.open(path)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as err:  # uproot raises many kinds for non-ROOT input
        raise UserError(f"{path}: not a readable ROOT file ({type(err).__name__}: {err})") from None
    with reading(path):
        if tree not in f:
            raise UserError(f"{path} has no tree '{tree}' (trees: {', '.join(tree_names(f)) or 'none'}){hint}")
        return f[tree]


def open_problem(path: str | os.PathLike, tree: str = "Events") -> str:
    """Why the tree ``tree`` of ``path`` cannot be opened, in one line (:func:`open_tree`'s message:
    no such file, not a ROOT file, no such tree with the file's trees, an unreadable header)."""
    try:
        open_tree(path, tree)
    except UserError as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - described, not raised
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        return f"cannot open {path} ({type(err).__name__}: {first})"
    return f"cannot open {path}"


def open_events(path: str | os.PathLike):
    """The ``Events`` tree of a NanoAOD file, with a clear error for unreadable files (:func:`open_tree`)."""
    return open_tree(path, "Events", "; is it NanoAOD?")


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
    with reading(path):
        return tree.arrays(names, entry_start=entry_start, entry_stop=entry_stop, how=dict)


# --------------------------------------------------------------------------- input checks
#: the branch ``flashsim simulate`` numbers the reconstructions (folds) of an event with
FOLD_BRANCH = "fold"
#: entries read at a time by the checks that read whole branches
CHECK_STEP = 500_000


def gen_collections(branches: Iterable[str]) -> list[str]:
    """The Gen collections (``GenJet``, ``GenPart`` …) among flat branch names such as ``GenJet_pt``."""
    return sorted({b.split("_", 1)[0] for b in branches if b.startswith("Gen") and "_" in b})


def gen_hint(missing: Iterable[str], names: Iterable[str]) -> str:
    """What the ``missing`` branches say about a file with branches ``names``: no Gen collection at
    all (collision data?), or which Gen collections it lacks; "" when no Gen collection is missing."""
    have = gen_collections(names)
    lacking = sorted(set(gen_collections(missing)) - set(have))
    if not lacking:
        return ""
    if not have:
        return " (it has no Gen collection: is it collision data? only simulation has them)"
    return f" (no {' and no '.join(lacking)} collection{'s' if len(lacking) > 1 else ''}; it has {', '.join(have)})"


def simulate_record(path: str | os.PathLike, names: Iterable[str] | None = None) -> dict[str, Any] | None:
    """What marks ``path`` as a ``flashsim simulate`` output: the ``"simulate"`` record of its
    ``FlashSimMetadata``, or ``{}`` when only its ``fold`` branch tells (metadata lost in a copy);
    None for any other file. ``names``: the file's ``Events`` branches, when already known."""
    record = read_metadata(path).get("simulate")
    if isinstance(record, dict):
        return record
    if names is None:
        names = open_events(path).keys()
    return {} if FOLD_BRANCH in set(names) else None


def check_reference(path: str | os.PathLike, purpose: str = "", names: Iterable[str] | None = None) -> None:
    """A UserError when ``path`` is a ``flashsim simulate`` output (:func:`simulate_record`): its
    Jet/Muon are FlashSim's, so it cannot stand for the reference detector response (``purpose``,
    e.g. "of a closure", completes the message)."""
    record = simulate_record(path, names)
    if record is None:
        return
    replaced = record.get("replaced") or []
    made = f"FlashSim {'/'.join(replaced)}" if replaced else f"it has a '{FOLD_BRANCH}' branch"
    sources = [i["name"] for i in record.get("inputs") or [] if isinstance(i, dict) and i.get("name")]
    source = f" ({', '.join(sources)})" if sources else ""
    raise UserError(f"{path} was written by flashsim simulate ({made}): it cannot be the reference"
                    f"{' ' + purpose if purpose else ''}; give the file it was simulated from{source}")


def file_folds(path: str | os.PathLike, tree=None) -> int:
    """How many reconstructions of each event a ``flashsim simulate`` output holds: the ``folds`` of
    its metadata, else (metadata lost) the largest ``fold`` value + 1; 1 for a file without a
    ``fold`` branch."""
    tree = open_events(path) if tree is None else tree
    if FOLD_BRANCH not in tree.keys():
        return 1
    folds = (simulate_record(path, tree.keys()) or {}).get("folds")
    if folds is None:
        fold = tree[FOLD_BRANCH].array(library="np")
        folds = int(fold.max()) + 1 if len(fold) else 1
    return int(folds)


def check_not_folded(path: str | os.PathLike, instead: str, tree=None, any_fold: bool = False) -> None:
    """A UserError (naming ``path``, its folds and ``instead``: what to do) when ``path`` is a
    ``flashsim simulate`` output with folds > 1, or with ``any_fold`` any file with a ``fold``
    branch."""
    tree = open_events(path) if tree is None else tree
    if FOLD_BRANCH not in tree.keys():
        return
    folds = file_folds(path, tree)
    if folds > 1 or any_fold:
        raise UserError(f"{path} already has a '{FOLD_BRANCH}' branch: folded ×{folds} by flashsim simulate; {instead}")


def _jagged_branch(tree, collection: str) -> str | None:
    """A jagged ``collection_*`` branch of ``tree`` (``_pt`` when there is one)."""
    names = tree.keys()
    preferred = [f"{collection}_pt"] + [b for b in names if b.startswith(collection + "_")]
    for b in preferred:
        if b in names and (getattr(tree[b], "count_branch", None) is not None or str(tree[b].typename).endswith("[]")):
            return b
    return None


def check_counters(path: str | os.PathLike, collections: Iterable[str], tree=None) -> None:
    """A UserError when, for a collection ``X`` of ``collections`` with a counter ``nX``, ``nX``
    differs in some entry from the number of values of a jagged ``X_*`` branch (``X_pt`` when
    there is one; uproot reads it with its own per-entry lengths): coffea's NanoAODSchema takes
    ``nX`` as the offsets of every ``X_*`` branch, so such a file would misalign the collection.
    The message names the file, the counter, the branch and the first bad entry."""
    tree = open_events(path) if tree is None else tree
    names = set(tree.keys())
    for coll in collections:
        counter = f"n{coll}"
        branch = _jagged_branch(tree, coll) if counter in names else None
        if branch is None:
            continue
        bad = 0
        first = None
        for start in range(0, int(tree.num_entries), CHECK_STEP):
            stop = min(int(tree.num_entries), start + CHECK_STEP)
            n = tree[counter].array(library="np", entry_start=start, entry_stop=stop)
            lengths = ak.to_numpy(ak.num(tree[branch].array(library="ak", entry_start=start, entry_stop=stop), axis=1))
            wrong = np.flatnonzero(n != lengths)
            if wrong.size and first is None:
                i = int(wrong[0])
                first = (start + i, int(n[i]), int(lengths[i]))
            bad += int(wrong.size)
        if first is not None:
            entry, said, has = first
            raise UserError(f"{path}: {counter} disagrees with {branch} in {bad} entries, first at entry {entry} "
                            f"({counter} = {said}, {branch} has {has} values): coffea reads {coll} through {counter} "
                            "and would misalign it; rewrite the file with consistent counters")


def duplicate_events(path: str | os.PathLike, ids: Mapping[str, np.ndarray] | None = None,
                     tree=None) -> tuple[int, tuple[int, int, int], int] | None:
    """(entries repeating an earlier (run, luminosityBlock, event), the first such identity, its
    entry) of ``path``, or None when every identity is unique or the file lacks one of the three
    branches. ``ids``: the three columns, when already read."""
    from .conventions import EVENT_ID

    if ids is None:
        tree = open_events(path) if tree is None else tree
        if not set(EVENT_ID) <= set(tree.keys()):
            return None
        ids = tree.arrays(list(EVENT_ID), library="np", how=dict)
    if not set(EVENT_ID) <= set(ids):
        return None
    from ..noise import hash_keys

    cols = [np.asarray(ids[k]).astype(np.int64) for k in EVENT_ID]
    if len(cols[0]) < 2:
        return None
    # one sort of the 64-bit identity hash (as nanoaod.links does), equal neighbours checked exactly;
    # the stable sort keeps the entries of one identity in file order, so the later ones repeat
    key = hash_keys(0, "links/event", *cols)
    order = np.argsort(key, kind="stable")
    same = np.flatnonzero(key[order][1:] == key[order][:-1])
    exact = np.logical_and.reduce([c[order][same] == c[order][same + 1] for c in cols])
    if not exact.all():  # a hash collision: the records themselves
        rows = np.stack(cols, axis=1)
        _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
        repeats = np.flatnonzero(first[inverse.reshape(-1)] != np.arange(len(rows)))
    else:
        repeats = order[same + 1]
    if not repeats.size:
        return None
    entry = int(repeats.min())
    return int(repeats.size), tuple(int(c[entry]) for c in cols), entry


def check_duplicates(path: str | os.PathLike, folds: int, ids: Mapping[str, np.ndarray] | None = None,
                     tree=None) -> None:
    """Duplicate event identities in ``path`` (:func:`duplicate_events`, e.g. overlapping files
    merged with hadd): a UserError with ``folds`` > 1 (the folds of different events would be
    merged as those of one event), one warning with ``folds`` = 1 (FlashSim draws the same objects
    for every copy: its noise is keyed on the identity)."""
    import warnings

    found = duplicate_events(path, ids, tree)
    if found is None:
        return
    count, (run, lumi, event), entry = found
    said = (f"{path}: {count} events repeat an earlier (run, luminosityBlock, event), the first "
            f"({run}, {lumi}, {event}) at entry {entry}")
    if folds > 1:
        raise UserError(f"{said}: with folds = {folds} the folds of different events would be merged as one "
                        "event's; remove the duplicates (overlapping files merged?) or use folds = 1")
    warnings.warn(f"{said}: FlashSim gives every copy the same objects (its noise is keyed on the identity); "
                  "remove the duplicates if they are different events", UserWarning, stacklevel=2)
