"""Arithmetic precision in which the flows are sampled (torch-free, so configuration checks stay cheap).

``float32`` (default): every product of the flow inverse in float32. ``bfloat16``: the
conditioner networks' products take bfloat16 operands with float32 accumulation,
y = bf16([relu](bf16(x)·bf16(W)ᵀ + bf16(b))) (see :mod:`.flows.fast_inverse`).

On CPU those products run through oneDNN's fused kernel where a probe shows that it works
(AMX/AVX-512 CPUs), else through a portable kernel computing the same formula (one warning per
process). ``FLASHSIM_FORCE_PORTABLE_KERNELS=1`` in the environment forces the portable kernel
(tests, or a machine whose fused kernel misbehaves); it is read when the choice is made
(:func:`.flows.fast_inverse.bf16_kernel`).
"""

from __future__ import annotations

import os

from .errors import UserError

__all__ = ["PRECISION_NAMES", "PORTABLE_KERNELS_ENV", "check_precision", "portable_kernels_forced"]

#: environment variable that forces the portable bfloat16 CPU kernel when set to 1/true/yes/on
PORTABLE_KERNELS_ENV = "FLASHSIM_FORCE_PORTABLE_KERNELS"

PRECISION_NAMES = ("float32", "bfloat16")
_ALIASES = {"fp32": "float32", "bf16": "bfloat16"}


def check_precision(precision: str) -> str:
    """Canonical precision name (``float32`` or ``bfloat16``; aliases fp32, bf16), or a UserError naming the choices."""
    name = _ALIASES.get(str(precision), str(precision))
    if name not in PRECISION_NAMES:
        raise UserError(f"unknown sampling precision {precision!r}; choose one of {', '.join(PRECISION_NAMES)} (or fp32, bf16)")
    return name


def portable_kernels_forced() -> bool:
    """Whether ``FLASHSIM_FORCE_PORTABLE_KERNELS`` asks for the portable bfloat16 CPU kernel (1, true, yes, on)."""
    return os.environ.get(PORTABLE_KERNELS_ENV, "").strip().lower() in ("1", "true", "yes", "on")
