"""The conditional normalizing flow (nflows): rational-quadratic spline *coupling* layers.

Why coupling and not autoregressive: sampling (the inverse pass) of a masked autoregressive
flow needs one network pass per target dimension (17 for jets), while a coupling layer
inverts in a single pass. Measured on the project's 2-core CPU (fp32, batch 1e4, ~1 M
parameters): nflows spline coupling ≈ 16k samples/s, affine MAF ≈ 3k/s, spline MAF ≈ 0.5k/s
(``benchmarks/bench_flows.py`` re-measures ours against an affine MAF). Splines (not affine
couplings) give the multi-modal tagger shapes; alternating masks plus a fixed random
permutation between layers let every dimension condition on every other.

Layer l: y = RQS(x_B; θ(x_A, c)) with A/B the two halves of the mask, θ a residual MLP
on (x_A, context c), K bins on [−B, B] and linear tails outside (identity beyond ±B).

**Appended targets** (``arch["extensions"]``: ``[{"targets": k, "layers": m[, "hidden": h, "blocks": b]}, ...]``;
the extension's networks default to the architecture's width and depth): a model
that learns targets appended to a trained spec. The first n − Σk targets keep the layers of the
architecture (same masks and permutations, the appended targets among their inputs x_A), and each
extension adds m coupling layers that transform only its k targets, conditioned on every other
target and the context (alternating halves of the k targets when k ≥ 2):

    p(y_old, y_new | c) = p(y_old | c) · p(y_new | y_old, c)

as long as the old layers' weights on the appended inputs are zero: initialised from the trained
model that way (:func:`flashsim_coffea.flows.train.extend_targets`), they compute exactly what
they did, p(y_old | c) is the trained model's, and the extension layers (which see the old
targets through the old layers' output, a bijection of them given c) learn the new targets
given the old ones. Trained with the old layers frozen, the factorisation stays exact; trained
together, the old layers may come to depend on the new targets.
"""

from __future__ import annotations

import torch
from nflows.distributions.normal import StandardNormal
from nflows.flows.base import Flow
from nflows.nn.nets import ResidualNet
from nflows.transforms.base import CompositeTransform
from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform
from nflows.transforms.permutations import RandomPermutation
from nflows.utils import torchutils

__all__ = ["ARCHITECTURES", "build_flow", "count_parameters"]

#: named architectures; "tiny" is for tests (trains in seconds)
ARCHITECTURES: dict[str, dict] = {
    "tiny": {"layers": 2, "hidden": 16, "blocks": 1, "bins": 4, "tail_bound": 4.0, "dropout": 0.0},
    "small": {"layers": 4, "hidden": 64, "blocks": 1, "bins": 8, "tail_bound": 5.0, "dropout": 0.0},
    "default": {"layers": 6, "hidden": 128, "blocks": 2, "bins": 8, "tail_bound": 5.0, "dropout": 0.0},
    "fast": {"layers": 6, "hidden": 96, "blocks": 1, "bins": 8, "tail_bound": 5.0, "dropout": 0.0},
}


def build_flow(n_targets: int, n_context: int, arch: dict, seed: int = 0) -> Flow:
    """nflows Flow of ``arch['layers']`` RQ-spline coupling layers conditioned on the context.

    The random permutations are drawn from ``torch.Generator().manual_seed(seed)`` and are
    stored as buffers, so the checkpoint (not the seed) fixes them.
    """
    gen = torch.Generator().manual_seed(seed)
    extensions = arch.get("extensions", [])
    n_base = n_targets - sum(int(e["targets"]) for e in extensions)
    if n_base < 2:
        raise ValueError(f"a flow needs at least 2 targets before its appended ones, got {n_base} of {n_targets}")
    masks = []
    for i in range(arch["layers"]):
        mask = torchutils.create_mid_split_binary_mask(n_base)
        masks.append(torch.cat([1 - mask if i % 2 else mask, mask.new_zeros(n_targets - n_base)]))
    start = n_base
    for e in extensions:
        k = int(e["targets"])
        for i in range(int(e["layers"])):
            mask = torch.zeros(n_targets)
            part = torchutils.create_mid_split_binary_mask(k) if k > 1 else torch.ones(1)
            mask[start:start + k] = (1 - part) if (i % 2 and k > 1) else part
            masks.append(mask)
        start += k
    # each layer's network size: the architecture's, or its extension's own hidden/blocks
    sizes = [(arch["hidden"], arch["blocks"])] * arch["layers"]
    for e in extensions:
        sizes += [(int(e.get("hidden", arch["hidden"])), int(e.get("blocks", arch["blocks"])))] * int(e["layers"])
    layers = []
    for i, (mask, (hidden, blocks)) in enumerate(zip(masks, sizes)):

        def net(in_f: int, out_f: int, hidden: int = hidden, blocks: int = blocks) -> ResidualNet:
            return ResidualNet(
                in_f,
                out_f,
                hidden_features=hidden,
                context_features=n_context,
                num_blocks=blocks,
                activation=torch.nn.functional.relu,
                dropout_probability=arch.get("dropout", 0.0),
                use_batch_norm=False,
            )

        layers.append(
            PiecewiseRationalQuadraticCouplingTransform(
                mask=mask,
                transform_net_create_fn=net,
                num_bins=arch["bins"],
                tails="linear",
                tail_bound=arch["tail_bound"],
            )
        )
        if i < arch["layers"] - 1:  # between the architecture's layers, over its targets
            perm = RandomPermutation(n_targets)
            perm._permutation.copy_(torch.cat([torch.randperm(n_base, generator=gen), torch.arange(n_base, n_targets)]))
            layers.append(perm)
    return Flow(CompositeTransform(layers), StandardNormal([n_targets]))


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
