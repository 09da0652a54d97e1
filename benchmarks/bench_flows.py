"""Sampling throughput of the shipped FlashSim flows vs an nflows affine MAF baseline.

Measures the full public sampling path ``FlowModel.sample`` (counter-based noise, fixed-size
block inversion under ``torch.inference_mode``, decoding/snapping) for the shipped ``jets``
and ``muons`` models at 1e4 and 1e5 objects, and the inverse pass (sampling) of an nflows
masked affine autoregressive flow (MAF) of similar parameter count for the jets dimensions
(17 targets, 14 context), fed with the same block size. Conditioning rows are drawn from
synthetic Gen events through the spec's feature computation.

Each model is measured in float32 (the default) and with bfloat16 products
(``FlowModel.set_precision("bfloat16")``; ``"jets_bfloat16"``/``"muons_bfloat16"`` entries) with
the CPU kernel this process picks (``bf16_kernel``: ``fused-onednn`` where oneDNN's bfloat16
linear works, fast with AMX or AVX512-BF16; else ``portable``, about float32 speed). With
``--bf16-kernels both`` the portable kernel is measured as well where the fused one is used
(``"jets_bfloat16_portable"``, ...). No CPU feature makes it crash: a measurement that fails is
recorded as ``{"error": ...}``.

Usage::

    python benchmarks/bench_flows.py [--threads 2] [--repeat 2] [--precisions float32,bfloat16]
                                     [--bf16-kernels auto|both] [--device auto|cpu|cuda] [--cpu-time]
                                     [--block-sizes 65536,262144,1048576] [--gpu-objects 1e6]

``--device auto`` (default) measures the CPU, and the GPU too when CUDA is available; ``cpu``
the CPU only; ``cuda`` the GPU only (exit status 2 with a one-line message when there is
none): the shipped models at ``--gpu-objects`` objects per call for each ``--block-sizes``
and precision. The last line printed is JSON::

    {"jets": {"samples_per_s": {"1e4": .., "1e5": ..}, "params": ..}, "muons": {...},
     "jets_bfloat16": {...}, "muons_bfloat16": {...},
     "maf_baseline": {"samples_per_s": {"1e4": .., "1e5": ..}, "params": ..},
     "ratio_jets_vs_maf_1e4": .., "ratio_jets_bfloat16_vs_maf_1e4": .., "cpu_fast_bf16": ..,
     "bf16_kernel": "fused-onednn"|"portable", "threads": .., "clock": .., "device": "cpu",
     "machine": {"cpu_model", "isa_flags", "cores", "torch", "bf16_kernel"},
     "cuda": {"name": .., "memory_gib": .., "objects": .., "jets": {"samples_per_s":
              {"block65536": .., ...}}, "jets_bfloat16": {...}, ...}}   # with a GPU

(``--device cuda``: only ``cuda``, ``machine``, ``threads``, ``clock`` and ``device``.) ``--cpu-time``
times CPU seconds of this process instead of wall time (CPU rates only; with ``--threads 1``
the fair figure on a machine whose cores other jobs share).
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


CLOCK = time.perf_counter  # time.process_time with --cpu-time


def time_call(fn, repeat: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t = CLOCK()
        fn()
        best = min(best, CLOCK() - t)
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


def tiled_conditioning(spec, n: int, unique: int = 200_000):
    """``n`` conditioning rows: at most ``unique`` distinct ones, repeated with the event number
    shifted by copy·10^7 (every copy gets its own noise; building 1e6 rows from events is slow)."""
    cond, keys = conditioning(spec, min(n, unique))
    reps = -(-n // len(cond))
    copy = np.repeat(np.arange(reps, dtype=np.int64), len(cond))[:n]
    tiled = {k: np.tile(np.asarray(v), reps)[:n] for k, v in keys.items()}
    tiled["event"] = tiled["event"] + copy * 10_000_000
    return np.tile(cond, (reps, 1))[:n], tiled


def _use_kernel(kernel: str | None) -> None:
    """Make the next bfloat16 model use ``kernel`` ("portable") or the process's own choice (None)."""
    import os

    from flashsim_coffea.flows.fast_inverse import reset_kernel_choice
    from flashsim_coffea.sampling_precision import PORTABLE_KERNELS_ENV

    if kernel == "portable":
        os.environ[PORTABLE_KERNELS_ENV] = "1"
    else:
        os.environ.pop(PORTABLE_KERNELS_ENV, None)
    reset_kernel_choice()


def measure_cpu(args, paths: dict, sizes: dict) -> dict:
    from flashsim_coffea.flows.fast_inverse import FUSED, bf16_kernel
    from flashsim_coffea.flows.sampler import FlowModel, cpu_has_fast_bf16

    result: dict = {}
    runs = []  # (precision, forced kernel or None)
    for precision in args.precisions.split(","):
        runs.append((precision, None))
        if args.bf16_kernels == "both" and precision in ("bfloat16", "bf16") and bf16_kernel() == FUSED:
            runs.append((precision, "portable"))
    for name in ("jets", "muons"):
        cond, keys = conditioning(FlowModel.load(paths[name]).spec, max(sizes.values()))
        for precision, kernel in runs:
            _use_kernel(kernel)
            model = FlowModel.load(paths[name])
            key = name
            try:
                model.set_precision(precision)
                key = name if model.precision == "float32" else f"{name}_{model.precision}"
                key += "_portable" if kernel else ""
                entry = {"samples_per_s": {}, "params": sum(p.numel() for p in model.flow.parameters()),
                         "kernel": model.inverse.kernel}
                for label, n in sizes.items():
                    k = {kk: v[:n] for kk, v in keys.items()}
                    dt = time_call(lambda: model.sample(cond[:n], k, fold=0), args.repeat)
                    entry["samples_per_s"][label] = round(n / dt)
                    print(f"{name} {model.precision} [{entry['kernel']}] {label}: {n / dt:,.0f} samples/s", flush=True)
            except Exception as err:  # noqa: BLE001 - record it, measure the rest
                entry = {"error": f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"}
                print(f"{key} {precision}: FAILED {entry['error']}", flush=True)
            result[key] = entry
    _use_kernel(None)

    jets = FlowModel.load(paths["jets"])
    params = result.get("jets", {}).get("params") or sum(p.numel() for p in jets.flow.parameters())
    maf = maf_baseline(len(jets.spec.targets), len(jets.spec.conditioning), params).eval()
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
    first = next(iter(sizes))
    for key in [k for k in result if k.startswith("jets") and "samples_per_s" in result[k]]:
        result[f"ratio_{key}_vs_maf_{first}"] = round(result[key]["samples_per_s"][first] / entry["samples_per_s"][first], 2)
    result["cpu_fast_bf16"] = cpu_has_fast_bf16()
    result["bf16_kernel"] = bf16_kernel()
    return result


def measure_cuda(args, paths: dict) -> dict:
    from flashsim_coffea.flows.sampler import FlowModel

    props = torch.cuda.get_device_properties(0)
    n = int(float(args.gpu_objects))
    result: dict = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1), "objects": n}
    for name in ("jets", "muons"):
        cond, keys = tiled_conditioning(FlowModel.load(paths[name]).spec, n)
        for precision in args.precisions.split(","):
            model = FlowModel.load(paths[name])
            key = name if precision in ("float32", "fp32") else f"{name}_bfloat16"
            entry: dict = {"samples_per_s": {}}
            for bs in (int(float(b)) for b in args.block_sizes.split(",")):
                try:
                    model.to("cuda", block_size=bs).set_precision(precision)

                    def run_gpu():
                        model.sample(cond, keys, fold=0)
                        torch.cuda.synchronize()

                    rate = round(n / time_call(run_gpu, args.repeat))
                    print(f"cuda {key} block {bs}: {rate:,} samples/s", flush=True)
                except Exception as err:  # noqa: BLE001 - e.g. out of memory at the largest block
                    rate = f"error: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
                    print(f"cuda {key} block {bs}: FAILED {rate}", flush=True)
                    torch.cuda.empty_cache()
                entry["samples_per_s"][f"block{bs}"] = rate
            result[key] = entry
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--sizes", default="1e4,1e5")
    parser.add_argument("--precisions", default="float32,bfloat16",
                        help="sampling precisions to measure (the MAF baseline is always float32)")
    parser.add_argument("--bf16-kernels", choices=("auto", "both"), default="auto",
                        help="CPU bfloat16 kernels: the one this process picks (auto), or also the portable one (both)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: the CPU, and the GPU when CUDA is available; cpu; cuda: the GPU only")
    parser.add_argument("--block-sizes", default="65536,262144,1048576", help="GPU block sizes (rows per inverse call)")
    parser.add_argument("--gpu-objects", default="1e6", help="objects per GPU sample call")
    parser.add_argument("--cpu-time", action="store_true",
                        help="CPU rates: time with process_time (CPU seconds of this process; use with --threads 1 "
                             "on a shared, loaded machine, where wall time includes waiting for a core)")
    parser.add_argument("--jets-model", help="model folder to measure instead of the shipped jets model")
    parser.add_argument("--muons-model", help="model folder to measure instead of the shipped muons model")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        print(json.dumps({"error": f"--device cuda: torch.cuda.is_available() is False (torch {torch.__version__}: "
                                   "CPU-only build, no GPU or no driver)"}))
        raise SystemExit(2)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    global CLOCK
    if args.cpu_time and args.device != "cuda":
        CLOCK = time.process_time
    from machine import machine_info  # benchmarks/machine.py (sys.path[0] when run as a script)

    from flashsim_coffea.flows.sampler import shipped_model_path

    sizes = {s: int(float(s)) for s in args.sizes.split(",")}
    paths = {name: getattr(args, f"{name}_model") or shipped_model_path(name) for name in ("jets", "muons")}
    result: dict = measure_cpu(args, paths, sizes) if args.device in ("auto", "cpu") else {}
    result["threads"] = args.threads
    result["clock"] = "process_time" if CLOCK is time.process_time else "perf_counter"
    result["device"] = "cpu" if args.device == "auto" else args.device
    result["machine"] = machine_info()
    if cuda and args.device in ("auto", "cuda"):
        CLOCK = time.perf_counter  # GPU rates: always wall time
        result["cuda"] = measure_cuda(args, paths)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
