"""Checkpoint format: ``model.safetensors`` (weights) + ``card.json`` (everything else).

The card is plain JSON::

    {"format": "flashsim-flow/1", "spec": {...}, "spec_hash": "<sha256>",
     "preprocessing": {...}, "architecture": {...}, "n_targets": T, "n_context": C,
     "sampling": {"block_size": 2048, "seed": 0},
     "data": {provenance}, "seed": 0, "metrics": {...}, "package_version": "...",
     "weights": "model.safetensors", "weights_sha256": "<sha256>"}

Loading never unpickles: weights are read with ``safetensors`` and verified against the
SHA-256 in the card. A pickle checkpoint (``.pt``/``.pth``/``.ckpt``/``.pkl``), a missing or
corrupted weight file, or a card of another format raise :class:`UserError`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from flashsim_coffea.errors import UserError

__all__ = ["FORMAT", "CARD_NAME", "WEIGHTS_NAME", "save_checkpoint", "read_card", "load_weights", "resolve_card_path", "sha256_file"]

FORMAT = "flashsim-flow/1"
CARD_NAME = "card.json"
WEIGHTS_NAME = "model.safetensors"
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(directory: str | Path, state_dict: dict[str, torch.Tensor], card: dict,
                    card_name: str = CARD_NAME, weights_name: str = WEIGHTS_NAME) -> Path:
    """Write weights then the card (with the weights' SHA-256); returns the card path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / weights_name
    tmp = weights.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(tmp))
    tmp.replace(weights)
    card = {**card, "format": FORMAT, "weights": weights_name, "weights_sha256": sha256_file(weights)}
    card_path = directory / card_name
    tmp = card_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(card, indent=1, sort_keys=True))
    tmp.replace(card_path)
    return card_path


def resolve_card_path(path: str | Path) -> Path:
    """The card of a model given as a directory, a card.json or a .safetensors file."""
    path = Path(path)
    if path.suffix in _PICKLE_SUFFIXES:
        raise UserError(
            f"{path}: pickle checkpoints are refused (unpickling can run arbitrary code); "
            "flashsim models are a card.json + model.safetensors directory"
        )
    if path.is_dir():
        path = path / CARD_NAME
    elif path.suffix == ".safetensors":
        path = path.with_name(CARD_NAME)
    if not path.is_file():
        raise UserError(f"{path}: model card not found (expected a directory with {CARD_NAME} and {WEIGHTS_NAME})")
    return path


def read_card(path: str | Path) -> tuple[dict, Path]:
    card_path = resolve_card_path(path)
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{card_path}: model card is not valid JSON ({err})") from err
    if card.get("format") != FORMAT:
        raise UserError(f"{card_path}: unknown model card format {card.get('format')!r} (expected {FORMAT!r})")
    return card, card_path


def load_weights(card: dict, card_path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Weights of a card, checked against its SHA-256; returns (state_dict, sha256)."""
    weights = card_path.parent / card["weights"]
    if not weights.is_file():
        raise UserError(f"{weights}: weight file missing (the model card {card_path} refers to it)")
    digest = sha256_file(weights)
    if digest != card.get("weights_sha256"):
        raise UserError(f"{weights}: weight file corrupted or replaced (SHA-256 {digest[:12]}… does not match the card)")
    try:
        return load_file(str(weights)), digest
    except Exception as err:  # safetensors raises its own error types
        raise UserError(f"{weights}: cannot read safetensors weights ({err})") from err
