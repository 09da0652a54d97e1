"""FlashSim to file: NanoAOD in → NanoAOD out with FlashSim ``Jet``/``Muon`` (``flashsim simulate``).

:func:`simulate_file` reads one or more NanoAOD files with Gen collections chunk by chunk,
simulates reco ``Jet`` and ``Muon`` with :class:`flashsim_coffea.inject.FlashSim` (the same
objects ``FlashSim().inject(events, folds)`` gives, bit for bit) and writes one NanoAOD file:

* **Events** — every branch of the inputs except the replaced collections (below), plus the
  FlashSim ``Jet_*``/``Muon_*`` with their counters ``nJet``/``nMuon`` and a ``fold`` branch
  (int32, 0 … N−1). With ``folds = N`` every input event appears N times, event-major
  (e0f0, e0f1, …, e1f0, …), each copy with its original ``run``/``luminosityBlock``/``event``
  and all its other branches repeated. The FlashSim fields are written as FlashSim makes them
  (float32/int32/bool, NanoAOD precision), minus what coffea's ``NanoAODSchema`` makes itself
  on reading (:func:`written_fields`): the global indices ``genJetIdxG``/``genPartIdxG``
  (rebuilt from ``genJetIdx``/``genPartIdx``) and ``Jet.charge`` (0.0 for every NanoAOD jet).
  They include NanoAOD's links between the FlashSim collections (``Jet_muonIdx1/2``,
  ``Jet_nMuons``, ``Muon_jetIdx``, …: ``PreparedChunk.inject``, ΔR rule of
  :mod:`flashsim_coffea.nanoaod.links`).
* **Dropped branches** — (a) every ``Jet_*``/``Muon_*`` of the input and the counters
  ``nJet``/``nMuon`` (replaced); (b) every branch of another collection that holds an index
  *into* Jet or Muon, which would point at the wrong object: those coffea's ``NanoAODSchema``
  declares as cross-references to Jet/Muon (``Electron_jetIdx``, ``Photon_jetIdx``,
  ``Tau_jetIdx``, ``FsrPhoton_muonIdx``) and any other ``X_jetIdx*``/``X_muonIdx*``
  (e.g. ``boostedTau_jetIdx``, ``FatJet_muonIdx3SJ``). The list is in the provenance
  (``dropped_branches``). Event-level reco quantities computed from the original reco
  objects (``MET_*``, ``SoftActivityJet*``, ``Electron_jetRelIso``, trigger bits, …) are
  carried unchanged: they describe the input's reconstruction, not FlashSim's.
* **genWeight** — with N folds it is scaled by 1/N (``float32(genWeight / N)``; untouched for
  N = 1; also ``Generator_weight`` and ``LHEWeight_originalXWGTUP``: the
  :data:`~flashsim_coffea.nanoaod.conventions.FOLD_SCALED_WEIGHTS`, the convention
  ``FlashSim.inject(events, folds=N)`` follows too), so the output is a correctly normalised sample: Σ genWeight over the file equals
  the input's, and ``Runs/genEventSumw`` — copied unchanged — still normalises it
  (``XSecPb · L · genWeight / genEventSumw``). Then ``flashsim run OUT --mode fullsim``
  gives the histogram contents and ``sumw`` of ``flashsim run IN --mode flashsim --folds N``
  (to float32 rounding of genWeight/N; bit for bit for N = 1). Relative weights (``LHEScaleWeight``,
  ``LHEPdfWeight``, ``PSWeight``) are carried unscaled. An input without
  ``genWeight`` gets ``genWeight = 1`` (then /N).
* **Runs** — the input's ``Runs`` tree, unchanged; with several inputs their entries are
  concatenated (as ``hadd`` does: sum ``genEventSumw`` over the entries). Inputs without a
  ``Runs`` tree get one entry built from their events (genEventCount = events,
  genEventSumw(2) = Σ genWeight(²) of the input, before the 1/N).
* **FlashSimMetadata** — JSON provenance: the input's own metadata (for several inputs the
  keys on which they all agree; each input's in its record), and under ``"simulate"``: the
  package version, folds, genWeight scale, models (name, shipped or not, SHA-256 of
  ``card.json``, weights and efficiency map), device/precision, the inputs (file name, bytes,
  SHA-256, events — never an absolute path), the dropped branches and FlashSim's counts
  (Gen objects outside the acceptance, with non-finite inputs (not simulated), not
  reconstructed, clamped/redrawn/fallen back, below the reco threshold, written).

**Several inputs** are concatenated into one output, in the order given; they must have the
same ``Events`` branches with the same types, and either all or none a ``Runs`` tree with the
same branches (else a UserError naming the difference). A file given twice is refused (also
through a symbolic or hard link: :func:`flashsim_coffea.runner.fileset.file_identity`).

**Inputs checked** (:func:`_open_input`, a UserError naming the file): a file already written by
``flashsim simulate`` (a ``fold`` branch), a counter ``nX`` of a Gen collection that disagrees
with its ``X_*`` branches (:func:`flashsim_coffea.nanoaod.io.check_counters`), duplicate (run,
luminosityBlock, event) with ``folds`` > 1 (one warning with ``folds`` = 1:
:func:`flashsim_coffea.nanoaod.io.check_duplicates`).

**Safety** — the output location is checked before any work
(:func:`flashsim_coffea.nanoaod.io.check_output_path`, i.e.
:func:`flashsim_coffea.safe_write.check_output`); an existing output is replaced only with
``force``; an input is never overwritten (even with ``force``; under any spelling, symbolic or
hard link). The file is written under an unpredictable temporary name beside the output and
renamed at the end (:func:`flashsim_coffea.safe_write.atomic_write`), so a failure or a
SIGTERM leaves no truncated file (and an old output in place).

**Memory** — the inputs are read ``chunksize`` Gen events at a time (default
``max(1, 50_000 // folds)``, i.e. at most 50k output events per chunk), and a chunk's (event,
fold) pairs are simulated and written in consecutive event-major batches of at most
:data:`MAX_BATCH_PAIRS` (50k) pairs, so memory stays bounded at any ``folds`` (one Gen event
with 10⁶ folds is 20 batches). ``folds`` above :data:`MAX_FOLDS` (10⁶) is refused, naming the
output size. The noise of FlashSim is keyed on (run, luminosityBlock, event, object, fold):
the file's content does not depend on ``chunksize`` or on the batches.

**Unreadable inputs** — an input whose data cannot be read (truncated, corrupt basket) stops
the command with one line naming it (:func:`flashsim_coffea.nanoaod.io.reading`), leaving no
output.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from .errors import MissingBranchesError, UserError
from .folds import fold_weight
from .inject import INFO_LABELS
from .nanoaod.conventions import FOLD_SCALED_WEIGHTS
from .nanoaod.io import FOLD_BRANCH  # the fold branch's name: one home with the folded-file check

__all__ = ["DEFAULT_MAX_OUTPUT_EVENTS", "MAX_BATCH_PAIRS", "MAX_FOLDS", "COUNT_LABELS", "simulate_file",
           "dropped_branches", "refers_to", "written_fields"]

#: default bound on output events per chunk: chunksize = max(1, this // folds)
DEFAULT_MAX_OUTPUT_EVENTS = 50_000
#: (event, fold) pairs simulated and written at once (a chunk's pairs in consecutive batches)
MAX_BATCH_PAIRS = 50_000
#: the largest ``folds`` accepted (the output has events × folds entries)
MAX_FOLDS = 1_000_000
#: FlashSim's counts (``PreparedChunk.info``) as the report words them
COUNT_LABELS = INFO_LABELS  # what each FlashSim count means (flashsim_coffea.inject)


# --------------------------------------------------------------------------- branch plans
def refers_to(branch: str) -> str | None:
    """The collection a NanoAOD link branch points into (``Electron_jetIdx`` → ``"Jet"``,
    ``Jet_nMuons`` → ``"Muon"``): :func:`~flashsim_coffea.nanoaod.links.collection_link` (the target
    coffea's schemas declare, else the one read from the field's name); else None."""
    from .nanoaod.links import collection_link

    coll, _, name = branch.partition("_")
    link = collection_link(coll, name) if coll and name else None
    return link[0] if link is not None else None


def dropped_branches(names, replaced) -> list[str]:
    """The branches of ``names`` that :func:`simulate_file` drops when it replaces the
    collections ``replaced`` (e.g. ``{"Jet", "Muon"}``): their own branches and counters, and
    every other collection's index into them (module docstring)."""
    replaced = set(replaced)
    out = []
    for n in names:
        prefix = n.split("_", 1)[0]
        if prefix in replaced and "_" in n:
            out.append(n)  # Jet_pt, … (and uproot's per-branch counters nJet_pt of some skims: below)
        elif n in {f"n{c}" for c in replaced} or (n.startswith("n") and n[1:].split("_", 1)[0] in replaced and "_" in n):
            out.append(n)  # nJet, nJet_pt
        elif refers_to(n) in replaced:
            out.append(n)
    return out


@dataclass(frozen=True)
class _Item:
    """One output branch (group): ``flat`` (one value per event), ``lone`` (a jagged branch
    without a collection, e.g. LHEPdfWeight) or ``record`` (a collection ``X`` of ``X_field``)."""

    name: str
    kind: str
    members: tuple[tuple[str, str], ...]  # (field, input branch)


def _counters(tree) -> set[str]:
    """Names of the branches that count another branch (uproot rewrites counters itself)."""
    from .nanoaod.io import is_counter

    names = list(tree.keys())
    out = {n for n in names if is_counter(n, names)}
    for b in tree.values():
        cb = getattr(b, "count_branch", None)
        if cb is not None:
            out.add(cb.name)
    return out


def _plan(tree, drop: set[str]) -> list[_Item]:
    """Output items of ``tree``'s branches, in input order, skipping ``drop`` and the counters.

    A jagged branch ``X_f`` joins collection ``X`` named by its counter ``nX`` when that
    counter's name is a proper prefix of the branch (so ``Proton_multiRP_xi`` joins
    ``Proton_multiRP``), else the collection before its first underscore (``Jet_pt`` → Jet,
    also for skims with per-branch counters ``nJet_pt``); a jagged name without an inner
    underscore (``LHEPdfWeight``, ``LHEScaleSumw_``) is a lone jagged branch.
    """
    counters = _counters(tree)
    items: dict[str, list] = {}
    kinds: dict[str, str] = {}
    for b in tree.values():
        n = b.name
        if n in drop or n in counters:
            continue
        jagged = getattr(b, "count_branch", None) is not None or str(b.typename).endswith("[]")
        if not jagged:
            kinds[n], items[n] = "flat", [("", n)]
            continue
        cb = getattr(b, "count_branch", None)
        coll = None
        if cb is not None and cb.name.startswith("n") and n.startswith(cb.name[1:] + "_") and len(n) > len(cb.name):
            coll = cb.name[1:]
        elif "_" in n.strip("_"):
            coll = n.split("_", 1)[0]
        if coll is None:
            kinds[n], items[n] = "lone", [("", n)]
        else:
            kinds.setdefault(coll, "record")
            items.setdefault(coll, []).append((n[len(coll) + 1:], n))
    return [_Item(k, kinds[k], tuple(v)) for k, v in items.items()]


def _signature(tree, plan: list[_Item]) -> dict[str, str]:
    return {b: str(tree[b].typename) for it in plan for _, b in it.members}


def _assemble(arrays: dict, plan: list[_Item], where: str) -> dict[str, Any]:
    """uproot-writable columns (numpy for flat, awkward for jagged/records) from read branches."""
    out: dict[str, Any] = {}
    for it in plan:
        if it.kind == "flat":
            out[it.name] = ak.to_numpy(arrays[it.members[0][1]])
        elif it.kind == "lone":
            out[it.name] = ak.without_parameters(arrays[it.members[0][1]])
        else:
            try:
                out[it.name] = ak.zip({f: ak.without_parameters(arrays[b]) for f, b in it.members}, depth_limit=None)
            except ValueError as err:
                raise UserError(f"{where}: the {it.name}_* branches do not have the same number of entries per "
                                f"event ({err.__class__.__name__}); not a NanoAOD collection") from None
    return out


def _types(columns: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.type.content if isinstance(v, ak.Array) else v.dtype) for k, v in columns.items()}


# --------------------------------------------------------------------------- inputs and models
@dataclass
class _Input:
    path: Path
    entries: int
    plan: list[_Item]
    signature: dict[str, str]
    has_genweight: bool
    dropped: list[str]
    runs: dict[str, Any] | None = None  # assembled Runs columns
    runs_signature: dict[str, str] | None = None
    metadata: dict = field(default_factory=dict)


def _scrub(value):
    """Metadata without absolute paths: an absolute path string is replaced by its file name."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value) and os.sep in value:
        return Path(value).name
    return value


def _open_input(path: Path, required: list[str], replaced: set[str], folds: int = 1) -> _Input:
    """One input, checked (a UserError naming it): the ``required`` branches, not already a
    ``flashsim simulate`` output (a ``fold`` branch), counters of the Gen collections that agree
    with their branches, no duplicate event identity with ``folds`` > 1 (a warning with 1)."""
    import uproot

    from .nanoaod.io import check_counters, check_duplicates, check_not_folded, gen_collections, gen_hint, open_events, read_metadata

    tree = open_events(path)
    names = list(tree.keys())
    missing = [b for b in required if b not in names]
    if missing:
        raise MissingBranchesError(str(path), missing, "simulate it with FlashSim" + gen_hint(missing, names))
    check_not_folded(path, "simulate the file it was simulated from instead", tree, any_fold=True)
    check_counters(path, gen_collections(required), tree)
    check_duplicates(path, folds, tree=tree)
    drop = dropped_branches(names, replaced)
    plan = _plan(tree, set(drop))
    inp = _Input(path, int(tree.num_entries), plan, _signature(tree, plan), "genWeight" in names, drop)
    with uproot.open(path) as f:
        if "Runs" in f:
            rtree = f["Runs"]
            rplan = _plan(rtree, set())
            wanted = {b for it in rplan for _, b in it.members}
            inp.runs = _assemble(rtree.arrays(filter_name=wanted.__contains__, how=dict), rplan, f"{path}:Runs")
            inp.runs_signature = _signature(rtree, rplan)
    inp.metadata = _scrub(read_metadata(path))
    return inp


def _check_compatible(inputs: list[_Input]) -> None:
    first = inputs[0]
    for other in inputs[1:]:
        if other.signature != first.signature:
            a, b = first.signature, other.signature
            diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            shown = ", ".join(f"{k} ({a.get(k, 'absent')} vs {b.get(k, 'absent')})" for k in diff[:5])
            more = f" and {len(diff) - 5} more" if len(diff) > 5 else ""
            raise UserError(f"{first.path.name} and {other.path.name} have different Events branches: {shown}{more}; "
                            "simulate them into separate outputs")
        if other.has_genweight != first.has_genweight:
            raise UserError(f"{first.path.name} and {other.path.name}: only one of them has genWeight")
        if (other.runs is None) != (first.runs is None):
            with_runs, without = (first, other) if other.runs is None else (other, first)
            raise UserError(f"{with_runs.path.name} has a Runs tree but {without.path.name} does not; "
                            "simulate them into separate outputs")
        if other.runs_signature != first.runs_signature:
            diff = sorted(set(first.runs_signature) ^ set(other.runs_signature)) or sorted(
                k for k in first.runs_signature if first.runs_signature[k] != other.runs_signature.get(k))
            raise UserError(f"{first.path.name} and {other.path.name} have different Runs branches ({', '.join(diff)})")


# --------------------------------------------------------------------------- simulation
@contextmanager
def _quiet_chunk():
    """Per-chunk FlashSim warnings off: their counts are summed and reported once at the end."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"flashsim \w+:", category=UserWarning)
        yield


def _pair_batches(n_events: int, folds: int, max_pairs: int):
    """The (event, fold) pairs of a chunk in event-major order (e0f0, e0f1, …, e1f0, …), cut into
    consecutive :class:`~flashsim_coffea.folds.FoldBatch` of at most ``max_pairs`` pairs (a batch
    may begin or end within an event's folds), so that memory stays bounded at any ``folds``."""
    from .folds import FoldBatch

    total, step = n_events * folds, max(1, int(max_pairs))
    for first in range(0, total, step):
        pair = np.arange(first, min(total, first + step), dtype=np.int64)
        yield FoldBatch(pair // folds, pair % folds, folds, int(n_events))


def _flashsim_batch(chunk, batch) -> dict[str, ak.Array]:
    """{reco collection: FlashSim objects per (event, fold) pair of ``batch``} — what
    ``sim.inject(events, folds)`` puts in ``Jet``/``Muon`` for these pairs."""
    with _quiet_chunk():
        out = chunk.inject(batch)
    return {reco: out[reco] for reco in chunk.collections}


def written_fields(collection: str, fields) -> list[str]:
    """The FlashSim fields :func:`simulate_file` writes as ``collection_field``: all but those
    coffea's NanoAODSchema makes itself on reading — the global indices (``genJetIdxG`` beside
    ``genJetIdx``) and constant fields such as ``Jet.charge`` (0.0 for every NanoAOD jet)."""
    from coffea.nanoevents import NanoAODSchema

    fields = list(fields)
    made = set(getattr(NanoAODSchema, "full_like_items", {}))
    return [f for f in fields if not (f.endswith("G") and f[:-1] in fields) and f"{collection}_{f}" not in made]


def _record_of(collection: str, objects: ak.Array) -> ak.Array:
    """FlashSim objects as a plain record of the :func:`written_fields`."""
    keep = written_fields(collection, ak.fields(objects))
    return ak.zip({f: ak.without_parameters(objects[f]) for f in keep}, depth_limit=None)


def _chunk_events(path: Path, start: int, stop: int):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    from .runner.errors import CROSSREF_WARNING

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CROSSREF_WARNING, category=RuntimeWarning)
        return NanoEventsFactory.from_root(
            {str(path): "Events"}, schemaclass=NanoAODSchema, mode="virtual", entry_start=start, entry_stop=stop,
            metadata={"filename": str(path)},
        ).events()


def _runs_from_events(first_run: int, n: int, sumw: float, sumw2: float) -> dict[str, np.ndarray]:
    return {
        "run": np.array([first_run], dtype=np.uint32),
        "genEventCount": np.array([n], dtype=np.int64),
        "genEventSumw": np.array([sumw], dtype=np.float64),
        "genEventSumw2": np.array([sumw2], dtype=np.float64),
    }


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for k in parts[0]:
        vals = [p[k] for p in parts]
        out[k] = ak.concatenate(vals) if isinstance(vals[0], ak.Array) else np.concatenate(vals)
    return out


def _common_metadata(inputs: list[_Input]) -> dict:
    metas = [i.metadata for i in inputs]
    if len(metas) == 1:
        return dict(metas[0])
    return {k: v for k, v in metas[0].items() if all(k in m and m[k] == v for m in metas[1:])}


def simulate_file(
    inputs,
    output: str | os.PathLike,
    folds: int = 1,
    jets: str | os.PathLike | None | bool = "default",
    muons: str | os.PathLike | None | bool = "default",
    force: bool = False,
    chunksize: int | None = None,
    progress: bool = True,
    device: str = "cpu",
    precision: str = "float32",
    threads: int = 1,
    pileup_jets: str | os.PathLike | None | bool = "default",
) -> dict[str, Any]:
    """Write ``output``: the NanoAOD ``inputs`` (a path or a list) with FlashSim ``Jet``/``Muon``,
    ``folds`` reconstructions per Gen event (see the module docstring for what is kept, dropped
    and scaled). ``jets``/``muons``/``pileup_jets``: model folders, ``"default"`` (the shipped
    models) or ``False`` (pile-up jets only: none), as :class:`~flashsim_coffea.inject.FlashSim` takes them.
    ``chunksize``: Gen events read per chunk (default ``max(1, 50_000 // folds)``).

    Returns a summary: ``output``, ``inputs`` (names), ``events_in``, ``events_out``, ``folds``,
    ``objects`` ({"Jet": n, "Muon": n} written), ``counts`` (FlashSim's counts per collection,
    :data:`COUNT_LABELS`), ``dropped_branches``, ``seconds``.
    """
    import uproot
    from tqdm.auto import tqdm

    from . import __version__
    from .cards import file_record
    from .folds import check_folds
    from .inject import FlashSim
    from .nanoaod.io import METADATA_KEY, check_output_path, reading
    from .runner.fileset import file_identity
    from .safe_write import atomic_write
    from .sampling_precision import check_precision

    t0 = time.perf_counter()
    paths = [Path(inputs)] if isinstance(inputs, (str, os.PathLike)) else [Path(p) for p in inputs]
    if not paths:
        raise UserError("give at least one input NanoAOD file")
    folds = check_folds(folds)
    if chunksize is None:
        chunksize = max(1, DEFAULT_MAX_OUTPUT_EVENTS // folds)
    if isinstance(chunksize, bool) or not isinstance(chunksize, (int, np.integer)) or chunksize < 1:
        raise UserError(f"--chunksize must be an integer ≥ 1 (Gen events per chunk), got {chunksize!r}")
    precision = check_precision(precision)

    # 1. the output location, before any work
    out = check_output_path(output, force, inputs=paths)
    seen: dict[tuple, Path] = {}
    for p in paths:
        if not p.exists():
            raise UserError(f"{p}: no such file")
        key = file_identity(p)
        if key in seen:
            also = f" (also as {seen[key]})" if str(seen[key]) != str(p) else ""
            raise UserError(f"{p} is given twice{also}; each input event must appear once")
        seen[key] = p

    # 2. models (loaded and checked here), then the inputs
    if device != "cpu":
        from .flows.sampler import check_device

        check_device(device)
    sim = FlashSim(jets=jets, muons=muons, pileup_jets=pileup_jets, threads=threads, device=device, precision=precision)
    replaced = set(sim.models())
    required = sorted(set(sim.required_branches()) | {"run", "luminosityBlock", "event"})
    opened = []
    for p in paths:
        with reading(p):
            opened.append(_open_input(p, required, replaced, folds))
    _check_compatible(opened)
    total = sum(i.entries for i in opened)
    if total == 0:
        raise UserError(f"no events in {', '.join(p.name for p in paths)}: nothing to simulate")
    if folds > MAX_FOLDS:
        size = sum(p.stat().st_size for p in paths) * folds
        raise UserError(f"--folds {folds:,} is more than {MAX_FOLDS:,}: {', '.join(p.name for p in paths)} would become "
                        f"{total:,} × {folds:,} = {total * folds:,} events (about {size / 1e12:,.1f} TB at the "
                        "inputs' size per event); use fewer folds")
    dropped = sorted({b for i in opened for b in i.dropped})

    # 3. chunks → temporary file → rename
    counts: dict[str, dict[str, int]] = {}
    runs_parts: list[dict[str, Any]] = []
    n_out = 0
    wrote_tree = None
    # an unpredictable temporary name beside the output, renamed when complete (closed first)
    with atomic_write(out) as tmp, uproot.recreate(tmp, compression=uproot.ZSTD(5)) as fout:
        with tqdm(total=total, unit="ev", desc=f"simulate ×{folds}" if folds > 1 else "simulate", disable=not progress) as bar:
            for inp in opened:
                with reading(inp.path):
                    tree = uproot.open(inp.path)["Events"]
                wanted = {b for it in inp.plan for _, b in it.members}
                sumw = sumw2 = 0.0
                first_run = None
                for start in range(0, inp.entries, chunksize):
                    stop = min(inp.entries, start + chunksize)
                    with reading(inp.path):
                        read = tree.arrays(filter_name=wanted.__contains__, entry_start=start, entry_stop=stop, how=dict)
                    cols = _assemble(read, inp.plan, inp.path.name)
                    n = stop - start
                    if "genWeight" not in cols:
                        cols["genWeight"] = np.ones(n, dtype=np.float32)
                    w = np.asarray(cols["genWeight"], dtype=np.float64)
                    sumw, sumw2 = sumw + float(w.sum()), sumw2 + float((w**2).sum())
                    if first_run is None:
                        first_run = int(cols["run"][0])
                    with reading(inp.path), _quiet_chunk():
                        chunk = sim.prepare(_chunk_events(inp.path, start, stop))
                    for batch in _pair_batches(n, folds, MAX_BATCH_PAIRS):  # written as they come
                        with reading(inp.path):
                            objects = _flashsim_batch(chunk, batch)
                        block = _output_block(cols, objects, batch)
                        if wrote_tree is None:
                            wrote_tree = fout.mktree("Events", _types(block), title="Events")
                        wrote_tree.extend(block)
                        del objects, block
                    for reco, c in chunk.info.items():  # summed over the batches
                        acc = counts.setdefault(reco, {})
                        for k, v in c.items():
                            acc[k] = acc.get(k, 0) + int(v)
                    n_out += n * folds
                    bar.update(n)
                if inp.runs is not None:
                    runs_parts.append(inp.runs)
                elif inp.entries:
                    runs_parts.append(_runs_from_events(first_run, inp.entries, sumw, sumw2))
        runs = _concat(runs_parts)
        fout.mktree("Runs", _types(runs), title="Runs").extend(runs)
        objects_written = {reco: c.get("n_reco", 0) for reco, c in counts.items()}
        meta = _common_metadata(opened)
        meta["simulate"] = {
            "flashsim_coffea_version": __version__,
            "folds": folds,
            "genweight_scale": 1.0 / folds,
            "events_in": total,
            "events_out": n_out,
            "models": sim.provenance(),
            "device": device,
            "precision": precision,
            "inputs": [file_record(i.path, events=i.entries, **({"metadata": i.metadata} if len(opened) > 1 else {}))
                       for i in opened],
            "replaced": sorted(replaced),
            "dropped_branches": dropped,
            "counts": counts,
            "objects": objects_written,
        }
        fout[METADATA_KEY] = json.dumps(meta, sort_keys=True, default=float)
    return {
        "output": str(out),
        "inputs": [p.name for p in paths],
        "events_in": total,
        "events_out": n_out,
        "folds": folds,
        "objects": objects_written,
        "counts": counts,
        "dropped_branches": dropped,
        "seconds": time.perf_counter() - t0,
    }


def _output_block(cols: dict[str, Any], objects: dict[str, ak.Array], batch) -> dict[str, Any]:
    """The output columns of a batch of a chunk, one row per (event, fold) pair of ``batch``
    (event-major): the carried columns of the pair's event, the absolute weights / folds
    (:func:`~flashsim_coffea.folds.fold_weight`), ``fold`` after ``event``, then the FlashSim collections."""
    block: dict[str, Any] = {}
    for name, col in cols.items():
        if not batch.is_identity:
            col = col[batch.entry]
        if batch.folds > 1 and name in FOLD_SCALED_WEIGHTS:
            col = fold_weight(col, batch.folds)
        block[name] = col
        if name == "event":
            block[FOLD_BRANCH] = np.asarray(batch.fold, dtype=np.int32)
    for reco, objs in objects.items():
        block[reco] = _record_of(reco, objs)
    return block
