"""Sampling throughput of the shipped FlashSim flows vs an nflows affine MAF baseline.

Measures the full public sampling path ``FlowModel.sample`` (counter-based noise, fixed-size
block inversion under ``torch.inference_mode``, decoding/snapping) for the shipped ``jets``
and ``muons`` models at 1e4 and 1e5 objects, and the inverse pass (sampling) of an nflows
masked affine autoregressive flow (MAF) of similar parameter count for the jets dimensions
(17 targets, 14 context), fed with the same block size. Conditioning rows are drawn from
synthetic Gen events through the spec's feature computation.

Each model is measured in float32 (the default) and with bfloat16 products
(``FlowModel.set_precision("bfloat16")``; ``"jets_bfloat16"``/``"muons_bfloat16"`` entries;
fast only where ``cpu_fast_bf16`` is true: AMX or AVX512-BF16).

Usage: ``python benchmarks/bench_flows.py [--threads 2] [--repeat 2] [--precisions float32,bfloat16]``.
The last line printed is JSON::

    {"jets": {"samples_per_s": {"1e4": .., "1e5": ..}, "params": ..}, "muons": {...},
     "jets_bfloat16": {...}, "muons_bfloat16": {...},
     "maf_baseline": {"samples_per_s": {"1e4": .., "1e5": ..}, "params": ..},
     "ratio_jets_vs_maf_1e4": .., "ratio_jets_bfloat16_vs_maf_1e4": .., "cpu_fast_bf16": ..,
     "threads": .., "device": "cpu"}

with ``"cuda"`` entries added when a GPU is available.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch


def maf_baseline(n_targets: int, n_context: int, target_params: int):
    """nflows affine MAF whose parameter count is close to ``target_params``."""
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow
    from nflows.transforms.autoregressive import MaskedAffineAutoregressiveTransform
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.permutations import ReversePermutation

    def build(hidden: int) -> Flow:
        layers = []
        for _ in range(6):
            layers.append(MaskedAffineAutoregressiveTransform(n_targets, hidden, context_features=n_context, num_blocks=2))
            layers.append(ReversePermutation(n_targets))
        return Flow(CompositeTransform(layers), StandardNormal([n_targets]))

    hidden = min(range(16, 1025, 8), key=lambda h: abs(sum(p.numel() for p in build(h).parameters()) - target_params))
    return build(hidden)


def time_call(fn, repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def conditioning(spec, n: int):
    import awkward as ak

    from flashsim_coffea.generate.synthetic import synthetic_gen

    n_events = max(1000, n // 2)
    while True:
        ev = ak.Array(synthetic_gen(n_events, seed=3))
        ctx = spec.context(ev)
        cond, keys = spec.conditioning_matrix(ctx), spec.noise_keys(ctx)
        if len(cond) >= n:
            return cond[:n], {k: v[:n] for k, v in keys.items()}
        n_events *= 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--sizes", default="1e4,1e5")
    parser.add_argument("--precisions", default="float32,bfloat16",
                        help="sampling precisions to measure (the MAF baseline is always float32)")
    parser.add_argument("--jets-model", help="model folder to measure instead of the shipped jets model")
    parser.add_argument("--muons-model", help="model folder to measure instead of the shipped muons model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")

    from flashsim_coffea.flows.sampler import FlowModel, cpu_has_fast_bf16, shipped_model_path

    sizes = {s: int(float(s)) for s in args.sizes.split(",")}
    result: dict = {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    paths = {name: getattr(args, f"{name}_model") or shipped_model_path(name) for name in ("jets", "muons")}
    for name in ("jets", "muons"):
        for precision in args.precisions.split(","):
            model = FlowModel.load(paths[name]).set_precision(precision)
            cond, keys = conditioning(model.spec, max(sizes.values()))
            entry = {"samples_per_s": {}, "params": sum(p.numel() for p in model.flow.parameters())}
            for label, n in sizes.items():
                k = {kk: v[:n] for kk, v in keys.items()}
                dt = time_call(lambda: model.sample(cond[:n], k, fold=0), args.repeat)
                entry["samples_per_s"][label] = round(n / dt)
                print(f"{name} {model.precision} {label}: {n / dt:,.0f} samples/s", flush=True)
            result[name if model.precision == "float32" else f"{name}_{model.precision}"] = entry

    jets = FlowModel.load(paths["jets"])
    maf = maf_baseline(len(jets.spec.targets), len(jets.spec.conditioning), result["jets"]["params"]).eval()
    entry = {"samples_per_s": {}, "params": sum(p.numel() for p in maf.parameters())}
    block = jets.block_size
    for label, n in sizes.items():
        z = torch.randn(n, len(jets.spec.targets))
        c = torch.randn(n, len(jets.spec.conditioning))

        def run_maf():
            with torch.inference_mode():
                for s in range(0, n, block):
                    maf._transform.inverse(z[s : s + block], context=c[s : s + block])

        dt = time_call(run_maf, 1 if n > 20_000 else args.repeat)
        entry["samples_per_s"][label] = round(n / dt)
        print(f"maf_baseline {label}: {n / dt:,.0f} samples/s", flush=True)
    result["maf_baseline"] = entry
    for key in [k for k in ("jets", "jets_bfloat16") if k in result]:
        suffix = key[len("jets"):]
        result[f"ratio_jets{suffix}_vs_maf_1e4"] = round(result[key]["samples_per_s"]["1e4"] / entry["samples_per_s"]["1e4"], 2)
    result["cpu_fast_bf16"] = cpu_has_fast_bf16()
    result["threads"] = args.threads
    result["device"] = "cpu"
    if "cuda" in devices:
        cuda = {}
        for name in ("jets", "muons"):
            model = FlowModel.load(paths[name])
            cond, keys = conditioning(model.spec, 1_000_000)
            entry = {"samples_per_s": {}, "name": torch.cuda.get_device_name()}
            for bs in (65_536, 262_144, 1_048_576):
                model.to("cuda", block_size=bs)

                def run_gpu():
                    model.sample(cond, keys, fold=0)
                    torch.cuda.synchronize()

                entry["samples_per_s"][f"1e6_block{bs}"] = round(len(cond) / time_call(run_gpu, args.repeat))
                print(f"cuda {name} block {bs}: {entry['samples_per_s'][f'1e6_block{bs}']:,} samples/s", flush=True)
            cuda[name] = entry
        result["cuda"] = cuda
    print(json.dumps(result))


if __name__ == "__main__":
    main()
