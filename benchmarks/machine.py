"""What machine a benchmark ran on: CPU model, the ISA extensions that matter for the flows, cores,
torch version and the bfloat16 CPU kernel in use. Every benchmark script puts it in its JSON::

    from machine import machine_info
    result["machine"] = machine_info()

-> {"cpu_model": "AMD EPYC 7763 64-Core Processor", "isa_flags": ["avx", "avx2", "fma", ...],
    "cores": 2, "torch": "2.13.0+cpu", "bf16_kernel": "portable"}

``bf16_kernel`` is what ``FlowModel.set_precision("bfloat16")`` uses on this CPU:
``"fused-onednn"`` (oneDNN's fused linear; fast with AMX or AVX512-BF16) or ``"portable"``
(float32 products of bfloat16-rounded operands; see ``flashsim_coffea.flows.fast_inverse``).
Reading it runs the kernel's one-time probe. ``python benchmarks/machine.py`` prints the dict.
"""

from __future__ import annotations

import json
import os
import platform
import warnings

#: CPU flags reported when present (/proc/cpuinfo names; x86 and, for Arm, "asimd"/"sve"/"bf16")
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "asimd", "sve", "sve2", "bf16")


def _cpuinfo() -> tuple[str | None, set[str]]:
    """(model name, flags) from /proc/cpuinfo, or (None, empty) where there is none."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return None, set()
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and model is None and value.strip():
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def machine_info() -> dict:
    """{"cpu_model", "isa_flags", "cores", "torch", "bf16_kernel"} of this machine (see the module doc)."""
    model, flags = _cpuinfo()
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count()
    info = {"cpu_model": model or platform.processor() or platform.machine() or "unknown",
            "isa_flags": [f for f in ISA_FLAGS if f in flags], "cores": cores, "torch": None, "bf16_kernel": None}
    try:
        import torch

        info["torch"] = torch.__version__
        from flashsim_coffea.flows.fast_inverse import bf16_kernel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the portable kernel's warning: the value says it
            info["bf16_kernel"] = bf16_kernel()
    except Exception as err:  # noqa: BLE001 - a report must never crash a benchmark
        info["bf16_kernel"] = info["bf16_kernel"] or f"unknown ({type(err).__name__})"
    return info


if __name__ == "__main__":
    print(json.dumps(machine_info()))
