"""Model cards and checksums, for every model the project ships (flows and the DNN).

A model is a directory with ``card.json`` (plain JSON: format, provenance, metrics, …) and a
``safetensors`` weight file whose SHA-256 the card records. Nothing here unpickles: a pickle
checkpoint is refused by name, and weights are verified against the card before they are read.
Provenance records files by name, size and SHA-256 (:func:`file_record`), never by the absolute
path of the machine that trained the model.

torch-free, so that checking a model on the driver stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import UserError
from .safe_write import atomic_write

__all__ = ["CARD_NAME", "sha256_file", "file_record", "json_safe", "resolve_card_path", "read_card", "verify_weights",
           "write_card"]

CARD_NAME = "card.json"
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")


def sha256_file(path: str | Path) -> str:
    """SHA-256 (hex) of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_record(path: str | Path, **extra) -> dict:
    """``{"name", "bytes", "sha256", **extra}`` of a file: how provenance names its inputs."""
    path = Path(path)
    return {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path), **extra}


def resolve_card_path(path: str | Path, weights_name: str = "model.safetensors") -> Path:
    """The card of a model given as a directory, a card.json or a .safetensors file."""
    path = Path(path)
    if path.suffix in _PICKLE_SUFFIXES:
        raise UserError(
            f"{path}: pickle checkpoints are refused (unpickling can run arbitrary code); "
            f"flashsim models are a {CARD_NAME} + {weights_name} directory"
        )
    if path.is_dir():
        path = path / CARD_NAME
    elif path.suffix == ".safetensors":
        path = path.with_name(CARD_NAME)
    if not path.is_file():
        raise UserError(f"{path}: model card not found (expected a directory with {CARD_NAME} and {weights_name})")
    return path


def read_card(path: str | Path, formats: tuple[str, ...], what: str = "model",
              required: tuple[str, ...] = ()) -> tuple[dict, Path]:
    """(card, card path) of the model at ``path``; a UserError unless the card is JSON, its
    ``format`` is one of ``formats`` and it has the ``required`` keys."""
    card_path = resolve_card_path(path)
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{card_path}: model card is not valid JSON ({err})") from err
    if not isinstance(card, dict) or card.get("format") not in formats:
        fmt = card.get("format") if isinstance(card, dict) else None
        raise UserError(f"{card_path}: not a {what} card (format {fmt!r}, expected {' or '.join(map(repr, formats))})")
    missing = [k for k in required if k not in card]
    if missing:
        raise UserError(f"{card_path}: {what} card lacks {', '.join(missing)}")
    return card, card_path


def verify_weights(card_path: Path, name: str, sha256: str | None) -> tuple[Path, str]:
    """(weights path, digest) of the weight file ``name`` beside ``card_path``, checked against ``sha256``."""
    weights = card_path.parent / name
    if not weights.is_file():
        raise UserError(f"{weights}: weight file missing (the model card {card_path} refers to it)")
    digest = sha256_file(weights)
    if digest != sha256:
        raise UserError(f"{weights}: weight file corrupted or replaced (SHA-256 {digest[:12]}… does not match the card)")
    return weights, digest


def write_card(directory: str | Path, card: dict, indent: int = 1, sort_keys: bool = True) -> Path:
    """Write ``card`` as ``directory/card.json`` atomically (:func:`flashsim_coffea.safe_write.atomic_write`:
    an unpredictable temporary name beside it, then rename)."""
    card_path = Path(directory) / CARD_NAME
    with atomic_write(card_path) as tmp:
        Path(tmp).write_text(json.dumps(card, indent=indent, sort_keys=sort_keys) + ("\n" if not sort_keys else ""))
    return card_path


def json_safe(x: Any) -> Any:
    """A JSON-safe copy of a record (cards, report summaries): NaN/inf → None, numpy scalars →
    Python numbers, Paths → str, mappings and sequences recursively."""
    if isinstance(x, Mapping):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
