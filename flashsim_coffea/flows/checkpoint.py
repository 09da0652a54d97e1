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

The sizes a flow is built from are checked when the card is read (:func:`check_card_fields`,
before any flow is built): ``n_targets``, ``n_context``, the ``architecture`` (and the discrete
head's) must be numbers of the right type in sane ranges (:data:`CARD_LIMITS`), so that an edited
card (``hidden`` 10⁶, ``n_targets`` ``"12"``) is one line naming the field, not a traceback or all
the memory. Weights that do not fit the card's architecture are described in one line
(:func:`describe_mismatch`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from flashsim_coffea.cards import CARD_NAME, read_card as _read_card, resolve_card_path, sha256_file, verify_weights, write_card
from flashsim_coffea.errors import UserError
from flashsim_coffea.safe_write import atomic_write

__all__ = ["FORMAT", "CARD_NAME", "CARD_LIMITS", "WEIGHTS_NAME", "save_checkpoint", "read_card", "check_card_fields",
           "describe_mismatch", "load_weights", "resolve_card_path", "sha256_file"]

FORMAT = "flashsim-flow/1"
WEIGHTS_NAME = "model.safetensors"

#: the card fields a flow is built from: (type, lowest, highest) — ``int`` fields take no bool or
#: float, ``float`` fields any finite number; optional fields (``architecture.dropout``, the head)
#: are checked when present
CARD_LIMITS = {
    "n_targets": (int, 1, 1_000),
    "n_context": (int, 0, 10_000),
    "architecture.layers": (int, 1, 64),
    "architecture.hidden": (int, 1, 8_192),
    "architecture.blocks": (int, 1, 32),
    "architecture.bins": (int, 1, 1_024),
    "architecture.tail_bound": (float, 1e-3, 1e3),
    "architecture.dropout": (float, 0.0, 0.99),
    "head.n_inputs": (int, 1, 10_000),
    "head.architecture.hidden": (int, 1, 8_192),
    "head.architecture.layers": (int, 1, 64),
}
_OPTIONAL = ("architecture.dropout", "head.")


def save_checkpoint(directory: str | Path, state_dict: dict[str, torch.Tensor], card: dict,
                    weights_name: str = WEIGHTS_NAME) -> Path:
    """Write weights then the card (with the weights' SHA-256); returns the card path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / weights_name
    with atomic_write(weights) as tmp:  # an unpredictable temporary name beside it, renamed when complete
        save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp)
    card = {**card, "format": FORMAT, "weights": weights_name, "weights_sha256": sha256_file(weights)}
    return write_card(directory, card)


def read_card(path: str | Path) -> tuple[dict, Path]:
    """(card, card path) of a flow model; a UserError unless it is a ``flashsim-flow/1`` card whose
    sizes are sane (:func:`check_card_fields`)."""
    card, card_path = _read_card(path, (FORMAT,), what="FlashSim flow model", required=("weights", "weights_sha256"))
    check_card_fields(card, card_path)
    return card, card_path


def check_card_fields(card: dict, card_path: Path | str) -> None:
    """A one-line UserError naming ``card_path``, the field and its value unless every field of
    :data:`CARD_LIMITS` in ``card`` has its type and range (the head's only when the card has one)."""
    def fail(name: str, value, want: str):
        raise UserError(f"{card_path}: {name} = {value!r} {want}; the card is edited or corrupt: "
                        "restore it or train the model again")

    for name, (kind, low, high) in CARD_LIMITS.items():
        node, present = card, True
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                present = False
                break
            node = node[part]
        if not present:
            if not name.startswith(_OPTIONAL):
                fail(name, None, "is missing")
            continue
        value = node
        if kind is int:
            ok_type = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok_type = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok_type:
            fail(name, value, f"must be {'an integer' if kind is int else 'a finite number'} in [{low:g}, {high:g}]")
        if not low <= value <= high:
            fail(name, value, f"is out of range [{low:g}, {high:g}]")
    extensions = card.get("architecture", {}).get("extensions", [])
    ok = isinstance(extensions, list) and all(
        isinstance(e, dict) and {"targets", "layers"} <= set(e) <= {"targets", "layers", "hidden", "blocks"}
        and all(isinstance(e[k], int) and not isinstance(e[k], bool) and 1 <= e[k] <= 1_000 for k in e)
        for e in extensions)
    if not ok or (ok and sum(e["targets"] for e in extensions) > card["n_targets"] - 2):
        fail("architecture.extensions", extensions, "must be a list of {targets, layers[, hidden, blocks]} (integers ≥ 1) leaving ≥ 2 "
             "targets to the architecture's layers")


def describe_mismatch(err: BaseException) -> str:
    """One line for torch's error of weights that do not fit a model (one line per tensor in torch):
    how many tensors do not fit and the first of them."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    problems = [line for line in lines[1:] if line] or lines
    first = problems[0] if problems else type(err).__name__
    sizes = sum(line.startswith("size mismatch") for line in problems)
    count = f"{sizes} tensor(s) of another size" if sizes else f"{len(problems)} problem(s)"
    return f"{count}; first: {first[:300]}"


def load_weights(card: dict, card_path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Weights of a card, checked against its SHA-256; returns (state_dict, sha256)."""
    weights, digest = verify_weights(card_path, card["weights"], card.get("weights_sha256"))
    try:
        return load_file(str(weights)), digest
    except Exception as err:  # safetensors raises its own error types
        raise UserError(f"{weights}: cannot read safetensors weights ({err})") from err
