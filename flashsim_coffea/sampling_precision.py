"""Arithmetic precision in which the flows are sampled (torch-free, so configuration checks stay cheap).

``float32`` (default): every product of the flow inverse in float32. ``bfloat16``: the
conditioner networks' products take bfloat16 operands (see :mod:`.flows.fast_inverse`).
"""

from __future__ import annotations

from .errors import UserError

__all__ = ["PRECISION_NAMES", "check_precision"]

PRECISION_NAMES = ("float32", "bfloat16")
_ALIASES = {"fp32": "float32", "bf16": "bfloat16"}


def check_precision(precision: str) -> str:
    """Canonical precision name (``float32`` or ``bfloat16``; aliases fp32, bf16), or a UserError naming the choices."""
    name = _ALIASES.get(str(precision), str(precision))
    if name not in PRECISION_NAMES:
        raise UserError(f"unknown sampling precision {precision!r}; choose one of {', '.join(PRECISION_NAMES)} (or fp32, bf16)")
    return name
