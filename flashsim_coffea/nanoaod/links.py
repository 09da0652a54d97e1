"""Cross-references between NanoAOD collections: chunk rows for global indices, and links
recomputed when FlashSim replaces a collection.

**Global indices.** coffea's ``NanoAODSchema`` resolves a cross-reference such as
``Muon.matched_gen`` through a *global* index (``genPartIdxG`` = local index + the offset of the
event's ``GenPart`` list in the chunk coffea built, ``events._events()``), so it stays right on
skimmed, sliced or repeated events. An object made after a skim must use the offsets of the
chunk, not those of the skimmed array: :func:`original_chunk` is that chunk, :func:`chunk_rows`
finds the row of every event in it, :func:`global_offsets` the offsets of a collection there.

**Links into replaced collections.** NanoAOD stores links as per-object local indices, named
``<target>Idx<suffix>`` (``Electron.jetIdx`` → ``Jet``, ``FatJet.muonIdx3SJ`` → ``Muon``,
``Jet.muonIdx1``/``muonIdx2`` → the first and second ``Muon``), and counts as ``n<Target>s``
(``Jet.nMuons``); coffea adds a global ``…G`` beside each local one. The target of a field is
read from its name (:func:`parse_link`), not from a fixed list, so every link of a file is
found — except where coffea's schemas declare another target (PFNano's ``FatJetPFCands_jetIdx``
points into ``FatJet``: :func:`collection_link`). When FlashSim replaces ``Jet``/``Muon``, such fields would name the wrong object;
:func:`relink` recomputes them against the new collection with NanoAOD's geometric rule:

    numbered index (suffix digit k: ``muonIdx1``, ``muonIdx2``) = the k-th target object with
        ΔR(source, target) < R in the target collection's order (pT order), else −1;
    other index (``jetIdx``, ``muonIdx3SJ``) = the closest target object with ΔR < R, else −1;
    count (``nMuons``) = the number of target objects with ΔR < R;
    R = 0.8 for AK8 sources (``FatJet*``), 0.4 otherwise

— the rule of the reference response (:mod:`flashsim_coffea.reference`), which uses
:func:`flat_links` itself.

(NanoAOD itself links through shared PF candidates; ΔR is the rule a simulation without
candidates can follow.) A link field of a source without ``eta``/``phi`` is set to −1. The global
``…G`` of a recomputed field is **removed**: coffea would resolve it in the file's original
collection, not in the FlashSim one — follow a link with the local index instead
(``events.Jet[ak.mask(idx, idx >= 0)]``).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

import awkward as ak
import numpy as np

from ..errors import UserError
from .conventions import EVENT_ID, delta_phi
from ..noise import hash_keys
from .pairs import closest_in_cone, pairs_within

__all__ = ["event_ids", "original_chunk", "chunk_rows", "global_offsets", "parse_link", "collection_link", "link_target", "link_fields", "relink", "flat_links", "AK8_CONE", "AK4_CONE"]

#: cone of the geometric link rule: AK8 sources (collections named FatJet*) and all others
AK8_CONE, AK4_CONE = 0.8, 0.4

_INDEX = re.compile(r"(?P<target>[a-z][A-Za-z0-9]*?)Idx(?P<suffix>[A-Za-z0-9]*)")
_COUNT = re.compile(r"n(?P<target>[A-Z][A-Za-z0-9]*?)s")


def original_chunk(events):
    """coffea's originally constructed chunk of ``events`` — what its collections' ``_events()``
    returns (the events record itself has no such method: the same two ``attrs`` are read here) —
    or None for arrays built without a NanoEventsFactory (global indices then refer to ``events``).
    Resolve it once: in eager mode the factory may read the chunk again on every call."""
    attrs = getattr(events, "attrs", None) or {}
    if "@original_array" in attrs:
        return attrs["@original_array"]
    factory = attrs.get("@events_factory")
    return factory.events() if factory is not None else None


def event_ids(events) -> list[np.ndarray]:
    """The event identity columns (run, luminosityBlock, event) as int64 numpy arrays."""
    return [np.asarray(ak.to_numpy(events[k])).astype(np.int64) for k in EVENT_ID]


def chunk_rows(events, chunk=None) -> np.ndarray:
    """Row of every event of ``events`` in the chunk coffea built (``chunk``: its
    :func:`original_chunk`, looked up if None): the identity for that chunk itself, the kept rows
    of a skim (``events[mask]``, ``events[a:b]``, repeated rows, concatenated skims of it). Found
    by the event identity (run, luminosityBlock, event); an identity that several events of the
    chunk share is resolved by their ``fold`` (a folded file) and Gen content (GenPart and GenJet
    counts), else refused with a UserError naming it (inject before skimming then)."""
    n = len(events)
    chunk = original_chunk(events) if chunk is None else chunk
    if chunk is None or chunk is events:
        return np.arange(n, dtype=np.int64)
    ids, oids = event_ids(events), event_ids(chunk)
    if len(chunk) == n and all(np.array_equal(a, b) for a, b in zip(ids, oids)):
        return np.arange(n, dtype=np.int64)
    order, first, last = _lookup(oids, ids)
    missing = first == last
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise UserError(f"event (run, luminosityBlock, event) = {tuple(int(c[i]) for c in ids)} is not in the chunk these "
                        f"events were read in ({int(missing.sum())} of {n}): FlashSim needs events read by coffea "
                        "(NanoEventsFactory or the Runner), skimmed or not, but not concatenated from several chunks")
    rows = order[np.minimum(first, len(order) - 1)]
    dup = np.flatnonzero(last - first > 1)
    if dup.size:
        rows[dup] = _resolve_duplicates(events, chunk, order, first, last, dup, ids)
    return rows.astype(np.int64)


def _lookup(oids: list[np.ndarray], ids: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order of the chunk's events by identity, first and last+1 position in that order of each
    identity of ``ids``): by a 64-bit hash of (run, luminosityBlock, event) — one sort of one
    integer column, 10x faster than sorting records — checked exactly, with the records as fallback."""
    okey, key = (hash_keys(0, "links/event", *c) for c in (oids, ids))
    order = np.argsort(okey, kind="stable")
    first, last = np.searchsorted(okey[order], key, side="left"), np.searchsorted(okey[order], key, side="right")
    hit = order[np.minimum(first, max(len(order) - 1, 0))] if len(order) else np.zeros(len(key), dtype=np.int64)
    found = first < last
    exact = all(np.array_equal(o[hit][found], c[found]) for o, c in zip(oids, ids))
    unique = len(order) < 2 or np.all(okey[order][1:] != okey[order][:-1]) or _distinct(oids, okey, order)
    if exact and unique:
        return order, first, last
    orec, rec = (np.rec.fromarrays(c, names=list(EVENT_ID)) for c in (oids, ids))  # a hash collision: exact records
    order = np.argsort(orec, kind="stable")
    return order, np.searchsorted(orec[order], rec, side="left"), np.searchsorted(orec[order], rec, side="right")


def _distinct(oids: list[np.ndarray], okey: np.ndarray, order: np.ndarray) -> bool:
    """Whether chunk events with equal hashes also have equal identities (no collision)."""
    same = np.flatnonzero(okey[order][1:] == okey[order][:-1])
    return all(np.array_equal(c[order][same], c[order][same + 1]) for c in oids)


def _resolve_duplicates(events, chunk, order, first, last, dup, ids) -> np.ndarray:
    """Rows of the events whose identity the chunk holds more than once: the candidate with the
    same ``fold`` and GenPart and GenJet counts, if exactly one has them."""
    def signature(arr):
        out = [np.asarray(ak.to_numpy(ak.num(arr[c], axis=1)), dtype=np.int64) for c in ("GenPart", "GenJet")
               if c in ak.fields(arr)]
        return out + ([np.asarray(ak.to_numpy(arr["fold"]), dtype=np.int64)] if "fold" in ak.fields(arr) else [])

    mine, theirs = signature(events[dup]), signature(chunk)
    rows = np.empty(dup.size, dtype=np.int64)
    for j, i in enumerate(dup):
        cand = order[first[i]:last[i]]
        same = [c for c in cand if all(t[c] == m[j] for t, m in zip(theirs, mine))]
        if len(same) != 1:
            raise UserError(f"event (run, luminosityBlock, event) = {tuple(int(c[i]) for c in ids)} appears "
                            f"{last[i] - first[i]} times in its chunk with the same Gen content, so FlashSim cannot tell "
                            "which one a skimmed row is: inject into the unskimmed events (then skim), or give the "
                            "events unique numbers")
        rows[j] = same[0]
    return rows


def global_offsets(chunk, collection: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Per row: the index of the first ``collection`` object of chunk event ``rows`` (all events
    if None) in the ``chunk`` coffea built (:func:`original_chunk`; add it to a local index to get
    coffea's global index, as ``genPartIdxG``)."""
    counts = np.asarray(ak.to_numpy(ak.num(chunk[collection], axis=1)), dtype=np.int64)
    starts = np.cumsum(counts) - counts
    return starts if rows is None else starts[rows]


def parse_link(field: str) -> tuple[str, str, int] | None:
    """``(target collection, kind, rank)`` if the name ``field`` is a NanoAOD link: kind
    ``"nth"`` (``muonIdx2``: rank 0-based, suffix digit k → k − 1), ``"closest"`` (``jetIdx``,
    ``muonIdx3SJ``), ``"global"`` (coffea's ``…G``) or ``"count"`` (``nMuons``); None otherwise. The target is
    the name before ``Idx`` with its first letter capitalised (``subJetIdx1`` → ``SubJet``)."""
    m = _INDEX.fullmatch(field)
    if m:
        target, suffix = m["target"][0].upper() + m["target"][1:], m["suffix"]
        if suffix.endswith("G"):
            return target, "global", 0
        if suffix.isdigit() and int(suffix) > 0:
            return target, "nth", int(suffix) - 1
        return target, "closest", 0
    m = _COUNT.fullmatch(field)
    return (m["target"], "count", 0) if m else None


@functools.cache
def _declared() -> dict[str, str]:
    """The cross-references coffea's schemas declare (NanoAOD, PFNano): branch → target. They win
    over the name rule where the name misleads (``FatJetPFCands_jetIdx`` → ``FatJet``)."""
    from coffea.nanoevents import NanoAODSchema, PFNanoAODSchema

    return {**NanoAODSchema.all_cross_references, **PFNanoAODSchema.all_cross_references}


def collection_link(collection: str, field: str) -> tuple[str, str, int] | None:
    """:func:`parse_link` of ``collection``'s ``field``, with the target coffea's schemas declare
    for ``collection_field`` (or, for a global ``…G``, for its local field) where they declare one."""
    link = parse_link(field)
    if link is None:
        return None
    declared = _declared().get(f"{collection}_{field[:-1] if link[1] == 'global' else field}")
    return link if declared is None else (declared, *link[1:])


def link_target(collection: str, field: str, replaced: Iterable[str]) -> tuple[str, str, int] | None:
    """:func:`collection_link` if it links into one of ``replaced``, else None."""
    link = collection_link(collection, field)
    return link if link is not None and link[0] in set(replaced) else None


def link_fields(events, replaced: Iterable[str]) -> dict[str, list[str]]:
    """Per collection of ``events``: its fields that link into a ``replaced`` collection."""
    replaced = set(replaced)
    out: dict[str, list[str]] = {}
    for coll in ak.fields(events):
        fields = _collection_fields(events, coll)
        hits = [f for f in fields if link_target(coll, f, replaced) is not None]
        if hits:
            out[coll] = hits
    return out


def _collection_fields(events, coll: str) -> list[str]:
    """Fields of a jagged record collection (empty for event-level fields and singletons)."""
    form = _unindexed(events[coll].layout.form)
    if not isinstance(form, (ak.forms.ListOffsetForm, ak.forms.ListForm)):
        return []
    content = _unindexed(form.content)
    return list(content.fields) if isinstance(content, ak.forms.RecordForm) else []


def _unindexed(form):
    """The form below any indexed (skim) or option layers."""
    while isinstance(form, (ak.forms.IndexedForm, ak.forms.IndexedOptionForm)):
        form = form.content
    return form


def relink(events, replaced: Iterable[str], add: dict[str, Iterable[str]] | None = None):
    """``events`` with every link into the ``replaced`` collections recomputed by the geometric
    rule of the module docstring and their global ``…G`` removed; ``add``: link fields to create
    as well (collection → field names, e.g. FlashSim ``Jet``: ``muonIdx1``, ``muonIdx2``,
    ``nMuons``). Collections are otherwise unchanged."""
    present = ak.fields(events)
    replaced = [r for r in replaced if r in present]
    todo = {coll: [(f, link_target(coll, f, replaced)) for f in names] for coll, names in link_fields(events, replaced).items()}
    for coll, names in (add or {}).items():
        if coll in present:  # created links may point into any collection the events hold
            new = [(f, link_target(coll, f, present)) for f in names if f not in dict(todo.get(coll, []))]
            todo[coll] = [*todo.get(coll, []), *[(f, t) for f, t in new if t is not None]]
    for coll, names in todo.items():
        fields = _collection_fields(events, coll)
        source = events[coll]
        counts = np.asarray(ak.to_numpy(ak.num(source, axis=1)), dtype=np.int64)
        for name, (target, kind, rank) in names:
            if kind == "global":
                events = ak.without_field(events, (coll, name))
                continue
            if {"eta", "phi"} <= set(fields) and {"eta", "phi"} <= set(_collection_fields(events, target)):
                flat = _link(source, events[target], counts, kind, rank, AK8_CONE if coll.startswith("FatJet") else AK4_CONE)
            else:  # no directions, no rule: no link
                flat = np.full(int(counts.sum()), 0 if kind == "count" else -1, dtype=np.int64)
            old = source[name] if name in fields else None
            dtype = _leaf_dtype(old) if old is not None else np.dtype(np.int32)
            events = ak.with_field(events, ak.unflatten(flat.astype(dtype), counts), where=(coll, name))
    return events


def _leaf_dtype(array) -> np.dtype:
    """The numpy dtype of a jagged numeric field, read from its form (nothing is loaded)."""
    form = array.layout.form
    while hasattr(form, "content"):
        form = form.content
    return np.dtype(ak.types.numpytype.primitive_to_dtype(form.primitive))


def _link(source, target, counts: np.ndarray, kind: str, rank: int, cone: float) -> np.ndarray:
    """:func:`flat_links` of two jagged collections (flat, per source object)."""
    def flat(objs, k):
        return np.asarray(ak.to_numpy(ak.flatten(objs[k], axis=1)), dtype=np.float64)

    t_counts = np.asarray(ak.to_numpy(ak.num(target, axis=1)), dtype=np.int64)
    (out,) = flat_links(flat(source, "eta"), flat(source, "phi"), counts, flat(target, "eta"), flat(target, "phi"),
                        t_counts, [(kind, rank)], cone)
    return out


def flat_links(a_eta: np.ndarray, a_phi: np.ndarray, a_counts: np.ndarray, b_eta: np.ndarray, b_phi: np.ndarray,
               b_counts: np.ndarray, links: Iterable[tuple[str, int]], cone: float) -> list[np.ndarray]:
    """The links of flat, event-major source objects a into targets b (module docstring's rule),
    one int64 array per ``(kind, rank)`` of ``links`` (:func:`parse_link`'s kinds): the local
    index of the target in its event (−1 if none), or for ``"count"`` the number within ``cone``."""
    a_counts, b_counts = (np.asarray(c, dtype=np.int64) for c in (a_counts, b_counts))
    ia, ib = pairs_within(a_counts, b_counts)
    dr = np.hypot(a_eta[ia] - b_eta[ib], delta_phi(a_phi[ia], b_phi[ib]))
    inside = dr < cone
    n_a = int(a_counts.sum())
    b_starts = np.cumsum(b_counts) - b_counts
    a_start = np.repeat(b_starts, a_counts)  # per a: the first target index of its event
    out = []
    for kind, rank in links:
        if kind == "count":
            out.append(np.bincount(ia[inside], minlength=n_a).astype(np.int64))
            continue
        # "nth": ranked by target index among those inside (pairs are target-ordered); "closest": by ΔR
        key = np.where(inside, ib.astype(np.float64), np.inf) if kind == "nth" else dr
        best = closest_in_cone(ia, ib, key, n_a, rank=rank, cone=np.inf if kind == "nth" else cone)
        out.append(np.where(best >= 0, best - a_start, -1))
    return out
