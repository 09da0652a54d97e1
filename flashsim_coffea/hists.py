"""FoldHist: the fold-weighted upsampling histogram, a ``hist.Hist`` with ``Weight()`` storage.

With upsampling, every Gen event ``ev`` (weight ``w_ev``) is reconstructed ``N`` times
("folds"). Let ``c_i^ev`` be the number of its folds that land in bin ``i`` and
``pdf_i^ev = c_i^ev / N``. The reference FlashSim study defines (docs/analysis.md, "Upsampling")

    content_i = Σ_ev w_ev · pdf_i^ev
    error_i   = sqrt( Σ_ev (w_ev · pdf_i^ev)² )

i.e. folds of one event in one bin are fully correlated, different events independent.

Weights: a FoldHist is filled with the weights **of the folded sample**, where each of the N
copies of an event carries ``w_f = w_ev / N`` — what ``FlashSim().inject(events, folds=N)`` and
``flashsim simulate --folds N`` give (:func:`flashsim_coffea.folds.fold_weight`), so that
Σ weights is the Gen sample's. Then ``Σ_{f of ev in i} w_f = w_ev c_i^ev / N`` and the formulas
above read content_i = Σ_ev S_i^ev, error_i = sqrt(Σ_ev (S_i^ev)²) with
``S_i^ev = Σ_{f of ev in i} w_f`` (folds with different weights enter with their own).

Storage: :class:`FoldHist` *is* a ``hist.Hist`` with ``Weight()`` storage whose stored values
and variances are the content and squared error above. Per ``fill`` call, entries are grouped
by (event identity, bin) with one ``np.unique`` over integer codes (no Python loop over
events), and each group is filled *once* with weight ``S``: the storage sums ``Σ S`` (the
content) and ``Σ S²`` (the variance). A plain ``hist.Hist`` filled with the same weights has
the same content and the errors of independent entries, too small by up to √N. So everything that reads
a ``hist`` histogram reads the fold-weighted numbers: ``values()``, ``variances()``,
``mplhep.histplot``, slicing and rebinning (``h[::2j]``), ``project``, ``h * 2``, writing
with uproot. The number of folds is the attribute ``folds``; it travels in the histogram's
``__dict__``, so copies, slices, projections, arithmetic results and pickles keep it.
Rebinning (``h[::2j]``), projecting and summing bins add the contents exactly as a fill of the
coarser binning would, and add the *variances* of the merged bins: the folds of one event that
fell into different merged bins are then counted as independent, which gives an error no
larger than the fold-weighted one of the coarser binning (for same-sign weights). For the exact
error of a coarser binning, fill a FoldHist with that binning.

Rounding: ``w_ev/N`` is not exact in binary, so sums over chunks added in another order
can differ in the last bits (relative ≲ 1e-15): folded histograms are identical across
chunkings and executors to floating-point rounding. For ``N = 1`` the fill is an ordinary
weighted fill (no grouping), bit-identical to a plain ``hist.Hist`` with ``Weight()`` storage
(and :func:`fold_hist_or_hist` gives exactly that plain ``hist.Hist`` for ``N = 1``).

All folds of an event must be filled in the same call: a second :meth:`FoldHist.fill` of an
event the histogram already holds is refused (``ValueError``, histogram unchanged). The check
covers the fills of one histogram object (``h += other`` keeps it, ``reset()`` clears it); new
objects (copies, slices, ``a + b``, unpickled histograms, as coffea makes between chunks) start
without event list, and the list is never pickled. :class:`FoldFiller` collects the entries of
every fold batch of a chunk and fills once.

FoldHists add with ``+``, ``+=``, ``sum()`` and ``coffea.processor.accumulate`` (the result is
a FoldHist with the same ``folds``); adding FoldHists with different ``folds``, or a FoldHist
and another histogram, is refused (``ValueError``; add ``h.to_hist()`` for a plain sum).
:meth:`FoldHist.to_hist` is a plain ``hist.Hist`` copy (same values and variances, ``folds``
kept as a plain attribute): ``flashsim run`` saves its outputs that way, so a ``.coffea`` file
opens with coffea and hist alone. A FoldHist pickled by earlier versions (raw sums of unscaled
weights and ``folds``) unpickles as this one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import boost_histogram as bh
import hist
import numpy as np

from . import noise

__all__ = ["FoldHist", "FoldFiller", "fold_hist_or_hist", "fill_any", "folds_of"]

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


def _check_folds(folds: Any) -> int:
    if isinstance(folds, bool) or int(folds) != folds or folds < 1:
        raise ValueError(f"folds must be a positive integer, got {folds!r}")
    return int(folds)


class FoldHist(hist.Hist, family=hist):
    """Fold-weighted histogram over any ``hist`` axes: a ``hist.Hist`` (``Weight()`` storage)
    whose values and variances are the fold-weighted ones (module docstring for the formulas).

    >>> h = FoldHist(hist.axis.Regular(10, 0, 1, name="x"), folds=5)
    >>> h.fill(x=values, key=(run, lumi, event), weight=w)   # all folds of each event, w = w_ev/5 each
    >>> h.values(), h.variances(), h.to_hist(), h.folds
    """

    # The events filled into this object (sorted hashes): a slot, not in ``__dict__``, so that
    # hist's copies, slices, arithmetic results and pickles (which carry ``__dict__``) drop it.
    __slots__ = ("_filled",)

    folds: int

    def __init__(self, *axes: hist.axis.AxesMixin, folds: int, label: str = "", name: str = ""):
        folds = _check_folds(folds)
        super().__init__(*axes, storage=hist.storage.Weight(), label=label or None, name=name or None)
        self.folds = folds
        self._filled = _NO_EVENTS

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict) and "_h" in state:
            # a FoldHist pickled before it was a hist.Hist: {"folds": N, "_h": Hist of Σ S, Σ S²}
            raw, folds = state["_h"], _check_folds(state["folds"])
            super().__setstate__(raw.copy().__getstate__())
            view = self.view(flow=True)
            view.value = raw.values(flow=True) / folds
            view.variance = raw.variances(flow=True) / folds**2
            self.folds = folds
        else:
            super().__setstate__(state)
        if "folds" not in self.__dict__:
            raise ValueError("cannot unpickle a FoldHist without its folds")

    def _events(self) -> np.ndarray:
        return getattr(self, "_filled", _NO_EVENTS)

    # -- filling ----------------------------------------------------------------------------
    def fill(self, *, key: Any, weight: Any = None, **values: Any) -> "FoldHist":  # type: ignore[override]
        """Fill entries (one per fold) with event identity ``key`` and per-entry ``weight``.

        ``key``: an integer array, or a tuple of integer arrays such as
        ``(run, luminosityBlock, event)``, identifying the Gen event of each entry.
        ``values``: one array per axis name; ``weight``: per-entry weights of the folded sample
        (each copy w_ev/N, as ``inject(folds=N)`` gives; default 1/N).
        Each (event, bin) group is filled once with weight ``S = Σ_{f in group} w_f``.
        """
        names = [ax.name for ax in self.axes]
        if set(values) != set(names):
            raise ValueError(f"FoldHist.fill needs exactly the axes {names}, got {sorted(values)}")
        cols = {k: _as_numpy(v) for k, v in values.items()}
        n = len(next(iter(cols.values())))
        w = np.full(n, 1.0 / self.folds) if weight is None else np.broadcast_to(_as_numpy(weight).astype(np.float64), (n,))
        if n == 0:
            return self
        if self.folds == 1:
            super().fill(**cols, weight=w)
            return self
        if key is None:
            raise ValueError(f"FoldHist with {self.folds} folds needs key= (the event identity of every entry)")
        keys = _key_codes(key, n)
        events = np.unique(noise.hash_keys(0, "foldhist/event", *keys))
        filled = self._events()
        again = np.intersect1d(events, filled, assume_unique=True)
        if again.size:
            raise ValueError(
                f"FoldHist.fill: {again.size} of these {events.size} events were already filled into this histogram; "
                "all folds of an event must arrive in one fill (collect them first, e.g. with FoldFiller) — "
                "the histogram is unchanged"
            )
        codes = keys + [_bin_code(ax, cols[ax.name]) for ax in self.axes]
        table = np.stack(codes, axis=1)
        _, first, group = np.unique(table, axis=0, return_index=True, return_inverse=True)
        group = group.ravel()
        sums = np.bincount(group, weights=w, minlength=first.size)  # S per (event, bin)
        super().fill(**{k: v[first] for k, v in cols.items()}, weight=sums)
        self._filled = np.union1d(filled, events)
        return self

    def reset(self) -> "FoldHist":
        """Clear the bin contents and the list of filled events."""
        super().reset()
        self._filled = _NO_EVENTS
        return self

    # -- read-out -----------------------------------------------------------------------------
    # values(): Σ_ev w_ev c_i^ev / N and variances(): Σ_ev (w_ev c_i^ev / N)² are the Hist's own.

    def to_hist(self) -> hist.Hist:
        """A plain ``hist.Hist`` copy (Weight storage) with the fold-weighted values and variances;
        ``folds`` stays a plain attribute of it (``h.folds``, kept when pickled)."""
        return hist.Hist(self.copy())

    # -- arithmetic and accumulation --------------------------------------------------------
    def _check_operand(self, other: Any) -> None:
        """Histograms combine with a FoldHist only when they are FoldHists with the same folds."""
        if isinstance(other, bh.Histogram):
            if not isinstance(other, FoldHist):
                raise ValueError(
                    f"cannot combine a FoldHist with {self.folds} folds and a {type(other).__name__} "
                    "(use .to_hist() to combine them as plain histograms)"
                )
            if other.folds != self.folds:
                raise ValueError(f"cannot combine FoldHists with {self.folds} and {other.folds} folds")

    def _compute_inplace_op(self, name: str, other: Any) -> "FoldHist":
        self._check_operand(other)  # every +, +=, -, *, / of hist goes through here
        return super()._compute_inplace_op(name, other)

    def __radd__(self, other: Any) -> "FoldHist":
        """``0 + h`` (the start of ``sum([h1, h2, …])``) is a copy of ``h``; ``hist.Hist + h`` is refused."""
        self._check_operand(other)
        return self + other

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FoldHist) and other.folds == self.folds and super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        text = super().__repr__()
        marker = "storage=Weight()"
        if marker in text:
            return text.replace(marker, f"{marker}, folds={self.folds}", 1)
        return f"{text} # folds={self.folds}"


_NO_EVENTS = np.zeros(0, dtype=np.uint64)


def folds_of(h: Any) -> int:
    """The folds of a histogram: ``h.folds`` of a FoldHist or of its :meth:`~FoldHist.to_hist`
    copy (e.g. read back from a ``.coffea`` file), 1 for any other histogram."""
    return int(getattr(h, "folds", 1))


class FoldFiller:
    """Collects the selected entries of every fold batch of one chunk, then fills each histogram
    once (a :class:`FoldHist` needs all folds of an event in one fill).

    >>> filler = FoldFiller(folds=5)
    >>> for batch in batches:                      # flashsim_coffea.folds.FoldBatch
    ...     filler.add("SR", batch.entry[m], batch.fold[m], key=batch.key(events)[...][m], weight=w[m], mass=x[m])
    ...     # w: the weight of each (event, fold) pair, w_ev / N (flashsim_coffea.folds.fold_weight)
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
