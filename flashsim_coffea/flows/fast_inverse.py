"""Sampling pass of the coupling flow, restructured for CPU throughput (same weights, same maths).

nflows inverts each rational-quadratic coupling layer by gathering the identity/transform
halves, running a ResidualNet on ``cat(x_A, context)``, gating each residual block with
``glu(cat(h, W_c c))``, and evaluating the spline with boolean-mask indexing
(``outputs[inside] = spline(inputs[inside])``). Profiling the shipped jets model (batch 4096,
2 threads) put only a third of the time in the matrix products; the rest was ``cat``, ``glu``,
``copy_`` and small element-wise kernels. :class:`FastInverse` evaluates exactly the same
function with less data movement:

* **context once**: every context-dependent term of every layer (the context columns of each
  initial layer, each block's gate pre-activation) is one matrix product ``c @ W_ctx`` per
  block of objects, and the gates ``σ(W_c c + b)`` one ``sigmoid`` — glu(a, b) = a·σ(b);
* **physical layout**: permutations are bookkeeping (a column order), and each coupling does a
  single ``index_select`` that puts its identity half first, so both halves are views;
* **spline parameters grouped**: the rows of each final layer are reordered (widths, heights
  of all features, then derivatives) and pre-scaled by 1/√hidden, so softmax and cumsum of
  widths *and* heights run as one contiguous op; only the two derivatives of the selected bin
  go through ``softplus``.

Spline inverse (Durkan et al. 2019, eq. 6 inverted as in nflows): with y clamped to [−B, B],
bin k found among the height knots, knots (x_k, y_k), width w_k, height h_k, s_k = h_k / w_k,
derivatives d_k, d_{k+1}:

    a = (y − y_k)(d_k + d_{k+1} − 2 s_k) + h_k (s_k − d_k)
    b = h_k d_k − (y − y_k)(d_k + d_{k+1} − 2 s_k)
    c = −s_k (y − y_k)
    x = x_k + w_k · 2c / (−b − √(b² − 4ac))

and the identity outside [−B, B] (linear tails). The result equals
``flow._transform.inverse(z, context)[0]`` to float32 rounding (tested).

**Precision.** With ``precision="bfloat16"`` the matrix products of the conditioner networks
(context terms, residual blocks, final layers) take bfloat16 operands (weights rounded once,
activations cast per product, accumulation in float32 inside the kernel) while the residual
stream, the spline and everything after it stay float32. On CPUs with AMX (Intel Sapphire
Rapids and later) or AVX512-BF16 those products run 3–7× faster than float32 and the whole
inverse ~2× (see ``benchmarks/bench_flows.py``); elsewhere PyTorch emulates them (slower).
Samples then differ from the float32 ones by ~10⁻³ of a standard deviation (median; rows
near a bin edge or a mode boundary can move further): a slightly different model, not a
different seed. It is validated like any model (``flashsim validate --precision bfloat16``)
and, like float32, independent of batch size and chunking on a given machine.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from nflows.nn.nets import ResidualNet
from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform
from nflows.transforms.permutations import Permutation

from ..sampling_precision import check_precision

__all__ = ["FastInverse", "DTYPES"]

#: torch dtype of the products' operands, by sampling precision (:mod:`flashsim_coffea.sampling_precision`)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class _Coupling:
    """One RQ-spline coupling layer, its network unrolled into plain weight tensors."""

    def __init__(self, tr: PiecewiseRationalQuadraticCouplingTransform, n_context: int):
        net = tr.transform_net
        if not isinstance(net, ResidualNet) or getattr(net, "context_features", None) != n_context:
            raise TypeError("FastInverse needs ResidualNet transform networks conditioned on the context")
        if any(getattr(b, "use_batch_norm", False) for b in net.blocks) or net.blocks[0].activation is not F.relu:
            raise TypeError("FastInverse supports ReLU residual blocks without batch norm")
        self.identity = tr.identity_features.tolist()
        self.transform = tr.transform_features.tolist()
        n_id, n_tr, k = len(self.identity), len(self.transform), tr.num_bins
        self.n_tr, self.bins, self.bound = n_tr, k, float(tr.tail_bound)
        self.min_w, self.min_h, self.min_d = tr.min_bin_width, tr.min_bin_height, tr.min_derivative
        if self.min_w != self.min_h:
            raise TypeError("FastInverse needs equal minimal bin widths and heights")
        hidden = net.hidden_features
        w0 = net.initial_layer.weight.detach()
        self.w_in = w0[:, :n_id].t().contiguous()  # (n_id, H): x_A part of the initial layer
        # context rows: the initial layer's context columns (H), and each block's gate (H)
        self.init_w, self.init_b = w0[:, n_id:], net.initial_layer.bias.detach()
        self.gate_w = torch.cat([b.context_layer.weight.detach() for b in net.blocks], 0)
        self.gate_b = torch.cat([b.context_layer.bias.detach() for b in net.blocks], 0)
        self.init_at = self.gate_at = 0  # column offsets in the shared context terms (set by FastInverse)
        self.hidden = hidden
        self.blocks = [
            tuple(t.detach().t().contiguous() if t.ndim == 2 else t.detach()
                  for t in (b.linear_layers[0].weight, b.linear_layers[0].bias, b.linear_layers[1].weight, b.linear_layers[1].bias))
            for b in net.blocks
        ]
        # final layer split in two products with bins as the *outer* axis (element-wise kernels
        # over a length-8 inner axis do not vectorise). Widths+heights: (K+1, 2·n_tr), scaled by
        # 1/√hidden as nflows does, with a leading dummy bin (zero weights, bias −1e30 → softmax
        # weight exactly 0) so that the cumulative sum starts at the knot 0 without a pad.
        # Derivatives: (K+1, n_tr) with the boundary derivatives' constant pre-activation as
        # first and last rows (nflows pads them), so the product yields the padded tensor.
        per = 3 * k - 1
        rows = torch.arange(n_tr * per).reshape(n_tr, per)
        wh_rows = torch.stack([rows[:, :k], rows[:, k : 2 * k]], 0).permute(2, 0, 1).reshape(-1)  # (K, 2, n_tr)
        d_rows = rows[:, 2 * k :].t().reshape(-1)  # (K-1, n_tr)
        w, bias = net.final_layer.weight.detach(), net.final_layer.bias.detach()
        zeros = torch.zeros(2 * n_tr, hidden)
        self.w_wh = torch.cat([zeros, w[wh_rows] / math.sqrt(hidden)]).t().contiguous()
        self.b_wh = torch.cat([torch.full((2 * n_tr,), -1e30), bias[wh_rows] / math.sqrt(hidden)])
        const = torch.full((n_tr,), math.log(math.exp(1 - self.min_d) - 1))
        self.w_d = torch.cat([zeros[:n_tr], w[d_rows], zeros[:n_tr]]).t().contiguous()
        self.b_d = torch.cat([const, bias[d_rows], const])
        m = self.min_w
        self.knot_offset = (-self.bound + 2 * self.bound * m * torch.arange(k + 1, dtype=torch.float32))[:, None]
        self.knot_scale = 2 * self.bound * (1 - m * k)
        self.set_dtype(torch.float32)

    def set_dtype(self, dtype: torch.dtype) -> None:
        """Operands of the products in ``dtype`` (float32: the weights themselves, no copy)."""
        self.dtype = dtype
        self.mm_blocks = [tuple(t.to(dtype) for t in b) for b in self.blocks]
        self.mm_wh, self.mm_d = self.w_wh.to(dtype), self.w_d.to(dtype)

    def to(self, device) -> "_Coupling":
        for name, value in list(vars(self).items()):
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
        self.blocks = [tuple(t.to(device) for t in b) for b in self.blocks]
        self.set_dtype(self.dtype)
        return self

    def net(self, x_id: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ResidualNet(x_A, c) with the context terms precomputed in ``ctx`` (pre-activation, gates)."""
        h_, g0, dt = self.hidden, self.gate_at, self.dtype
        # the residual stream h stays float32; products take ``dt`` operands (.to is a no-op for float32)
        h = torch.mm(x_id, self.w_in).add_(ctx[:, self.init_at : self.init_at + h_])
        for i, (w1, b1, w2, b2) in enumerate(self.mm_blocks):
            t = torch.mm(torch.relu(h).to(dt), w1).add_(b1).relu_()  # mm + add_: addmm copies the bias first
            t = torch.mm(t, w2).add_(b2)
            h = h.addcmul_(t, ctx[:, g0 + h_ * i : g0 + h_ * (i + 1)])  # h + t·σ(W_c c + b)
        h = h.to(dt)
        return (torch.mm(h, self.mm_wh).float().add_(self.b_wh),
                torch.mm(h, self.mm_d).float().add_(self.b_d))

    def spline_inverse(self, y: torch.Tensor, wh: torch.Tensor, ud: torch.Tensor) -> torch.Tensor:
        n, f, k, bound = y.shape[0], self.n_tr, self.bins, self.bound
        wh = wh.view(n, k + 1, 2 * f)  # unnormalised [widths | heights] per bin, dummy bin 0
        # softmax over bins; knot_j = −B + 2B (j·m + (1 − K m) Σ_{i≤j} softmax_i), j = 0…K
        # (running sums bin by bin in place, normalised by the total: torch.cumsum + sum over this
        # non-last axis took 1.7x longer; equal to float rounding)
        cum = torch.exp(wh - wh.amax(dim=1, keepdim=True))
        for j in range(1, k + 1):
            cum[:, j].add_(cum[:, j - 1])
        cum = cum.div_(cum[:, k:].clone()).mul_(self.knot_scale).add_(self.knot_offset)
        cum[:, -1] = bound  # nflows sets the last knot exactly
        yc = y.clamp(-bound, bound)
        # bin index: number of interior height knots ≤ y (nflows' searchsorted)
        idx = (yc.unsqueeze(1) >= cum[:, 1:k, f:]).sum(dim=1, keepdim=True)  # (n, 1, f)
        idx2 = idx.repeat(1, 1, 2)
        lo_ = cum.gather(1, idx2)
        size = cum.gather(1, idx2 + 1).sub_(lo_)
        xk, yk = lo_[:, 0, :f], lo_[:, 0, f:]
        wk, hk = size[:, 0, :f], size[:, 0, f:]
        ud = ud.view(n, k + 1, f)
        d = F.softplus(torch.cat([ud.gather(1, idx), ud.gather(1, idx + 1)], dim=1)).add_(self.min_d)
        dk, dk1 = d[:, 0], d[:, 1]
        sk = hk / wk
        dy = yc - yk
        t = (dk + dk1 - 2 * sk).mul_(dy)
        a = t + hk * (sk - dk)
        b = hk * dk - t
        c = -sk * dy
        disc = (b * b - 4 * a * c).clamp_min_(0.0)
        x = (2 * c).div_(-b - disc.sqrt_()).mul_(wk).add_(xk)
        return torch.where((y >= -bound) & (y <= bound), x, y)


class FastInverse:
    """Callable ``(z, context) -> x`` equal to ``flow._transform.inverse(z, context)[0]``.

    Supports what :func:`.model.build_flow` builds: RQ-spline couplings with linear tails and
    ResidualNet(ReLU, no batch norm) conditioners, separated by permutations.
    """

    def __init__(self, flow, precision: str = "float32"):
        steps: list = []
        n_context = None
        for tr in reversed(list(flow._transform._transforms)):
            if isinstance(tr, PiecewiseRationalQuadraticCouplingTransform) and tr.unconditional_transform is None \
                    and tr.tails == "linear":
                n_context = tr.transform_net.context_features if n_context is None else n_context
                steps.append(_Coupling(tr, n_context))
            elif isinstance(tr, Permutation):
                steps.append(tr._inverse_permutation.tolist())
            else:
                raise TypeError(f"FastInverse does not support {type(tr).__name__}")
        couplings = [s for s in steps if isinstance(s, _Coupling)]
        # shared context terms: [initial-layer terms of every coupling | gates of every coupling]
        at = 0
        for c in couplings:
            c.init_at, at = at, at + c.init_w.shape[0]
        self.n_init = at
        for c in couplings:
            c.gate_at, at = at, at + c.gate_w.shape[0]
        self.ctx_w = torch.cat([c.init_w for c in couplings] + [c.gate_w for c in couplings], 0).contiguous()
        self.ctx_b = torch.cat([c.init_b for c in couplings] + [c.gate_b for c in couplings], 0)
        # plan: per coupling the column gather that puts (identity | transform) first (or None)
        self.plan: list[tuple[_Coupling, torch.Tensor | None]] = []
        n_dim = len(couplings[0].identity) + couplings[0].n_tr
        order = list(range(n_dim))  # physical column j holds logical feature order[j]
        for s in steps:
            if isinstance(s, list):  # permutation v'[k] = v[p[k]]: relabel only
                inv = [0] * n_dim
                for k_, pk in enumerate(s):
                    inv[pk] = k_
                order = [inv[o] for o in order]
                continue
            pos = {o: j for j, o in enumerate(order)}
            gather = [pos[i] for i in s.identity + s.transform]
            self.plan.append((s, None if gather == list(range(n_dim)) else torch.tensor(gather)))
            order = s.identity + s.transform
        pos = {o: j for j, o in enumerate(order)}
        final = [pos[i] for i in range(n_dim)]
        self.final = None if final == list(range(n_dim)) else torch.tensor(final)
        self.set_precision(precision)

    def set_precision(self, precision: str) -> "FastInverse":
        """Operands of the conditioner products in ``precision`` (``float32`` or ``bfloat16``); returns self."""
        self.precision = check_precision(precision)
        dtype = DTYPES[self.precision]
        for layer, _ in self.plan:
            layer.set_dtype(dtype)
        # float32: the transposed view of the (out, in) weight (mm 2.7x faster for in = 14 than
        # a contiguous (in, out) copy); bfloat16: a contiguous (in, out) copy (the faster one there)
        self.mm_ctx_w = self.ctx_w.t() if dtype == torch.float32 else self.ctx_w.t().contiguous().to(dtype)
        self.mm_ctx_b = self.ctx_b.to(dtype)
        return self

    def to(self, device) -> "FastInverse":
        """Move every weight to ``device`` (e.g. ``"cuda"``); returns self."""
        self.ctx_w, self.ctx_b = self.ctx_w.to(device), self.ctx_b.to(device)
        self.plan = [(layer.to(device), None if g is None else g.to(device)) for layer, g in self.plan]
        self.final = None if self.final is None else self.final.to(device)
        return self.set_precision(self.precision)

    def context_terms(self, context: torch.Tensor) -> torch.Tensor:
        """All context-dependent pre-activations of every layer, gates already through σ
        (in the sampling precision: they only enter products and the residual update)."""
        ctx = torch.mm(context.to(self.mm_ctx_w.dtype), self.mm_ctx_w).add_(self.mm_ctx_b)  # addmm copies the bias first
        ctx[:, self.n_init :].sigmoid_()
        return ctx

    def __call__(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        ctx = self.context_terms(context)
        x = z
        for layer, gather in self.plan:
            if gather is not None:
                x = x.index_select(1, gather)
            n_id = len(layer.identity)
            x_id = x[:, :n_id]
            wh, ud = layer.net(x_id, ctx)
            x = torch.cat([x_id, layer.spline_inverse(x[:, n_id:], wh, ud)], dim=1)
        return x if self.final is None else x.index_select(1, self.final)
