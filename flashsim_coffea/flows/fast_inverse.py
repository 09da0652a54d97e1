"""Sampling pass of the coupling flow without nflows' data-dependent indexing.

nflows inverts a rational-quadratic spline with linear tails by boolean-mask indexing
(``outputs[inside] = spline(inputs[inside])``), which copies and synchronises every layer.
Here the same formulas (Durkan et al. 2019, eq. 6 inverted as in nflows) are evaluated on
all elements with the input clamped to [−B, B], and ``torch.where`` keeps the identity
outside the interval. Same weights, same maths, no gathers of variable size: the result
matches ``flow._transform.inverse`` to float32 rounding (tested) and runs faster.

For bin k with knots (x_k, y_k), width w_k, height h_k, slope s_k = h_k / w_k and
derivatives d_k, d_{k+1}, the inverse of y is x = x_k + w_k · 2c / (−b − sqrt(b² − 4ac)) with

    a = (y − y_k)(d_k + d_{k+1} − 2 s_k) + h_k (s_k − d_k)
    b = h_k d_k − (y − y_k)(d_k + d_{k+1} − 2 s_k)
    c = −s_k (y − y_k)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform
from nflows.transforms.permutations import Permutation

__all__ = ["FastInverse"]


def _knots(unnorm: torch.Tensor, min_size: float, bound: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Knot positions (K+1) and bin sizes (K) on [−bound, bound] from unnormalised sizes."""
    k = unnorm.shape[-1]
    e = torch.exp(unnorm - unnorm.amax(dim=-1, keepdim=True))  # softmax; torch.softmax is slow on
    sizes = min_size + (1 - min_size * k) * (e / e.sum(dim=-1, keepdim=True))  # these strided views
    cum = F.pad(torch.cumsum(sizes, dim=-1), (1, 0), value=0.0)
    cum = 2 * bound * cum - bound
    cum[..., 0] = -bound
    cum[..., -1] = bound
    return cum, cum[..., 1:] - cum[..., :-1]


def rq_spline_inverse(y: torch.Tensor, params: torch.Tensor, bins: int, hidden: int, bound: float,
                      min_w: float, min_h: float, min_d: float) -> torch.Tensor:
    uw = params[..., :bins] / math.sqrt(hidden)
    uh = params[..., bins : 2 * bins] / math.sqrt(hidden)
    ud = params[..., 2 * bins :]
    const = math.log(math.exp(1 - min_d) - 1)
    ud = F.pad(ud, (1, 1), value=const)
    inside = (y >= -bound) & (y <= bound)
    yc = y.clamp(-bound, bound)
    cumw, widths = _knots(uw, min_w, bound)
    cumh, heights = _knots(uh, min_h, bound)
    derivs = min_d + F.softplus(ud)
    loc = cumh.clone()
    loc[..., -1] += 1e-6
    idx = (torch.sum(yc[..., None] >= loc, dim=-1) - 1).clamp(0, bins - 1)[..., None]
    xk = cumw.gather(-1, idx)[..., 0]
    wk = widths.gather(-1, idx)[..., 0]
    yk = cumh.gather(-1, idx)[..., 0]
    hk = heights.gather(-1, idx)[..., 0]
    sk = hk / wk
    dk = derivs.gather(-1, idx)[..., 0]
    dk1 = derivs[..., 1:].gather(-1, idx)[..., 0]
    dy = yc - yk
    t = dk + dk1 - 2 * sk
    a = dy * t + hk * (sk - dk)
    b = hk * dk - dy * t
    c = -sk * dy
    disc = (b * b - 4 * a * c).clamp_min(0.0)
    root = (2 * c) / (-b - torch.sqrt(disc))
    return torch.where(inside, root * wk + xk, y)


class FastInverse:
    """Callable ``(z, context) -> x`` equivalent to ``flow._transform.inverse(z, context)[0]``."""

    def __init__(self, flow):
        self.steps = []
        for tr in reversed(list(flow._transform._transforms)):
            if isinstance(tr, PiecewiseRationalQuadraticCouplingTransform) and tr.unconditional_transform is None \
                    and tr.tails == "linear":
                self.steps.append(("coupling", tr))
            elif isinstance(tr, Permutation):
                self.steps.append(("perm", tr._inverse_permutation))
            else:
                raise TypeError(f"FastInverse does not support {type(tr).__name__}")

    def __call__(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = z
        for kind, tr in self.steps:
            if kind == "perm":
                x = x.index_select(1, tr)
                continue
            ident = x[:, tr.identity_features]
            params = tr.transform_net(ident, context).reshape(x.shape[0], tr.num_transform_features, -1)
            out = rq_spline_inverse(x[:, tr.transform_features], params, tr.num_bins, tr.transform_net.hidden_features,
                                    tr.tail_bound, tr.min_bin_width, tr.min_bin_height, tr.min_derivative)
            new = torch.empty_like(x)
            new[:, tr.identity_features] = ident
            new[:, tr.transform_features] = out
            x = new
        return x
