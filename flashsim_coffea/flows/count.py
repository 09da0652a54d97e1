"""Count models: how many objects without a Gen counterpart an event has (pile-up jets).

Objects with no Gen object to simulate from (reco jets from pile-up, ``Jet_genJetIdx = −1``)
are simulated in two steps: the number n per (event, fold) from a count model, then each of
the n objects ("slots" i = 0 … n−1) from the spec's flow, conditioned on the event. The count
model is a binned table

    P(n | b),   b = bin of one raw conditioning feature (``feature``, e.g. ``Pileup_nTrueInt``)

measured on the training events (every event counts, also those with n = 0); values beyond the
edges use the first/last bin (counted as out of range), a non-finite value gives n = 0. n is
drawn by inverting the bin's CDF at u = ``noise.uniform(seed, "count/<spec>", run, lumi, event,
fold)`` — keyed on the event's identity and the fold, so a pair gets the same n whatever the
chunking or the subset of pairs simulated.

Stored as ``count.json`` beside the flow's ``card.json``; a model directory holding one
simulates per-event slots instead of Gen objects (:mod:`flashsim_coffea.inject`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flashsim_coffea import noise
from flashsim_coffea.errors import UserError
from flashsim_coffea.nanoaod.conventions import EVENT_ID

__all__ = ["CountModel", "FILENAME", "fit_unmatched", "load_count_model"]

FILENAME = "count.json"


@dataclass
class CountModel:
    spec: str
    feature: str
    edges: np.ndarray  # (B + 1,)
    probs: np.ndarray  # (B, n_max + 1): P(n | bin)
    events: np.ndarray  # (B,) training events per bin
    seed: int = 0

    @classmethod
    def fit(cls, spec: str, feature: str, x: np.ndarray, n: np.ndarray, edges, seed: int = 0) -> "CountModel":
        """The table from per-event feature values ``x`` and object counts ``n``; bins with no
        event take the nearest filled bin's distribution."""
        edges = np.asarray(edges, dtype=np.float64)
        x, n = np.asarray(x, dtype=np.float64), np.asarray(n, dtype=np.int64)
        ok = np.isfinite(x)
        b = np.clip(np.searchsorted(edges, x[ok], side="right") - 1, 0, len(edges) - 2)
        table = np.zeros((len(edges) - 1, int(n.max(initial=0)) + 1))
        np.add.at(table, (b, n[ok]), 1.0)
        events = table.sum(axis=1)
        filled = np.flatnonzero(events > 0)
        if not filled.size:
            raise UserError(f"count model {spec!r}: no training events with a finite {feature}")
        for i in np.flatnonzero(events == 0):
            table[i] = table[filled[np.argmin(np.abs(filled - i))]]
        return cls(spec, feature, edges, table / table.sum(axis=1, keepdims=True), events.astype(np.int64), int(seed))

    def bin(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, len(self.edges) - 2)

    def mean(self, x: np.ndarray) -> np.ndarray:
        """E[n | x] per value (bin means)."""
        return (self.probs @ np.arange(self.probs.shape[1]))[self.bin(np.asarray(x, dtype=np.float64))]

    def draw(self, x: np.ndarray, keys: dict[str, np.ndarray], fold) -> tuple[np.ndarray, int]:
        """n per row (int64) with u keyed on (run, lumi, event, fold); and how many rows had x
        outside the edges (drawn from the first/last bin)."""
        x = np.asarray(x, dtype=np.float64)
        k = [np.asarray(keys[name], dtype=np.int64) for name in EVENT_ID]
        u = noise.uniform(self.seed, f"count/{self.spec}", *k, np.broadcast_to(np.asarray(fold, dtype=np.int64), x.shape))
        cdf = np.cumsum(self.probs, axis=1)
        cdf[:, -1] = 1.0
        finite = np.isfinite(x)
        rows = cdf[self.bin(np.where(finite, x, self.edges[0]))]
        n = np.minimum((u[:, None] >= rows).sum(axis=1), self.probs.shape[1] - 1).astype(np.int64)
        n[~finite] = 0
        outside = int((finite & ((x < self.edges[0]) | (x > self.edges[-1]))).sum())
        return n, outside

    # -- I/O --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": "flashsim-count/1",
            "spec": self.spec,
            "feature": self.feature,
            "seed": self.seed,
            "edges": self.edges.tolist(),
            "events": self.events.tolist(),
            "probs": [[round(float(p), 8) for p in row] for row in self.probs],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "CountModel":
        """The model of :meth:`to_dict`'s form; a ValueError (or KeyError for a missing key) unless
        the edges are finite and increasing, ``probs`` has one row of finite, non-negative
        probabilities (not all 0) per bin and ``events`` one count per bin."""
        if not isinstance(d, dict):
            raise ValueError(f"a JSON object is expected, got {type(d).__name__}")
        spec, feature = d["spec"], d["feature"]
        if not isinstance(spec, str) or not isinstance(feature, str):
            raise ValueError(f"spec and feature must be names, got {spec!r} and {feature!r}")
        edges = np.asarray(d["edges"], dtype=np.float64)
        if edges.ndim != 1 or len(edges) < 2 or not np.all(np.isfinite(edges)) or not np.all(np.diff(edges) > 0):
            raise ValueError(f"edges must be at least 2 finite, increasing values, got shape {edges.shape}")
        probs = np.asarray(d["probs"], dtype=np.float64)
        events = np.asarray(d["events"], dtype=np.float64)
        bins = len(edges) - 1
        if probs.ndim != 2 or probs.shape[0] != bins or probs.shape[1] < 1:
            raise ValueError(f"probs has shape {probs.shape}, the {len(edges)} edges give ({bins}, n_max + 1)")
        if events.shape != (bins,):
            raise ValueError(f"events has shape {events.shape}, the {len(edges)} edges give ({bins},)")
        if not np.all(np.isfinite(probs)) or (probs < 0).any() or not np.all(probs.sum(axis=1) > 0):
            raise ValueError("probs must be finite, non-negative and not all 0 in a bin")
        return cls(spec, feature, edges, probs / probs.sum(axis=1, keepdims=True), events.astype(np.int64),
                   int(d.get("seed", 0)))

    def save(self, model_dir: str | Path) -> Path:
        from flashsim_coffea.safe_write import atomic_write

        path = Path(model_dir) / FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:  # a model folder never holds half a count model
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, model_dir: str | Path) -> "CountModel | None":
        """The count model beside a flow's card, or None; a UserError naming the file when it is not
        valid JSON or not a valid count model (:meth:`from_dict`)."""
        path = Path(model_dir) / FILENAME
        if not path.is_file():
            return None
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except KeyError as err:
            raise UserError(f"{path}: not a valid count model (missing key {err})") from None
        except (TypeError, ValueError) as err:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise UserError(f"{path}: not a valid count model ({err})") from None


def load_count_model(model_dir: str | Path) -> CountModel | None:
    """The count model beside a flow's card (``count.json``), or None."""
    return CountModel.load(model_dir)


def fit_unmatched(spec, data, feature: str, edges, seed: int = 0) -> CountModel:
    """The count model of an event-level spec from :class:`~flashsim_coffea.objects.extract.Unmatched`
    data: P(n | bin of the raw conditioning feature ``feature``), every training event counted."""
    names = [f.name for f in spec.conditioning]
    if feature not in names:
        raise UserError(f"count model {spec.name!r}: {feature!r} is not a conditioning feature ({', '.join(names)})")
    return CountModel.fit(spec.name, feature, data.event_cond[:, names.index(feature)], data.counts, edges, seed)
