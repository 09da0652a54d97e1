"""FoldHist: the fold-weighted upsampling accumulator.

With upsampling, every Gen event ``ev`` (weight ``w_ev``) is reconstructed ``N`` times
("folds"). Let ``c_i^ev`` be the number of its folds that land in bin ``i`` and
``pdf_i^ev = c_i^ev / N``. The seed thesis (DESIGN.md) defines

    content_i = Σ_ev w_ev · pdf_i^ev
    error_i   = sqrt( Σ_ev (w_ev · pdf_i^ev)² )

i.e. folds of one event in one bin are fully correlated, different events independent.
If the folds of one event carry different weights ``w_f`` the natural generalisation
``w_ev c_i^ev → Σ_{f of ev in i} w_f`` is used (identical when all folds share ``w_ev``).

Implementation: per ``fill`` call, entries are grouped by (event identity, bin) with one
``np.unique`` over integer codes (no Python loop over events), and a ``hist`` ``Weight()``
storage is filled *once per group* with weight ``S = Σ_{f in group} w_f``, which stores
``Σ S`` and ``Σ S²``. The factor ``1/N`` (and ``1/N²``) is applied on read-out
(:meth:`FoldHist.values`, :meth:`FoldHist.variances`, :meth:`FoldHist.to_hist`), so that for
integer weights the stored sums are exact integers and the result does not depend on how
events were split into chunks or in which order the chunks were added. For ``N = 1`` the
fill is an ordinary weighted fill (no grouping), so the result is bit-identical to a plain
``hist.Hist`` with ``Weight()`` storage.

All folds of an event must be filled in the same call: a second :meth:`FoldHist.fill` of an
event the histogram already holds is refused (``ValueError``, histogram unchanged; the check
covers the fills of one histogram object — once histograms are added or pickled, as coffea does
between chunks, the event lists are dropped). :class:`FoldFiller` collects the entries of every
fold batch of a chunk and fills once. FoldHists add across chunks with ``+`` (and ``sum()``),
which is what coffea's accumulation does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import hist
import numpy as np
from coffea.processor import AccumulatorABC

from . import noise

__all__ = ["FoldHist", "FoldFiller", "fold_hist_or_hist", "fill_any"]

_CATEGORY_AXES = (hist.axis.StrCategory, hist.axis.IntCategory)


def _as_numpy(x: Any) -> np.ndarray:
    """Flat numpy view of an array-like (awkward 1D arrays included)."""
    if hasattr(x, "to_numpy"):
        x = x.to_numpy()
    return np.asarray(x)


def _key_codes(key: Any, n: int) -> list[np.ndarray]:
    """Integer columns identifying an event: one array, or a tuple such as (run, lumi, event)."""
    parts = key if isinstance(key, (tuple, list)) else (key,)
    cols = []
    for p in parts:
        a = _as_numpy(p)
        if a.shape != (n,):
            raise ValueError(f"event key of shape {a.shape} does not match {n} entries")
        if a.dtype.kind not in "iub":
            raise TypeError(f"event keys must be integers, got dtype {a.dtype}")
        cols.append(a.astype(np.int64))
    return cols


def _bin_code(axis: hist.axis.AxesMixin, values: np.ndarray) -> np.ndarray:
    """An integer per entry, equal for entries that fall into the same bin of ``axis``.

    Numeric axes: the axis' own bin index (flow bins are −1 and ``size``). Category axes:
    the index of the value among the distinct values (growing axes may not know it yet).
    """
    if isinstance(axis, _CATEGORY_AXES):
        return np.unique(values, return_inverse=True)[1].ravel().astype(np.int64)
    return np.asarray(axis.index(values), dtype=np.int64)


class FoldHist(AccumulatorABC):
    """Fold-weighted histogram over any ``hist`` axes (see the module docstring for formulas).

    >>> h = FoldHist(hist.axis.Regular(10, 0, 1, name="x"), folds=5)
    >>> h.fill(x=values, key=(run, lumi, event), weight=w)   # all folds of each event
    >>> h.values(), h.variances(), h.to_hist()
    """

    def __init__(self, *axes: hist.axis.AxesMixin, folds: int, label: str = "", name: str = ""):
        if isinstance(folds, bool) or int(folds) != folds or folds < 1:
            raise ValueError(f"folds must be a positive integer, got {folds!r}")
        self.folds = int(folds)
        self._h = hist.Hist(*axes, storage=hist.storage.Weight(), label=label or None, name=name or None)
        self._filled = _NO_EVENTS  # hashes of the events filled into this object (sorted), see fill

    def __getstate__(self) -> dict:
        return {"folds": self.folds, "_h": self._h}  # the event list stays with the object that filled

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._filled = _NO_EVENTS

    # -- construction helpers ---------------------------------------------------------------
    @classmethod
    def _from_hist(cls, h: hist.Hist, folds: int) -> "FoldHist":
        out = cls.__new__(cls)
        out.folds, out._h, out._filled = folds, h, _NO_EVENTS
        return out

    @property
    def axes(self):
        return self._h.axes

    @property
    def raw(self) -> hist.Hist:
        """The stored histogram of per-(event, bin) sums S: values Σ S, variances Σ S² (no 1/N)."""
        return self._h

    # -- filling ----------------------------------------------------------------------------
    def fill(self, *, key: Any, weight: Any = None, **values: Any) -> "FoldHist":
        """Fill entries (one per fold) with event identity ``key`` and per-entry ``weight``.

        ``key``: an integer array, or a tuple of integer arrays such as
        ``(run, luminosityBlock, event)``, identifying the Gen event of each entry.
        ``values``: one array per axis name; ``weight``: per-entry weights (default 1).
        """
        names = [ax.name for ax in self._h.axes]
        if set(values) != set(names):
            raise ValueError(f"FoldHist.fill needs exactly the axes {names}, got {sorted(values)}")
        cols = {k: _as_numpy(v) for k, v in values.items()}
        n = len(next(iter(cols.values())))
        w = np.ones(n) if weight is None else np.broadcast_to(_as_numpy(weight).astype(np.float64), (n,))
        if n == 0:
            return self
        if self.folds == 1:
            self._h.fill(**cols, weight=w)
            return self
        if key is None:
            raise ValueError(f"FoldHist with {self.folds} folds needs key= (the event identity of every entry)")
        keys = _key_codes(key, n)
        events = np.unique(noise.hash_keys(0, "foldhist/event", *keys))
        again = np.intersect1d(events, self._filled, assume_unique=True)
        if again.size:
            raise ValueError(
                f"FoldHist.fill: {again.size} of these {events.size} events were already filled into this histogram; "
                "all folds of an event must arrive in one fill (collect them first, e.g. with FoldFiller) — "
                "the histogram is unchanged"
            )
        codes = keys + [_bin_code(ax, cols[ax.name]) for ax in self._h.axes]
        table = np.stack(codes, axis=1)
        _, first, group = np.unique(table, axis=0, return_index=True, return_inverse=True)
        group = group.ravel()
        sums = np.bincount(group, weights=w, minlength=first.size)
        self._h.fill(**{k: v[first] for k, v in cols.items()}, weight=sums)
        self._filled = np.union1d(self._filled, events)
        return self

    # -- read-out -----------------------------------------------------------------------------
    def values(self, flow: bool = False) -> np.ndarray:
        """Bin contents Σ_ev w_ev c_i^ev / N."""
        return self._h.values(flow=flow) / self.folds

    def variances(self, flow: bool = False) -> np.ndarray:
        """Squared errors Σ_ev (w_ev c_i^ev / N)²."""
        return self._h.variances(flow=flow) / self.folds**2

    def to_hist(self) -> hist.Hist:
        """A plain ``hist.Hist`` (Weight storage) with the fold-weighted values and variances."""
        out = self._h.copy()
        view = out.view(flow=True)
        view.value = self._h.values(flow=True) / self.folds
        view.variance = self._h.variances(flow=True) / self.folds**2
        return out

    # -- accumulation -------------------------------------------------------------------------
    def identity(self) -> "FoldHist":
        h = self._h.copy()
        h.reset()
        return self._from_hist(h, self.folds)

    def add(self, other: "FoldHist") -> None:
        if not isinstance(other, FoldHist):
            raise TypeError(f"cannot add {type(other).__name__} to FoldHist")
        if other.folds != self.folds:
            raise ValueError(f"cannot add FoldHists with {self.folds} and {other.folds} folds")
        self._h += other._h
        self._filled = _NO_EVENTS  # a sum: its fills were checked where they happened

    def __radd__(self, other):
        """``0 + h`` (the start of ``sum([h1, h2, …])``) is a copy of ``h``."""
        if isinstance(other, (int, float)) and other == 0:
            out = self.identity()
            out.add(self)
            return out
        return super().__radd__(other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FoldHist) and other.folds == self.folds and other._h == self._h

    def __repr__(self) -> str:
        return f"FoldHist(folds={self.folds}, {self._h!r})"


_NO_EVENTS = np.zeros(0, dtype=np.uint64)


class FoldFiller:
    """Collects the selected entries of every fold batch of one chunk, then fills each histogram
    once (a :class:`FoldHist` needs all folds of an event in one fill).

    >>> filler = FoldFiller(folds=5)
    >>> for batch in batches:                      # flashsim_coffea.folds.FoldBatch
    ...     filler.add("SR", batch.entry[m], batch.fold[m], key=batch.key(events)[...][m], weight=w[m], mass=x[m])
    >>> filler.fill("SR", hists["SR"])            # {variable: FoldHist | hist.Hist}

    Before filling, the entries are put back in event-major order (by entry, then fold): the
    order of one batch holding every fold, so sums do not depend on the batching.
    """

    def __init__(self, folds: int):
        self.folds = int(folds)
        self._parts: dict[str, list[dict[str, np.ndarray]]] = defaultdict(list)

    def add(self, group: str, entry: np.ndarray, fold: np.ndarray, key: tuple[np.ndarray, ...], weight: np.ndarray,
            **values: np.ndarray) -> None:
        """Entries of one batch for ``group`` (e.g. a region): chunk entry, fold, event key, weight, values."""
        part = {"entry": np.asarray(entry), "fold": np.asarray(fold), "weight": np.asarray(weight),
                **{f"key{i}": np.asarray(k) for i, k in enumerate(key)}, **{f"v:{k}": np.asarray(v) for k, v in values.items()}}
        self._parts[group].append(part)

    def fill(self, group: str, hists: Mapping[str, "FoldHist | hist.Hist"]) -> None:
        """Fill every histogram of ``hists`` (keyed by value name) with the collected entries of ``group``."""
        parts = self._parts.pop(group, [])
        if not parts:
            return
        cols = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
        if len(parts) > 1 or self.folds > 1:
            order = np.lexsort((cols["fold"], cols["entry"]))
            cols = {c: v[order] for c, v in cols.items()}
        key = tuple(cols[c] for c in sorted(c for c in cols if c.startswith("key")))
        for name, h in hists.items():
            fill_any(h, key=key if self.folds > 1 else None, weight=cols["weight"], **{name: cols[f"v:{name}"]})


def fold_hist_or_hist(*axes: hist.axis.AxesMixin, folds: int) -> "FoldHist | hist.Hist":
    """A plain weighted ``hist.Hist`` for ``folds == 1``, else a :class:`FoldHist`."""
    if folds == 1:
        return hist.Hist(*axes, storage=hist.storage.Weight())
    return FoldHist(*axes, folds=folds)


def fill_any(h: "FoldHist | hist.Hist", *, key: Any, weight: Any, **values: Sequence) -> None:
    """Fill a :class:`FoldHist` (grouped by ``key``) or a plain ``hist.Hist`` (key ignored)."""
    if isinstance(h, FoldHist):
        h.fill(key=key, weight=weight, **values)
    else:
        h.fill(**values, weight=weight)
