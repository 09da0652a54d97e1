"""The fold layout of upsampling: which (event, fold) pairs of a chunk are simulated together.

With ``folds = N`` every Gen event of a chunk is reconstructed N times. A :class:`FoldBatch`
lists (event, fold) pairs **event-major** — row r is fold ``fold[r]`` of the chunk's event
``entry[r]``:

    entry = [0, 0, …, 0, 1, 1, …],   fold = [f₀, f₀+1, …, f₁−1, f₀, …]

:func:`fold_batches` cuts the N folds of a chunk into consecutive fold ranges [f₀, f₁) of at
most ``max_pairs`` pairs each (at least one fold per batch), so memory stays bounded at large
N; :meth:`FoldBatch.subset` keeps the pairs that passed a selection (e.g. simulate jets only for
dimuon events). The fold index is part of every FlashSim noise key, so fold k of an object has
the same reco values in whichever batch or subset it is simulated, and the event identity
(``run, luminosityBlock, event``) of a pair is that of its Gen event (:meth:`FoldBatch.key`).

``folds`` is validated once, here (:func:`check_folds`). The normalisation of a folded sample:
every copy of an event carries weight/N (:func:`fold_weight`, applied to the
:data:`~flashsim_coffea.nanoaod.conventions.FOLD_SCALED_WEIGHTS`), so its Σ weights is the input's —
the convention of ``FlashSim.inject(folds=N)`` and of ``flashsim simulate --folds N``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .nanoaod.links import event_ids

__all__ = ["FoldBatch", "check_folds", "fold_batches", "fold_weight"]


def check_folds(folds) -> int:
    """``folds`` as an int ≥ 1, or a UserError naming the value."""
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 1:
        raise UserError(f"folds must be an integer ≥ 1 (the number of reconstructions per Gen event), got {folds!r}")
    return int(folds)


def fold_weight(weight, folds: int) -> np.ndarray:
    """The weight of one of ``folds`` copies of an event: ``weight / folds``, computed in float64
    and returned in the weight's own float type (float64 for an integer input)."""
    w = np.asarray(weight)
    dtype = w.dtype if w.dtype.kind == "f" else np.dtype(np.float64)
    return (w.astype(np.float64) / check_folds(folds)).astype(dtype)


@dataclass(frozen=True)
class FoldBatch:
    """(event, fold) pairs of one chunk, event-major (module docstring).

    entry: int64 (P,) — index of each pair's Gen event in the chunk (0 … n_events − 1)
    fold:  int64 (P,) — fold index of each pair (0 … folds − 1)
    folds: N of the run; n_events: events in the chunk
    """

    entry: np.ndarray
    fold: np.ndarray
    folds: int
    n_events: int

    @classmethod
    def all_folds(cls, n_events: int, folds: int = 1, first: int = 0, stop: int | None = None) -> "FoldBatch":
        """Every event of the chunk for folds ``first … stop − 1`` (default: all N folds)."""
        folds = check_folds(folds)
        stop = folds if stop is None else stop
        return cls(np.repeat(np.arange(n_events, dtype=np.int64), stop - first),
                   np.tile(np.arange(first, stop, dtype=np.int64), n_events), folds, int(n_events))

    def __len__(self) -> int:
        return len(self.entry)

    @property
    def is_identity(self) -> bool:
        """One pair per event, in chunk order (folds = 1, nothing removed): rows are the chunk's events."""
        return len(self.entry) == self.n_events and self.folds == 1 and bool(np.all(self.entry == np.arange(self.n_events)))

    def subset(self, mask: np.ndarray) -> "FoldBatch":
        """The pairs where ``mask`` (boolean, one per pair) is true, in the same order."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != self.entry.shape:
            raise ValueError(f"mask of shape {mask.shape} for a batch of {len(self)} pairs")
        return FoldBatch(self.entry[mask], self.fold[mask], self.folds, self.n_events)

    def take(self, array):
        """``array`` (one row per chunk event) gathered for the pairs: one row per pair."""
        return array if self.is_identity else array[self.entry]

    def key(self, events) -> tuple[np.ndarray, ...]:
        """The Gen event identity (run, luminosityBlock, event) of every pair, from the chunk's ``events``."""
        return tuple(ids[self.entry] for ids in event_ids(events))


def fold_batches(n_events: int, folds: int = 1, max_pairs: int | None = None) -> Iterator[FoldBatch]:
    """Consecutive fold ranges of a chunk, each with at most ``max_pairs`` (event, fold) pairs
    (at least one fold per batch; ``None``: all folds in one batch)."""
    folds = check_folds(folds)
    step = folds if max_pairs is None else max(1, min(folds, int(max_pairs) // max(n_events, 1)))
    for first in range(0, folds, step):
        yield FoldBatch.all_folds(n_events, folds, first, min(folds, first + step))
