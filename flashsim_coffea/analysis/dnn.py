"""The VBF H→μμ DNN: its 25 inputs, the network, its on-disk format and worker-side inference.

Inputs (the 25 of the reference FlashSim study, docs/analysis.md, in this order,
:data:`INPUTS`): m_μμ, Δm_μμ, Δm_μμ/m_μμ, pT(μμ), ln pT(μμ), η(μμ), φ_CS, cos θ_CS, R(pT), ln z*, pT/η/φ of j1 and j2, QGL(j1), QGL(j2), m_jj,
ln m_jj, |Δη_jj|, min Δη(μμ, j), year, N_soft5, HT_soft2 — with year = 2018, N_soft5 = 0 and
HT_soft2 = 1.0 GeV fixed as that study did for both FullSim and FlashSim (:data:`FIXED_INPUTS`).

Network (in the spirit of the CMS one, whose weights are not public): inputs standardised
with the training mean/std, x' = (x − μ)/σ (σ = 1 for constant inputs), then for each hidden
width h ∈ (64, 32, 16): Linear → BatchNorm → tanh → Dropout(0.2), and a Linear → sigmoid
output. The fitted observable is ``DNN18Atan = atanh(score)`` (score clipped to
[0, 1 − 1e-12] so that it stays finite).

On disk (package data ``flashsim_coffea/models/dnn/``): ``model.safetensors`` (the torch
state dict) + ``card.json`` (inputs, scaling, architecture, training record, sha256 of the
weights). Inference runs in numpy (float64) from the stored tensors, so workers need no
torch threads and the result of a row does not depend on the batch; loaded models are kept
in a module-level cache keyed by (path, sha256) and never travel inside a pickled processor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cards import read_card, sha256_file, verify_weights, write_card
from ..errors import UserError

__all__ = [
    "INPUTS",
    "FIXED_INPUTS",
    "DEFAULT_MODEL_DIR",
    "dnn_inputs",
    "build_torch_model",
    "save_model",
    "DNNModel",
    "read_dnn_card",
    "check_dnn",
    "load_dnn",
    "dnn_atanh",
]

INPUTS: tuple[str, ...] = (
    "mass", "mass_res", "mass_res_rel", "mumu_pt", "mumu_log_pt", "mumu_eta",
    "phi_cs", "cos_theta_cs", "rpt", "log_zstar",
    "j1_pt", "j1_eta", "j1_phi", "j2_pt", "j2_eta", "j2_phi", "j1_qgl", "j2_qgl",
    "mjj", "log_mjj", "detajj", "min_deta", "year", "n_soft5", "ht_soft2",
)  # fmt: skip
FIXED_INPUTS = {"year": 2018.0, "n_soft5": 0.0, "ht_soft2": 1.0}
HIDDEN = (64, 32, 16)
DROPOUT = 0.2
BN_EPS = 1e-5
SCORE_MAX = 1.0 - 1e-12
DNN_FORMAT = "flashsim-coffea VBF H->mumu DNN v1"
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "dnn"


def dnn_inputs(variables: dict[str, np.ndarray]) -> np.ndarray:
    """(n_events, 25) float64 matrix of :data:`INPUTS` from the analysis variables."""
    n = len(variables["mass"])
    cols = [np.full(n, FIXED_INPUTS[k]) if k in FIXED_INPUTS else np.asarray(variables[k], dtype=np.float64) for k in INPUTS]
    return np.stack(cols, axis=1)


def build_torch_model(n_inputs: int = len(INPUTS), hidden: tuple[int, ...] = HIDDEN, dropout: float = DROPOUT):
    """torch ``nn.Sequential``: [Linear → BatchNorm1d → Tanh → Dropout] per hidden width, Linear → Sigmoid."""
    import torch.nn as nn

    layers: list = []
    width = n_inputs
    for h in hidden:
        layers += [nn.Linear(width, h), nn.BatchNorm1d(h, eps=BN_EPS), nn.Tanh(), nn.Dropout(dropout)]
        width = h
    layers += [nn.Linear(width, 1), nn.Sigmoid()]
    return nn.Sequential(*layers)


def save_model(model, mean: np.ndarray, std: np.ndarray, directory: str | Path, record: dict) -> Path:
    """Write ``model.safetensors`` + ``card.json`` (inputs, scaling, architecture, ``record``)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "model.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    save_file(state, str(weights))
    card = {
        "format": DNN_FORMAT,
        "inputs": list(INPUTS),
        "fixed_inputs": FIXED_INPUTS,
        "input_mean": [float(x) for x in mean],
        "input_std": [float(x) for x in std],
        "architecture": {"hidden": list(HIDDEN), "activation": "tanh", "batch_norm_eps": BN_EPS, "dropout": DROPOUT, "output": "sigmoid"},
        "weights_file": weights.name,
        "weights_sha256": sha256_file(weights),
        "training": record,
    }
    write_card(directory, card, indent=2, sort_keys=False)
    return directory


@dataclass
class DNNModel:
    """A loaded DNN for numpy inference: affine layers with batch norm folded in, tanh, sigmoid."""

    inputs: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]  # (W, b) per affine layer, BN folded
    card: dict

    def score(self, x: np.ndarray) -> np.ndarray:
        """Sigmoid output for an (n, 25) input matrix; rows with a NaN input give NaN."""
        h = (np.asarray(x, dtype=np.float64) - self.mean) / self.std
        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T + b
            if i < len(self.layers) - 1:
                h = np.tanh(h)
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-h[:, 0]))

    @classmethod
    def from_directory(cls, directory: str | Path) -> "DNNModel":
        from safetensors.numpy import load_file

        directory = Path(directory)
        card, _ = read_dnn_card(directory)
        t = {k: v.astype(np.float64) for k, v in load_file(str(directory / card["weights_file"])).items()}
        n_hidden = len(card["architecture"]["hidden"])
        eps = card["architecture"]["batch_norm_eps"]
        layers = []
        for i in range(n_hidden):  # Sequential indices: 4 modules per hidden block
            lin, bn = 4 * i, 4 * i + 1
            w, b = t[f"{lin}.weight"], t[f"{lin}.bias"]
            g = t[f"{bn}.weight"] / np.sqrt(t[f"{bn}.running_var"] + eps)
            layers.append((w * g[:, None], (b - t[f"{bn}.running_mean"]) * g + t[f"{bn}.bias"]))
        out = 4 * n_hidden
        layers.append((t[f"{out}.weight"], t[f"{out}.bias"]))
        return cls(tuple(card["inputs"]), np.asarray(card["input_mean"]), np.asarray(card["input_std"]), layers, card)


_CACHE: dict[tuple[str, str], DNNModel] = {}


def read_dnn_card(directory: str | Path) -> tuple[dict, Path]:
    """(card, card path) of a DNN model directory; a UserError (naming the file and what is
    wrong) unless it is a DNN card with inputs matching this version's and verified weights."""
    card, card_path = read_card(directory, (DNN_FORMAT,), what="VBF H->mumu DNN (train one with `flashsim train-dnn`)",
                                required=("weights_file", "weights_sha256", "inputs", "input_mean", "input_std", "architecture"))
    if tuple(card["inputs"]) != INPUTS:
        raise UserError(f"{card_path}: DNN card inputs {card['inputs']} differ from this version's {list(INPUTS)}")
    return card, card_path


def check_dnn(directory: str | Path | None = None) -> str:
    """Check the DNN in ``directory`` (default: the shipped one) on the driver, before any work:
    card, inputs and weight checksum; returns the weights' SHA-256."""
    card, card_path = read_dnn_card(Path(directory) if directory is not None else DEFAULT_MODEL_DIR)
    return verify_weights(card_path, card["weights_file"], card["weights_sha256"])[1]


def load_dnn(directory: str | Path | None = None) -> DNNModel:
    """The DNN in ``directory`` (default: the shipped one), cached per (path, weights sha256)."""
    directory = Path(directory) if directory is not None else DEFAULT_MODEL_DIR
    digest = check_dnn(directory)
    key = (str(directory.resolve()), digest)
    if key not in _CACHE:
        _CACHE[key] = DNNModel.from_directory(directory)
    return _CACHE[key]


def dnn_atanh(score: np.ndarray) -> np.ndarray:
    """DNN18Atan = atanh(clip(score, 0, 1 − 1e-12))."""
    return np.arctanh(np.clip(score, 0.0, SCORE_MAX))
