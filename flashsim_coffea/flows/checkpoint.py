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

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from flashsim_coffea.cards import CARD_NAME, read_card as _read_card, resolve_card_path, sha256_file, verify_weights, write_card
from flashsim_coffea.errors import UserError

__all__ = ["FORMAT", "CARD_NAME", "WEIGHTS_NAME", "save_checkpoint", "read_card", "load_weights", "resolve_card_path", "sha256_file"]

FORMAT = "flashsim-flow/1"
WEIGHTS_NAME = "model.safetensors"


def save_checkpoint(directory: str | Path, state_dict: dict[str, torch.Tensor], card: dict,
                    weights_name: str = WEIGHTS_NAME) -> Path:
    """Write weights then the card (with the weights' SHA-256); returns the card path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / weights_name
    tmp = weights.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(tmp))
    tmp.replace(weights)
    card = {**card, "format": FORMAT, "weights": weights_name, "weights_sha256": sha256_file(weights)}
    return write_card(directory, card)


def read_card(path: str | Path) -> tuple[dict, Path]:
    """(card, card path) of a flow model; a UserError unless it is a ``flashsim-flow/1`` card."""
    return _read_card(path, (FORMAT,), what="FlashSim flow model", required=("weights", "weights_sha256"))


def load_weights(card: dict, card_path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Weights of a card, checked against its SHA-256; returns (state_dict, sha256)."""
    weights, digest = verify_weights(card_path, card["weights"], card.get("weights_sha256"))
    try:
        return load_file(str(weights)), digest
    except Exception as err:  # safetensors raises its own error types
        raise UserError(f"{weights}: cannot read safetensors weights ({err})") from err
