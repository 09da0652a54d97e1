"""Matched (Gen, reco) training pairs from NanoAOD, columnar.

For a spec with reco collection R, match branch ``R_<match>`` pointing into the Gen source
collection S (``Jet_genJetIdx`` → GenJet, ``Muon_genPartIdx`` → GenPart), a reco object is
kept when its index i satisfies, in this order (the first failing rule is the drop reason):

1. ``unmatched``:        i ≥ 0 (NanoAOD writes −1 for unmatched objects);
2. ``gen_not_stored``:   i < nS (NanoAOD may point beyond the stored GenJets, pt > 10 GeV);
3. ``gen_not_selected``: S[i] is in the spec's simulated Gen collection (e.g. a status-1 muon);
4. ``duplicate``:        no earlier reco object of the event matched the same Gen object;
5. ``nonfinite``:        every conditioning value and target is finite;
6. ``not_admissible``:   integer/ordinal targets take an admissible value.

Targets with ``dequantize="rounding"`` fill the NanoAOD rounding cell of their reco value
(:meth:`.ObjectSpec.fill_rounding_cells`).

Real targets outside their ``bounds`` (except spike values) are clipped and counted per
target in ``clipped``; values below the bound of a ``below`` spike are set to the spike value
(counted as ``"<name> (sentinel -> v)"``). Everything is done on whole chunks with awkward/numpy.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import awkward as ak
import numpy as np

from flashsim_coffea import __version__
from flashsim_coffea.cards import file_record
from flashsim_coffea.errors import MissingBranchesError, UserError
from flashsim_coffea.nanoaod.conventions import EVENT_ID
from flashsim_coffea.reference import respond
from flashsim_coffea.reference.resimulate import GEN_BRANCHES, reference_fingerprint, resimulate_events

from .gen import branch
from .spec import ObjectSpec

__all__ = ["Extracted", "extract_events", "extract_files", "extract_synthetic", "DROP_REASONS",
           "Unmatched", "extract_unmatched_events", "extract_pileup_synthetic", "pileup_gen_events"]

DROP_REASONS = ("unmatched", "gen_not_stored", "gen_not_selected", "duplicate", "nonfinite", "not_admissible")
KEY_NAMES = (*EVENT_ID, "object")


@dataclass
class Extracted:
    """Flat matched pairs: conditioning (N, C), targets (N, T), noise keys and Gen fields."""

    cond: np.ndarray
    targets: np.ndarray
    keys: dict[str, np.ndarray]
    gen: dict[str, np.ndarray]
    drops: Counter = field(default_factory=Counter)
    clipped: Counter = field(default_factory=Counter)
    n_reco: int = 0
    n_events: int = 0

    def __len__(self) -> int:
        return len(self.cond)

    @staticmethod
    def concatenate(parts: list["Extracted"], spec: ObjectSpec) -> "Extracted":
        if not parts:
            return Extracted(np.zeros((0, len(spec.conditioning))), np.zeros((0, len(spec.targets))), {}, {})
        out = Extracted(
            np.concatenate([p.cond for p in parts]),
            np.concatenate([p.targets for p in parts]),
            {k: np.concatenate([p.keys[k] for p in parts]) for k in parts[0].keys},
            {k: np.concatenate([p.gen[k] for p in parts]) for k in parts[0].gen},
        )
        for p in parts:
            out.drops.update(p.drops)
            out.clipped.update(p.clipped)
            out.n_reco += p.n_reco
            out.n_events += p.n_events
        return out


def extract_events(spec: ObjectSpec, events, draw: int = 0, fill_rounding: bool = True) -> Extracted:
    """Matched pairs of one chunk of events (uproot arrays or NanoEvents); ``draw`` numbers the
    reference draw (keys the filling of rounding cells, :meth:`.ObjectSpec.fill_rounding_cells`).
    ``fill_rounding=False`` keeps the stored (rounded) values: what validation compares."""
    ctx = spec.context(events)
    objs = ctx.objects()
    cond_jagged = spec.conditioning_jagged(ctx)
    idx = branch(events, f"{spec.reco}_{spec.match}")
    n_source = ak.num(branch(events, f"{spec.simulated.prefix}_{spec.simulated.fields[0]}"), axis=1)
    n_reco = int(ak.sum(ak.num(idx, axis=1)))
    drops: Counter = Counter()

    # positions of the matched Gen objects inside the simulated collection
    pairs = ak.cartesian({"r": idx, "g": objs["index"]}, axis=1, nested=True)
    eq = pairs["r"] == pairs["g"]
    found = ak.any(eq, axis=2)
    pos = ak.argmax(eq, axis=2)
    neg = idx < 0
    beyond = (~neg) & (idx >= n_source)
    notsel = (~neg) & (~beyond) & (~found)
    drops["unmatched"] += int(ak.sum(neg))
    drops["gen_not_stored"] += int(ak.sum(beyond))
    drops["gen_not_selected"] += int(ak.sum(notsel))
    keep = found & (~neg)

    # flatten the kept reco objects and their Gen positions
    pos_k = pos[keep]
    counts = ak.to_numpy(ak.num(pos_k, axis=1))
    obj_offsets = np.concatenate([[0], np.cumsum(ak.to_numpy(ak.num(objs, axis=1)))])[:-1]
    gpos = np.asarray(ak.to_numpy(ak.flatten(pos_k, axis=1)), dtype=np.int64) + np.repeat(obj_offsets, counts)
    first = np.zeros(len(gpos), dtype=bool)
    first[np.unique(gpos, return_index=True)[1]] = True
    drops["duplicate"] += int((~first).sum())

    cond = np.stack(
        [np.asarray(ak.to_numpy(ak.flatten(c, axis=1)), dtype=np.float64)[gpos] for c in cond_jagged.values()], axis=1
    )
    gen = {f: np.asarray(ak.to_numpy(ak.flatten(objs[f], axis=1)), dtype=np.float64)[gpos] for f in spec.rebuild_gen_fields()}
    reco = {t.branch: np.asarray(ak.to_numpy(ak.flatten(branch(events, spec.reco_branch(t))[keep], axis=1)),
                                 dtype=np.float64) for t in spec.targets}
    targets = spec.targets_from_reco(reco, gen) if spec.targets else np.zeros((len(gpos), 0))
    ev_keys = {
        k: np.repeat(np.asarray(ak.to_numpy(branch(events, k))).astype(np.int64), counts) for k in EVENT_ID
    }
    ev_keys["object"] = np.asarray(ak.to_numpy(ak.flatten(objs["index"], axis=1)), dtype=np.int64)[gpos]
    if fill_rounding:
        targets = spec.fill_rounding_cells(targets, reco, gen, ev_keys, draw)

    with np.errstate(invalid="ignore"):
        finite = np.isfinite(cond).all(axis=1) & np.isfinite(targets).all(axis=1)
    ok = first & finite
    drops["nonfinite"] += int((first & ~finite).sum())
    clipped: Counter = Counter()
    admissible = check_targets(spec, targets, ok, clipped)
    drops["not_admissible"] += int((ok & ~admissible).sum())
    ok &= admissible

    return Extracted(
        cond[ok],
        targets[ok],
        {k: v[ok] for k, v in ev_keys.items()},
        {k: v[ok] for k, v in gen.items()},
        drops,
        clipped,
        n_reco=n_reco,
        n_events=len(idx),
    )


def check_targets(spec: ObjectSpec, targets: np.ndarray, ok: np.ndarray, clipped: Counter) -> np.ndarray:
    """Which rows have admissible targets (ordinals in their set, integers on their lattice within
    bounds); real targets of the rows ``ok`` outside their bounds are clipped in place and counted
    in ``clipped`` (values below a ``below`` spike's bound become the spike value, counted as
    ``"<name> (sentinel -> v)"``)."""
    admissible = np.ones(len(ok), dtype=bool)
    for j, t in enumerate(spec.targets):
        x = targets[:, j]
        if t.kind == "ordinal":
            admissible &= np.isin(x, np.asarray(t.values))
        elif t.kind == "integer":
            n = t.lattice_index(x)  # lattice values are stored with NanoAOD precision: tolerance
            admissible &= (np.abs(n - np.rint(n)) < (0.1 if t.step > 0 else 0.0) + 1e-9)
            admissible &= (x >= t.bounds[0]) & (x <= t.bounds[1])
        else:
            lo, hi = t.bounds
            spike = t.spike.matches(x, lo) if t.spike is not None else np.zeros(len(x), dtype=bool)
            if t.spike is not None and t.spike.below:
                remap = ok & spike & (x != t.spike.value)
                if remap.any():
                    clipped[f"{t.name} (sentinel -> {t.spike.value:g})"] += int(remap.sum())
                    targets[remap, j] = t.spike.value
            out = ok & ~spike & ((x < lo) | (x > hi))
            if out.any():
                clipped[t.name] += int(out.sum())
                targets[out, j] = np.clip(x[out], lo, hi)
    return admissible


def required_branches(spec: ObjectSpec) -> list[str]:
    return sorted(set(spec.gen_branches()) | set(spec.reco_branches()))


def _check_branches(path: str, tree, spec: ObjectSpec) -> None:
    have = set(tree.keys())
    missing = [b for b in required_branches(spec) if b not in have]
    if missing:
        raise MissingBranchesError(path, missing, f"extract {spec.name!r} training pairs (is it MC NanoAOD with Gen collections?)")


def extract_files(
    spec: ObjectSpec, files: list[str], step_size: int = 20_000, progress: bool = True, max_objects: int | None = None,
    resimulate: int | list[int] | None = None,
) -> tuple[Extracted, dict]:
    """Extract matched pairs from NanoAOD files; returns the data and a provenance dict.

    ``resimulate=SEED`` ignores the files' reco collections and pairs their Gen objects with a
    fresh reference-response draw (:func:`~flashsim_coffea.reference.resimulate.resimulate_events`); a list of seeds makes one
    draw per seed (more reco samples of the same Gen objects).
    """
    seeds = [resimulate] if isinstance(resimulate, int) else resimulate
    import uproot
    from tqdm.auto import tqdm

    trees = []
    for f in files:
        try:
            tree = uproot.open(f)["Events"]
        except (OSError, KeyError, ValueError) as err:
            raise UserError(f"{f}: cannot read an Events tree ({err})") from err
        if resimulate is None:
            _check_branches(f, tree, spec)
            branches = required_branches(spec)
        else:
            branches = sorted(k for k in tree.keys() if GEN_BRANCHES.match(k))
        trees.append((f, tree, branches))
    total = sum(t.num_entries for _, t, _ in trees)
    parts: list[Extracted] = []
    bar = tqdm(total=total, unit="ev", desc=f"extract {spec.name}", disable=not progress)
    n = 0
    for f, tree, branches in trees:
        for chunk in tree.iterate(branches, step_size=step_size, library="ak"):
            for seed in seeds or [None]:
                events = chunk if seed is None else resimulate_events(chunk, seed, source=f)
                part = extract_events(spec, events, draw=seed or 0)
                parts.append(part)
                n += len(part)
            bar.update(len(chunk))
            bar.set_postfix(objects=n, dropped=sum(sum(p.drops.values()) for p in parts))
            if max_objects is not None and n >= max_objects:
                break
        if max_objects is not None and n >= max_objects:
            break
    bar.close()
    data = Extracted.concatenate(parts, spec)
    data.n_events //= max(1, len(seeds or [None]))  # each event was counted once per draw
    if max_objects is not None and len(data) > max_objects:
        data = Extracted(data.cond[:max_objects], data.targets[:max_objects],
                         {k: v[:max_objects] for k, v in data.keys.items()},
                         {k: v[:max_objects] for k, v in data.gen.items()},
                         data.drops, data.clipped, data.n_reco, data.n_events)
    provenance = {
        "spec": spec.name,
        "spec_hash": spec.hash(),
        "extraction_hash": spec.extraction_hash(),
        "files": [file_record(f, entries=t.num_entries) for f, t, _ in trees],
        "reco": "file" if not seeds else f"reference.respond(seed {', '.join(map(str, seeds))}) on the files' Gen",
        "reference_fingerprint": None if not seeds else reference_fingerprint(),
        "n_events": data.n_events,
        "n_reco": data.n_reco,
        "n_objects": len(data),
        "dropped": {r: int(data.drops.get(r, 0)) for r in DROP_REASONS},
        "clipped": dict(data.clipped),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "package_version": __version__,
    }
    return data, provenance


def extract_synthetic(spec: ObjectSpec, n_events: int, gen_seed: int = 1, ref_seed: int = 11,
                      chunk: int = 50_000, progress: bool = False) -> tuple[Extracted, dict]:
    """Matched pairs from synthetic Gen events (:func:`flashsim_coffea.generate.synthetic.synthetic_gen`:
    numpy, broad pT/η/flavour/muon coverage, not physics) through the reference response, extracted
    exactly like :func:`extract_events`. Used for tests and to pre-train flows before fine-tuning on
    generated (Pythia) events; fully determined by the two seeds."""
    from tqdm.auto import tqdm

    from flashsim_coffea.generate.synthetic import synthetic_gen

    parts = []
    for i, start in enumerate(tqdm(range(0, n_events, chunk), desc=f"synthetic {spec.name}", disable=not progress)):
        gen = synthetic_gen(min(chunk, n_events - start), seed=gen_seed * 100_000 + i)
        events = ak.Array({**gen, **respond(gen, seed=ref_seed)})
        parts.append(extract_events(spec, events))
    data = Extracted.concatenate(parts, spec)
    provenance = {
        "spec": spec.name,
        "spec_hash": spec.hash(),
        "source": f"synthetic_gen({n_events} events, seed {gen_seed}) + reference.respond(seed {ref_seed})",
        "reference_fingerprint": reference_fingerprint(),
        "n_events": data.n_events,
        "n_reco": data.n_reco,
        "n_objects": len(data),
        "dropped": dict(data.drops),
        "clipped": dict(data.clipped),
    }
    return data, provenance


# -- objects without a Gen counterpart (pile-up jets) -------------------------------------------


@dataclass
class Unmatched:
    """Training data of an event-level spec (:mod:`.pileup_jets`): the unmatched reco objects
    (``objects``: conditioning = their event's row, targets, keys with object = −1 − i for the
    i-th unmatched object of the event in stored order) and, per event, its conditioning row
    (``event_cond``) and number of unmatched objects (``counts``, what the count model learns)."""

    objects: Extracted
    event_cond: np.ndarray
    counts: np.ndarray

    @staticmethod
    def concatenate(parts: list["Unmatched"], spec: ObjectSpec) -> "Unmatched":
        return Unmatched(Extracted.concatenate([p.objects for p in parts], spec),
                         np.concatenate([p.event_cond for p in parts]) if parts else np.zeros((0, len(spec.conditioning))),
                         np.concatenate([p.counts for p in parts]) if parts else np.zeros(0, dtype=np.int64))


def extract_unmatched_events(spec: ObjectSpec, events, draw: int = 0) -> Unmatched:
    """Reco objects with ``<reco>_<match> < 0`` (NanoAOD's "no Gen match": pile-up jets) of one
    chunk, with their event's conditioning (:func:`.pileup_jets.event_conditioning`). The same
    checks as :func:`extract_events` (non-finite, inadmissible → dropped; out of bounds →
    clipped, counted); ``counts`` are the unmatched objects per event before those drops."""
    from .pileup_jets import event_conditioning

    ev_cond = event_conditioning(spec, events)
    idx = branch(events, f"{spec.reco}_{spec.match}")
    unmatched = idx < 0
    counts = ak.to_numpy(ak.sum(unmatched, axis=1)).astype(np.int64)
    n_reco = int(ak.sum(ak.num(idx, axis=1)))
    evt = np.repeat(np.arange(len(counts)), counts)
    first = np.concatenate([[0], np.cumsum(counts)])[:-1]
    slot = np.arange(evt.size, dtype=np.int64) - first[evt]
    cond = ev_cond[evt]
    reco = {t.branch: np.asarray(ak.to_numpy(ak.flatten(branch(events, spec.reco_branch(t))[unmatched], axis=1)),
                                 dtype=np.float64) for t in spec.targets}
    targets = spec.targets_from_reco(reco, {}) if spec.targets else np.zeros((evt.size, 0))
    keys = {k: np.asarray(ak.to_numpy(branch(events, k))).astype(np.int64)[evt] for k in EVENT_ID}
    keys["object"] = -1 - slot
    targets = spec.fill_rounding_cells(targets, reco, {}, keys, draw)
    drops: Counter = Counter({"matched": n_reco - evt.size})
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(cond).all(axis=1) & np.isfinite(targets).all(axis=1)
    drops["nonfinite"] += int((~ok).sum())
    clipped: Counter = Counter()
    admissible = check_targets(spec, targets, ok, clipped)
    drops["not_admissible"] += int((ok & ~admissible).sum())
    ok &= admissible
    objects = Extracted(cond[ok], targets[ok], {k: v[ok] for k, v in keys.items()}, {}, drops, clipped,
                        n_reco=n_reco, n_events=len(counts))
    return Unmatched(objects, ev_cond, counts)


def pileup_gen_events(n_events: int, seed: int) -> dict:
    """``n_events`` Gen events with the generator's ``Pileup_*`` profile
    (:func:`flashsim_coffea.generate.pileup.pileup_branches`: 2018-like nTrueInt, correlated
    nPU, densities, out-of-time sums) and *empty* GenJet/GenPart collections: what the reference
    response needs to make its pile-up jets, which depend only on the pile-up and the event's
    identity (run 1, event numbers from 10⁹·seed)."""
    from flashsim_coffea.generate.pileup import pileup_branches
    from flashsim_coffea.reference._inputs import GENJET_KEYS, GENPART_KEYS

    run = np.ones(n_events, dtype=np.uint32)
    event = (np.uint64(1_000_000_000) * np.uint64(seed) + np.arange(1, n_events + 1, dtype=np.uint64)).astype(np.uint64)
    lumi = (1 + np.arange(n_events) // 1000).astype(np.uint32)
    empty = ak.unflatten(np.zeros(0, dtype=np.float32), np.zeros(n_events, dtype=np.int64))
    out = {"run": run, "luminosityBlock": lumi, "event": event, **pileup_branches(seed, run, lumi, event)}
    for k in (*GENJET_KEYS, *GENPART_KEYS):
        out[k] = empty
    return out


def extract_pileup_synthetic(spec: ObjectSpec, n_events: int, gen_seed: int = 1, ref_seeds: int | list[int] = 11,
                             chunk: int = 100_000, progress: bool = False) -> tuple[Unmatched, dict]:
    """Unmatched-object training data (:func:`extract_unmatched_events`) from
    :func:`pileup_gen_events` (seed ``gen_seed``·1000 + chunk number) through the reference
    response, one draw per seed of ``ref_seeds``; fully determined by the seeds."""
    from tqdm.auto import tqdm

    seeds = [ref_seeds] if isinstance(ref_seeds, int) else list(ref_seeds)
    parts = []
    for i, start in enumerate(tqdm(range(0, n_events, chunk), desc=f"pile-up {spec.name}", disable=not progress)):
        gen = pileup_gen_events(min(chunk, n_events - start), seed=gen_seed * 1000 + i)
        for s in seeds:
            events = ak.Array({**gen, **respond(gen, seed=s)})
            parts.append(extract_unmatched_events(spec, events, draw=s))
    data = Unmatched.concatenate(parts, spec)
    provenance = {
        "spec": spec.name,
        "spec_hash": spec.hash(),
        "extraction_hash": spec.extraction_hash(),
        "source": f"pileup_gen_events({n_events} events, seed {gen_seed}) + reference.respond(seed "
                  f"{', '.join(map(str, seeds))})",
        "reference_fingerprint": reference_fingerprint(),
        "n_events": int(len(data.counts)),
        "n_reco": data.objects.n_reco,
        "n_objects": len(data.objects),
        "dropped": dict(data.objects.drops),
        "clipped": dict(data.objects.clipped),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "package_version": __version__,
    }
    return data, provenance
