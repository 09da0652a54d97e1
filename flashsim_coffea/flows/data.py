"""Training-data files written by ``flashsim extract`` and read by ``flashsim train``.

A DATA file holds float32 matrices ``cond`` (N, C) and ``targets`` (N, T) of *raw* physics
values (preprocessing is fitted at training time and stored in the model card), int64 noise
keys ``key_<name>``, float32 Gen fields ``gen_<field>`` needed to rebuild reco objects, and
the provenance JSON (spec name and hash, input files, drop counts). Two containers:

* ``.npz``: numpy arrays plus ``provenance`` as a 0-d unicode array (loads with
  ``allow_pickle=False``);
* ``.safetensors``: the same tensors, provenance in the header metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flashsim_coffea.errors import UserError
from flashsim_coffea.safe_write import atomic_write

__all__ = ["TrainingData", "save_data", "load_data"]


@dataclass
class TrainingData:
    cond: np.ndarray
    targets: np.ndarray
    keys: dict[str, np.ndarray]
    gen: dict[str, np.ndarray]
    provenance: dict

    def __len__(self) -> int:
        return len(self.cond)


def _arrays(cond, targets, keys, gen) -> dict[str, np.ndarray]:
    out = {"cond": np.ascontiguousarray(cond, dtype=np.float32), "targets": np.ascontiguousarray(targets, dtype=np.float32)}
    out.update({f"key_{k}": np.ascontiguousarray(v, dtype=np.int64) for k, v in keys.items()})
    out.update({f"gen_{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in gen.items()})
    return out


def save_data(path: str | Path, cond, targets, keys: dict, gen: dict, provenance: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _arrays(cond, targets, keys, gen)
    if path.suffix not in (".safetensors", ".npz"):
        raise UserError(f"{path}: training data must be a .npz or .safetensors file")
    with atomic_write(path) as tmp:  # a temporary file beside it, renamed when complete
        if path.suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file(arrays, tmp, metadata={"provenance": json.dumps(provenance)})
        else:
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the name
                np.savez(f, provenance=np.array(json.dumps(provenance)), **arrays)
    return path


def load_data(path: str | Path) -> TrainingData:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: training data file not found (create it with `flashsim extract`)")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as f:
                arrays = {k: f.get_tensor(k) for k in f.keys()}
                provenance = json.loads((f.metadata() or {}).get("provenance", "{}"))
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            provenance = json.loads(str(arrays.pop("provenance")))
        else:
            raise UserError(f"{path}: training data must be a .npz or .safetensors file")
    except UserError:
        raise
    except Exception as err:  # corrupted zip / header
        raise UserError(f"{path}: cannot read training data ({err})") from err
    if "cond" not in arrays or "targets" not in arrays:
        raise UserError(f"{path}: not a flashsim training-data file (no cond/targets arrays)")
    return TrainingData(
        arrays["cond"],
        arrays["targets"],
        {k[4:]: v for k, v in arrays.items() if k.startswith("key_")},
        {k[4:]: v for k, v in arrays.items() if k.startswith("gen_")},
        provenance,
    )
