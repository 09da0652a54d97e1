"""Sampling pass of the coupling flow, restructured for CPU throughput (same weights, same maths).

nflows inverts each rational-quadratic coupling layer by gathering the identity/transform
halves, running a ResidualNet on ``cat(x_A, context)``, gating each residual block with
``glu(cat(h, W_c c))``, and evaluating the spline with boolean-mask indexing
(``outputs[inside] = spline(inputs[inside])``). Profiling the shipped jets model (batch 4096,
2 threads) put only a third of the time in the matrix products; the rest was ``cat``, ``glu``,
``copy_`` and small element-wise kernels. :class:`FastInverse` evaluates exactly the same
function with less data movement:

* **feature-major spline**: the coupled features and the spline parameters are (features ×
  objects), so every element-wise kernel of the spline runs over contiguous rows of N objects
  (with objects as the outer axis, softmax, max and running sums over a length-8 bin axis did
  not vectorise: 2–8x slower); the networks run object-major (N × hidden) and their final
  product writes the parameters feature-major directly (a transposed operand is free in BLAS);
* **context terms per coupling**: the context columns of the initial layer and every block's
  gate pre-activation are one product ``c W_ctxᵀ`` per coupling and block of objects, the
  gates ``σ(W_c c + b)`` one ``sigmoid`` — glu(a, b) = a·σ(b) (all couplings' terms at once
  made a 19 MB buffer at 2048 objects, out of cache);
* **physical layout**: permutations are bookkeeping (a row order), and each coupling does a
  single ``index_select`` that puts its identity half first, so both halves are views;
* **spline parameters grouped**: the rows of each final layer are reordered bin-major
  (derivatives at the K+1 knots, nflows' constant boundary derivatives folded into the
  bias, then widths and heights of every feature per bin, pre-scaled by 1/√hidden), so
  softmax and running sums of widths *and* heights run as one op per bin; only the two
  derivatives of the selected bin go through ``softplus``;
* **no huge negative exponents**: knot 0 is a zero row rather than exp(−∞) — exp takes a
  slow path for very negative inputs (5x on this CPU).

Spline inverse (Durkan et al. 2019, eq. 6 inverted as in nflows): with y clamped to [−B, B],
bin k found among the height knots, knots (x_k, y_k), width w_k, height h_k, s_k = h_k / w_k,
derivatives d_k, d_{k+1}:

    a = (y − y_k)(d_k + d_{k+1} − 2 s_k) + h_k (s_k − d_k)
    b = h_k d_k − (y − y_k)(d_k + d_{k+1} − 2 s_k)
    c = −s_k (y − y_k)
    x = x_k + w_k · 2c / (−b − √(b² − 4ac))  =  x_k + 2 w_k q / (b + √(b² + 4aq)),  q = −c

and the identity outside [−B, B] (linear tails). The result equals
``flow._transform.inverse(z, context)[0]`` to float32 rounding (tested).

**Precision.** With ``precision="bfloat16"`` the matrix products of the residual blocks and
final layers take bfloat16 operands (weights rounded once, activations rounded once per
product) with float32 accumulation, and write a bfloat16 result:

    y = bf16( [relu]( bf16(x) · bf16(W)ᵀ + bf16(b) ) )     (sum and bias in float32)

while the context terms, the residual stream, the spline and everything after it stay
float32. On CPU this runs through one of two kernels, chosen once per process
(:func:`bf16_kernel`):

* ``"fused-onednn"``: oneDNN's fused linear + bias + ReLU (``torch.ops.mkldnn._linear_pointwise``).
  With AMX (Intel Sapphire Rapids and later) or AVX512-BF16 those products run 3–7× faster
  than in float32, the whole inverse ~1.2x (the element-wise work is unchanged; see
  ``benchmarks/bench_flows.py``). oneDNN refuses bfloat16 on CPUs without AVX-512 (e.g. AMD
  Zen 3: "could not create a primitive descriptor"), so the kernel is first *probed*: a tiny
  call with each product's exact (in, out) shape, bfloat16 operands, bias and both post-ops,
  checked bit-exactly against the portable kernel on dyadic inputs (whose sums are exact in
  float32) and cached per shape.
* ``"portable"``: the same formula on any CPU as a float32 ``mm`` of operands rounded to
  bfloat16 (a product of two bfloat16 numbers is exact in float32, so this *is* bfloat16
  multiplication with float32 accumulation), then bias, ReLU and rounding of the output to
  bfloat16. It is used when the probe fails, when PyTorch has no oneDNN, or when the
  environment sets ``FLASHSIM_FORCE_PORTABLE_KERNELS=1``; a one-line warning says so, once
  per process. It costs float32 speed plus the rounding passes: ~0.8–0.95× the float32 rate
  of the whole sample (``benchmarks/README.md``), no speed-up.

Both kernels agree to bfloat16 rounding of the products' outputs (summation order differs);
each is deterministic and batch-independent. The float32 path uses only ``torch.mm`` (no
CPU-feature-dependent kernel). On a GPU the bfloat16 products are ``F.linear``/``mm`` in bfloat16.
Samples then differ from the float32 ones by ~10⁻³ of a standard deviation (median; rows
near a bin edge or a mode boundary can move further): a slightly different model, not a
different seed. It is validated like any model (``flashsim validate --precision bfloat16``)
and, like float32, independent of batch size and chunking on a given machine.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from nflows.nn.nets import ResidualNet
from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform
from nflows.transforms.permutations import Permutation

from ..errors import UserError
from ..sampling_precision import PORTABLE_KERNELS_ENV, check_precision, portable_kernels_forced

__all__ = ["FastInverse", "DTYPES", "FUSED", "PORTABLE", "bf16_kernel", "reset_kernel_choice"]

#: torch dtype of the products' operands, by sampling precision (:mod:`flashsim_coffea.sampling_precision`)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
#: names of the CPU kernels of the bfloat16 products (:func:`bf16_kernel`)
FUSED, PORTABLE = "fused-onednn", "portable"

_BF16 = torch.bfloat16


def _fused_linear_op():
    try:  # a private op of PyTorch's CPU builds with oneDNN (used by torch.compile's CPU backend)
        return torch.ops.mkldnn._linear_pointwise if torch.backends.mkldnn.is_available() else None
    except (AttributeError, RuntimeError):
        return None


_FUSED_OP = _fused_linear_op()
_KERNEL: str | None = None  # the process-wide choice, made by bf16_kernel()
_SHAPE_OK: dict[tuple[int, int], bool] = {}  # probe results per (in, out) shape
_WARNED = False


def _round(t: torch.Tensor) -> torch.Tensor:
    """float32 tensor holding ``t`` rounded to bfloat16 (round to nearest even)."""
    return t.to(_BF16).float()


def _portable_linear(x: torch.Tensor, w_t: torch.Tensor, b: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """bf16([relu](x w + b)) for float32 tensors holding bfloat16 values (x (N, in), w_t (in, out)):
    the products are exact in float32, the sum accumulates in float32. Returns float32 holding
    bfloat16 values (float32 keeps the next element-wise ops on their fast same-dtype paths)."""
    out = torch.mm(x, w_t).add_(b)
    return _round(out.relu_() if relu else out)


def _linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """bf16([relu](x wᵀ + b)) for bfloat16 CPU tensors with oneDNN's fused linear (bias and ReLU
    inside the kernel: 2.5x faster than mm + bfloat16 element-wise ops). Only called once the
    probe (:func:`_probe`) has passed for this shape; a failure is still reported as a UserError."""
    try:
        return _FUSED_OP(x, w, b, "relu" if relu else "none", [], "")
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"oneDNN's fused bfloat16 linear failed on this CPU ({first}); sample in float32 "
                        f"or set {PORTABLE_KERNELS_ENV}=1 to use the portable bfloat16 kernel") from err


#: rows of the probe calls: one row, a redraw block, a CPU sampling block (oneDNN may pick another
#: implementation by the number of rows)
PROBE_ROWS = (1, 64, 2048)


def _probe(n_in: int, n_out: int) -> bool:
    """Whether the fused oneDNN kernel works for bfloat16 (N, n_in) × (n_out, n_in)ᵀ + bias, with
    ReLU and without: small guarded calls (N in ``PROBE_ROWS``) compared bit for bit with the
    portable kernel.

    The inputs are small dyadic numbers (multiples of 1/8 and 1/4, |x|, |w| ≤ 3/4), so every
    partial sum is exact in float32 and both kernels must round the same value: any
    difference means a broken kernel, not a different summation order. Cached per shape."""
    key = (n_in, n_out)
    if key not in _SHAPE_OK:
        ok = _FUSED_OP is not None
        if ok:
            try:
                with torch.inference_mode():
                    w = ((torch.arange(n_out * n_in) % 5 - 2) / 8).reshape(n_out, n_in)
                    b = (torch.arange(n_out) % 3 - 1) / 8
                    for rows in PROBE_ROWS:
                        x = ((torch.arange(rows * n_in) % 7 - 3) / 4).reshape(rows, n_in)
                        for relu in (True, False):
                            got = _FUSED_OP(x.to(_BF16), w.to(_BF16), b.to(_BF16), "relu" if relu else "none", [], "")
                            want = _portable_linear(x, w.t().contiguous(), b, relu)
                            ok = ok and got.dtype == _BF16 and got.shape == want.shape and torch.equal(got.float(), want)
            except Exception:  # noqa: BLE001 - any failure of the private op means "do not use it"
                ok = False
        _SHAPE_OK[key] = ok
    return _SHAPE_OK[key]


def _warn_portable(reason: str) -> None:
    global _WARNED
    if not _WARNED:
        _WARNED = True
        warnings.warn(f"flashsim: bfloat16 sampling uses the portable CPU kernel ({reason}): float32 products of "
                      "bfloat16-rounded operands, the same model to bfloat16 rounding at ~0.8-0.95x the float32 "
                      "speed (no bfloat16 speed-up: prefer float32 here)", RuntimeWarning, stacklevel=3)


def bf16_kernel() -> str:
    """Kernel of the bfloat16 products on CPU in this process: ``"fused-onednn"`` or ``"portable"``.

    Decided once (then cached): ``portable`` when the environment sets
    ``FLASHSIM_FORCE_PORTABLE_KERNELS=1``, when PyTorch has no oneDNN fused linear, or when a
    probe of it (:func:`_probe`, 64 → 64 features) fails or returns a wrong result;
    otherwise ``fused-onednn``. Choosing ``portable`` emits a one-line warning, once per process.
    Each layer additionally probes its own shapes before it uses the fused kernel."""
    global _KERNEL
    if _KERNEL is None:
        if portable_kernels_forced():
            _KERNEL, reason = PORTABLE, f"forced by {PORTABLE_KERNELS_ENV}"
        elif _FUSED_OP is None:
            _KERNEL, reason = PORTABLE, "this PyTorch build has no oneDNN fused linear"
        elif not _probe(64, 64):
            _KERNEL, reason = PORTABLE, "oneDNN has no bfloat16 linear for this CPU, e.g. without AVX-512"
        else:
            _KERNEL, reason = FUSED, ""
        if _KERNEL == PORTABLE:
            _warn_portable(reason)
    return _KERNEL


def reset_kernel_choice() -> None:
    """Forget the kernel choice, the probes and the warning (tests, or after changing
    ``FLASHSIM_FORCE_PORTABLE_KERNELS``): the next bfloat16 layer decides again. Layers already
    set up keep their kernel until their precision is set again."""
    global _KERNEL, _WARNED
    _KERNEL, _WARNED = None, False
    _SHAPE_OK.clear()


def _cpu_kernel(shapes: list[tuple[int, int]]) -> str:
    """The kernel for a layer whose fused products have these (in, out) shapes."""
    if bf16_kernel() == FUSED and all(_probe(*s) for s in shapes):
        return FUSED
    if bf16_kernel() == FUSED:  # the process default works, one of this layer's shapes does not
        _warn_portable(f"oneDNN's bfloat16 linear fails for the shapes {shapes}")
    return PORTABLE


class _Coupling:
    """One RQ-spline coupling layer, its network unrolled into plain weight tensors: the network
    runs object-major (objects × hidden), the spline feature-major (features × objects)."""

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
        # the context terms of this coupling, one product per block of objects: rows [the initial
        # layer's context columns (H) | each block's gate (H per block)]
        self.ctx_w = torch.cat([w0[:, n_id:]] + [b.context_layer.weight.detach() for b in net.blocks], 0).contiguous()
        self.ctx_b = torch.cat([net.initial_layer.bias.detach()] + [b.context_layer.bias.detach() for b in net.blocks], 0)
        self.hidden = hidden
        # residual blocks (W1, b1, W2, b2) with nflows' (out, in) weights
        self.blocks = [tuple(t.detach().contiguous() for t in (b.linear_layers[0].weight, b.linear_layers[0].bias,
                                                                b.linear_layers[1].weight, b.linear_layers[1].bias))
                       for b in net.blocks]
        # final layer as one product whose output rows are, bin-major: the derivatives d_j of
        # every transformed feature at the knots j = 0…K (the boundary derivatives' constant
        # pre-activation as rows 0 and K: nflows pads them), then [width_j | height_j] of bins
        # j = 1…K, scaled by 1/√hidden as nflows does
        per = 3 * k - 1
        rows = torch.arange(n_tr * per).reshape(n_tr, per)
        w, bias = net.final_layer.weight.detach(), net.final_layer.bias.detach()
        s = 1.0 / math.sqrt(hidden)
        w_d, b_d = torch.zeros(k + 1, n_tr, hidden), torch.full((k + 1, n_tr), math.log(math.exp(1 - self.min_d) - 1))
        w_d[1:k], b_d[1:k] = w[rows[:, 2 * k :].t()], bias[rows[:, 2 * k :].t()]
        wh_rows = torch.stack([rows[:, :k].t(), rows[:, k : 2 * k].t()], 1)  # (K, 2, n_tr)
        self.w_out = torch.cat([w_d.reshape(-1, hidden), s * w[wh_rows].reshape(-1, hidden)]).contiguous()
        self.b_out = torch.cat([b_d.reshape(-1), s * bias[wh_rows].reshape(-1)])[:, None]
        m = self.min_w
        self.knot_offset = (-self.bound + 2 * self.bound * m * torch.arange(k + 1, dtype=torch.float32))[:, None, None]
        self.knot_scale = 2 * self.bound * (1 - m * k)
        self.set_dtype(torch.float32)

    def set_dtype(self, dtype: torch.dtype) -> None:
        """Operands of the block and final products in ``dtype``, and the kernel that multiplies them
        (``self.kernel``): ``float32`` — (in, out) weights for ``mm`` + in-place bias; on CPU in
        bfloat16 ``fused-onednn`` — bfloat16 weights for oneDNN's fused linear (:func:`_linear`)
        or ``portable`` — (in, out) float32 weights holding bfloat16 values (:func:`_portable_linear`),
        per :func:`bf16_kernel` and a probe of this layer's shapes; elsewhere (GPU) ``native``:
        bfloat16 weights for ``F.linear``."""
        self.dtype = dtype
        h = self.hidden
        if dtype == torch.float32:
            self.kernel = "float32"
        elif not self.w_out.is_cpu:
            self.kernel = "native"
        else:
            self.kernel = _cpu_kernel([(h, h)])
        if self.kernel in ("float32", PORTABLE):
            rnd = (lambda t: t) if self.kernel == "float32" else _round
            self.mm_blocks = [(rnd(w1).t().contiguous(), rnd(b1), rnd(w2).t().contiguous(), rnd(b2))
                              for w1, b1, w2, b2 in self.blocks]
            self.mm_out = rnd(self.w_out)
        else:
            self.mm_blocks = [tuple(t.to(dtype) for t in b) for b in self.blocks]
            self.mm_out = self.w_out.to(dtype)

    def to(self, device) -> "_Coupling":
        for name, value in list(vars(self).items()):
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.to(device))
        self.blocks = [tuple(t.to(device) for t in b) for b in self.blocks]
        self.set_dtype(self.dtype)
        return self

    def net(self, x_id: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """ResidualNet(x_A, c) for x_A (n_id, N) feature-major and the context c (N, C): spline
        parameters ((K+1)·n_tr + K·2·n_tr, N), feature-major.

        The network itself runs object-major (N, H): its context terms are one product
        c W_ctxᵀ — the initial layer's context part, then each block's gate σ(W_c c + b) — and
        its products take ``self.dtype`` operands while the residual stream h stays float32."""
        h_ = self.hidden
        # (mm with the transposed (out, in) weight is 2.7x faster here for in = 14; addmm copies the bias first)
        ctx = torch.mm(c, self.ctx_w.t()).add_(self.ctx_b)
        ctx[:, h_:].sigmoid_()
        h = torch.mm(x_id.t(), self.w_in).add_(ctx[:, :h_])
        kernel = self.kernel
        for i, (w1, b1, w2, b2) in enumerate(self.mm_blocks):
            if kernel == "float32":
                t = torch.mm(torch.relu(h), w1).add_(b1).relu_()
                t = torch.mm(t, w2).add_(b2)
            elif kernel == PORTABLE:  # bf16 operands, float32 sums, bf16 outputs (as oneDNN's kernel)
                t = _portable_linear(h.to(_BF16).relu_().float(), w1, b1, relu=True)
                t = _portable_linear(t, w2, b2)
            elif kernel == FUSED:
                t = _linear(torch.relu(h).to(self.dtype), w1, b1, relu=True)
                t = _linear(t, w2, b2)
            else:
                t = F.linear(torch.relu(h).to(self.dtype), w1, b1).relu_()
                t = F.linear(t, w2, b2)
            h = h.addcmul_(t, ctx[:, h_ * (i + 1) : h_ * (i + 2)])  # h + t·σ(W_c c + b)
        if kernel == PORTABLE:
            return _round(torch.mm(self.mm_out, _round(h).t())).add_(self.b_out)
        return torch.mm(self.mm_out, h.to(self.dtype).t()).float().add_(self.b_out)

    def spline_inverse(self, y: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """Inverse spline of the transformed features y (n_tr, N) with the parameters ``p`` of :meth:`net`."""
        f, k, bound, n = self.n_tr, self.bins, self.bound, y.shape[1]
        d_all = p[: (k + 1) * f].view(k + 1, f, n)
        wh = p[(k + 1) * f :].view(k, 2 * f, n)
        # softmax over bins; knot_j = −B + 2B (j·m + (1 − K m) Σ_{i≤j} softmax_i), j = 0…K, for
        # widths and heights at once (running sums bin by bin in place, normalised by the total;
        # knot 0 is a zero row, not exp(−∞): exp's slow path for huge negative inputs cost 5x)
        cum = torch.empty((k + 1, 2 * f, n), dtype=p.dtype, device=p.device)
        cum[0].zero_()
        torch.exp(wh - wh.amax(dim=0, keepdim=True), out=cum[1:])
        for j in range(2, k + 1):
            cum[j].add_(cum[j - 1])
        cum = cum.div_(cum[k].clone()).mul_(self.knot_scale).add_(self.knot_offset)
        cum[k] = bound  # nflows sets the last knot exactly
        yc = y.clamp(-bound, bound)
        # bin index: number of interior height knots ≤ y (nflows' searchsorted)
        idx = (yc >= cum[1:k, f:]).sum(dim=0, keepdim=True)  # (1, f, N)
        both = torch.cat([idx, idx + 1])  # (2, f, N)
        knots = cum.gather(0, both.repeat(1, 2, 1))  # (2, 2f, N): [x_k | y_k], [x_k+1 | y_k+1]
        d = F.softplus(d_all.gather(0, both)).add_(self.min_d)  # d_k, d_k+1
        xk, yk = knots[0, :f], knots[0, f:]
        wk, hk = knots[1, :f] - xk, knots[1, f:] - yk
        dk, dk1 = d[0], d[1]
        # x = x_k + w_k · 2c / (−b − √(b² − 4ac)) with c = −s_k·dy, written with q = s_k·dy:
        # x = x_k + 2 w_k q / (b + √(b² + 4 a q))
        sk = hk / wk
        dy = yc - yk
        q = sk * dy
        t = (dk + dk1).sub_(sk, alpha=2).mul_(dy)
        a = (sk - dk).mul_(hk).add_(t)
        b = (hk * dk).sub_(t)
        den = (b * b).addcmul_(a, q, value=4).clamp_min_(0.0).sqrt_().add_(b)
        x = torch.addcmul(xk, q.div_(den), wk, value=2)
        return torch.where(y.abs() <= bound, x, y)


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
        # plan: per coupling the row gather that puts (identity | transform) first (or None)
        self.plan: list[tuple[_Coupling, torch.Tensor | None]] = []
        n_dim = len(couplings[0].identity) + couplings[0].n_tr
        order = list(range(n_dim))  # physical row j holds logical feature order[j]
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
        """Operands of the conditioner products in ``precision`` (``float32`` or ``bfloat16``); returns self.

        The kernel is fixed here, per layer (:attr:`kernel`), never per call: a model samples
        with the same kernel until its precision or device is set again."""
        self.precision = check_precision(precision)
        for layer, _ in self.plan:
            layer.set_dtype(DTYPES[self.precision])
        return self

    @property
    def kernel(self) -> str:
        """Kernel of the conditioner products: ``float32``, ``fused-onednn`` or ``portable`` (CPU
        bfloat16, :func:`bf16_kernel`), ``native`` (bfloat16 on a GPU); ``mixed`` if layers differ."""
        kinds = {layer.kernel for layer, _ in self.plan}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    def to(self, device) -> "FastInverse":
        """Move every weight to ``device`` (e.g. ``"cuda"``); returns self."""
        self.plan = [(layer.to(device), None if g is None else g.to(device)) for layer, g in self.plan]
        self.final = None if self.final is None else self.final.to(device)
        return self.set_precision(self.precision)

    def __call__(self, z: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = z.t()
        for layer, gather in self.plan:
            x = x.index_select(0, gather) if gather is not None else x.contiguous()
            n_id = len(layer.identity)
            x_id = x[:n_id]
            p = layer.net(x_id, context)
            x = torch.cat([x_id, layer.spline_inverse(x[n_id:], p)], dim=0)
        return (x if self.final is None else x.index_select(0, self.final)).t()
