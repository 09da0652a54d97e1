"""Cross-references between NanoAOD collections: chunk rows for global indices, and links
recomputed when FlashSim replaces a collection.

**Global indices.** coffea's ``NanoAODSchema`` resolves a cross-reference such as
``Muon.matched_gen`` through a *global* index (``genPartIdxG`` = local index + the offset of the
event's ``GenPart`` list in the chunk coffea built, ``events._events()``), so it stays right on
skimmed, sliced or repeated events. An object made after a skim must use the offsets of the
chunk, not those of the skimmed array: :func:`chunk_rows` finds the row of every event in that
chunk, :func:`global_offsets` the offsets of a collection there.

**Links into replaced collections.** NanoAOD stores links as per-object local indices, named
``<target>Idx<suffix>`` (``Electron.jetIdx`` → ``Jet``, ``FatJet.muonIdx3SJ`` → ``Muon``,
``Jet.muonIdx1``/``muonIdx2`` → the first and second ``Muon``), and counts as ``n<Target>s``
(``Jet.nMuons``); coffea adds a global ``…G`` beside each local one. The target of a field is
read from its name (:func:`link_target`), not from a fixed list, so every link of a file is
found. When FlashSim replaces ``Jet``/``Muon``, such fields would name the wrong object;
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

import re
from collections.abc import Iterable

import awkward as ak
import numpy as np

from ..errors import UserError
from .conventions import EVENT_ID, delta_phi
from .pairs import closest_in_cone, pairs_within

__all__ = ["chunk_rows", "global_offsets", "parse_link", "link_target", "link_fields", "relink", "flat_links", "AK8_CONE", "AK4_CONE"]

#: cone of the geometric link rule: AK8 sources (collections named FatJet*) and all others
AK8_CONE, AK4_CONE = 0.8, 0.4

_INDEX = re.compile(r"(?P<target>[a-z][A-Za-z0-9]*?)Idx(?P<suffix>[A-Za-z0-9]*)")
_COUNT = re.compile(r"n(?P<target>[A-Z][A-Za-z0-9]*?)s")


def _original(events):
    """coffea's originally constructed chunk of ``events`` — what its collections' ``_events()``
    returns (the events record itself has no such method: the same two ``attrs`` are read here) —
    or None for arrays built without a NanoEventsFactory (global indices then refer to ``events``)."""
    attrs = getattr(events, "attrs", None) or {}
    if "@original_array" in attrs:
        return attrs["@original_array"]
    factory = attrs.get("@events_factory")
    return factory.events() if factory is not None else None


def _ids(events) -> list[np.ndarray]:
    return [np.asarray(ak.to_numpy(events[k])).astype(np.int64) for k in EVENT_ID]


def chunk_rows(events) -> np.ndarray:
    """Row of every event of ``events`` in the chunk coffea built (``events._events()``): the
    identity for that chunk itself, the kept rows of a skim (``events[mask]``, ``events[a:b]``,
    repeated rows). Found by the event identity (run, luminosityBlock, event); an identity that
    several events of the chunk share is resolved by their Gen content (GenPart and GenJet
    counts), else refused with a UserError naming it (inject before skimming then)."""
    n = len(events)
    orig = _original(events)
    if orig is None or orig is events:
        return np.arange(n, dtype=np.int64)
    ids = _ids(events)
    oids = _ids(orig)
    if len(orig) == n and all(np.array_equal(a, b) for a, b in zip(ids, oids)):
        return np.arange(n, dtype=np.int64)
    okey = np.rec.fromarrays(oids, names=list(EVENT_ID))
    key = np.rec.fromarrays(ids, names=list(EVENT_ID))
    order = np.argsort(okey, kind="stable")
    skey = okey[order]
    first = np.searchsorted(skey, key, side="left")
    last = np.searchsorted(skey, key, side="right")
    missing = first == last
    if missing.any():
        i = int(np.flatnonzero(missing)[0])
        raise UserError(f"event (run, luminosityBlock, event) = {tuple(int(c[i]) for c in ids)} is not in the chunk these "
                        f"events were read in ({int(missing.sum())} of {n}): FlashSim needs events read by coffea "
                        "(NanoEventsFactory or the Runner), skimmed or not, but not concatenated from several chunks")
    rows = order[np.minimum(first, len(order) - 1)]
    dup = np.flatnonzero(last - first > 1)
    if dup.size:
        rows[dup] = _resolve_duplicates(events, orig, order, first, last, dup, ids)
    return rows.astype(np.int64)


def _resolve_duplicates(events, orig, order, first, last, dup, ids) -> np.ndarray:
    """Rows of the events whose identity the chunk holds more than once: the candidate with the
    same GenPart and GenJet counts, if exactly one has them."""
    def counts(arr, rows=None):
        cols = [c for c in ("GenPart", "GenJet") if c in ak.fields(arr)]
        out = [np.asarray(ak.to_numpy(ak.num(arr[c], axis=1)), dtype=np.int64) for c in cols]
        return out if rows is None else [o[rows] for o in out]

    mine = counts(events[dup])
    theirs = counts(orig)
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


def global_offsets(events, collection: str, rows: np.ndarray | None = None) -> np.ndarray:
    """Per event of ``events``: the index of its first ``collection`` object in the chunk coffea
    built (add it to a local index to get coffea's global index, as ``genPartIdxG``).
    ``rows``: :func:`chunk_rows` of ``events`` if known."""
    orig = _original(events)
    base = events if orig is None else orig
    counts = np.asarray(ak.to_numpy(ak.num(base[collection], axis=1)), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    if orig is None:
        return starts
    return starts[chunk_rows(events) if rows is None else rows]


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


def link_target(field: str, replaced: Iterable[str]) -> tuple[str, str, int] | None:
    """:func:`parse_link` of ``field`` if it links into one of ``replaced``, else None."""
    link = parse_link(field)
    return link if link is not None and link[0] in set(replaced) else None


def link_fields(events, replaced: Iterable[str]) -> dict[str, list[str]]:
    """Per collection of ``events``: its fields that link into a ``replaced`` collection."""
    replaced = set(replaced)
    out: dict[str, list[str]] = {}
    for coll in ak.fields(events):
        fields = _collection_fields(events, coll)
        hits = [f for f in fields if link_target(f, replaced) is not None]
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
    todo = {coll: [(f, link_target(f, replaced)) for f in names] for coll, names in link_fields(events, replaced).items()}
    for coll, names in (add or {}).items():
        if coll in present:  # created links may point into any collection the events hold
            new = [(f, link_target(f, present)) for f in names if f not in dict(todo.get(coll, []))]
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
