"""Vectorized genealogy on a flattened particle record (all events of a batch at once).

Particles of all events are laid end to end; ``parent[i]`` is the *global* index of i's
primary mother (``-1`` at a root). Queries along the mother chain are answered by pointer
jumping (Wyllie's list ranking): after k rounds every particle knows its ancestor 2^k steps
up, so a chain of depth D costs ⌈log2 D⌉ vectorized passes instead of a Python walk per
particle. Pythia records are not topologically ordered (ISR mothers can sit at higher
indices), which pointer jumping does not need.
"""

from __future__ import annotations

import numpy as np

_MAX_ROUNDS = 40  # 2^40 steps: any cycle (which a valid record never has) is cut here


def nearest_marked_ancestor(parent: np.ndarray, marked: np.ndarray) -> np.ndarray:
    """Index of the nearest *strict* ancestor a of i (a = parent^k(i), k ≥ 1) with marked[a], else −1.

    Invariant after round r: ``ans[i]`` is the nearest marked ancestor within 2^r steps
    (or −1) and ``jump[i] = parent^(2^r)(i)``; the update
    ``ans[i] ← ans[i] if ans[i] ≥ 0 else ans[jump[i]]``, ``jump[i] ← jump[jump[i]]`` doubles it.
    """
    parent = np.asarray(parent, dtype=np.int64)
    marked = np.asarray(marked, dtype=bool)
    jump = parent.copy()
    has = jump >= 0
    ans = np.full(parent.shape, -1, dtype=np.int64)
    ans[has] = np.where(marked[jump[has]], jump[has], -1)
    for _ in range(_MAX_ROUNDS):
        active = (ans < 0) & (jump >= 0)
        if not active.any():
            break
        idx = np.flatnonzero(active)
        j = jump[idx]
        ans[idx] = ans[j]
        jump[idx] = jump[j]
        # entries that already found an answer or reached a root need no further jumps
    return ans


def root(parent: np.ndarray) -> np.ndarray:
    """The topmost ancestor of each element (itself if it has no parent)."""
    parent = np.asarray(parent, dtype=np.int64)
    top = np.where(parent >= 0, parent, np.arange(parent.size))
    for _ in range(_MAX_ROUNDS):
        nxt = top[top]
        if np.array_equal(nxt, top):
            break
        top = nxt
    return top
