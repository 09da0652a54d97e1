"""Discrete head: the spec's *classified* targets drawn jointly by a classifier.

A spec marks ordinal targets with ``Target(classify=True)`` (jetId, puId, the muon ID
booleans). The flow still models every target; the head replaces its draws of the
classified targets D by a categorical conditioned on the context c and the flow's draws of
the other targets R:

    p(x_R, x_D | c) = p_flow(x_R | c) · p_head(k | c, y_R),    x_D = combos[k]

with y_R the standardised flow outputs of R, ``combos`` the K combinations of classified
values seen in training (stored in the card, so correlations among D are exact) and
p_head = softmax(MLP([c, y_R])) trained by cross-entropy. The flow's own draws of D are
marginalised out (ignored).

Why: IDs are near-deterministic functions of other reco quantities with sharp thresholds
(the reference's jetId = 2 iff muEF > 0.8, tightId needs |dxy| < 0.2 and |dz| < 0.5) and
have rare values (jetId = 0 at 1 %, isPFcand = 0 at 0.5 %). A density on dequantized values
smooths thresholds over the neighbouring boxes and misses rare masses; a classifier given the
very quantities the threshold acts on learns the cut, and cross-entropy calibrates the rates.

Sampling is counter-based like the flow's base noise: k = #{j : P_j ≤ u} with P the
cumulative class probabilities and u = uniform(seed, "flashsim/<spec>/head", run, lumi,
event, object, fold), so an object's IDs depend only on its identity.
"""

from __future__ import annotations

import numpy as np
import torch

from flashsim_coffea.objects import ObjectSpec

__all__ = ["DiscreteHead", "HEAD_ARCHITECTURE", "head_columns", "combinations", "combination_index", "draw"]

#: hidden width and number of hidden layers of the head's MLP
HEAD_ARCHITECTURE = {"hidden": 128, "layers": 3}


class DiscreteHead(torch.nn.Module):
    """MLP [c, y_R] → logits over the K combinations: ReLU hidden layers of equal width."""

    def __init__(self, n_inputs: int, n_classes: int, hidden: int = 128, layers: int = 3):
        super().__init__()
        sizes = [n_inputs] + [hidden] * layers
        mods: list[torch.nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
        mods.append(torch.nn.Linear(sizes[-1], n_classes))
        self.net = torch.nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def head_columns(spec: ObjectSpec) -> tuple[list[int], list[int]]:
    """(indices of the classified targets D, indices of the other targets R) in spec order."""
    d = [j for j, t in enumerate(spec.targets) if t.classify]
    return d, [j for j in range(len(spec.targets)) if j not in d]


def combinations(spec: ObjectSpec, targets: np.ndarray) -> np.ndarray:
    """(K, |D|) sorted unique combinations of the classified targets' values in ``targets``."""
    d, _ = head_columns(spec)
    return np.unique(np.asarray(targets, dtype=np.float64)[:, d], axis=0)


def combination_index(combos: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Row index into ``combos`` of each row of ``values`` (N, |D|); −1 where absent."""
    combos = np.asarray(combos, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    out = np.full(len(values), -1, dtype=np.int64)
    for k, row in enumerate(combos):
        out[(values == row).all(axis=1)] = k
    return out


def draw(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw per row: k = #{j < K−1 : P_j ≤ u}, P the cumulative probabilities."""
    cum = np.cumsum(np.asarray(probs, dtype=np.float64), axis=1)
    cum /= cum[:, -1:]
    return (cum[:, :-1] <= np.asarray(u)[:, None]).sum(axis=1)
