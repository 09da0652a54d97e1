"""Conditional normalizing flows: preprocessing, model, checkpoints, training, sampling.

Public API::

    from flashsim_coffea.flows import FlowModel, load_model
    model = load_model("flashsim_coffea/models/jets")        # cached per (path, SHA-256)
    targets = model.sample(cond, keys, fold=0)              # dict target -> np.ndarray
    reco = model.spec.rebuild(targets, gen_fields)          # NanoAOD reco fields

    from flashsim_coffea.flows import train, TrainConfig, load_data, save_data
"""

from .checkpoint import read_card, save_checkpoint
from .data import TrainingData, load_data, save_data
from .model import ARCHITECTURES, build_flow, count_parameters
from .preprocess import Preprocessor
from .sampler import FlowModel, load_model, shipped_model_path
from .train import TINY, TrainConfig, train

__all__ = [
    "ARCHITECTURES", "FlowModel", "Preprocessor", "TINY", "TrainConfig", "TrainingData", "build_flow",
    "count_parameters", "load_data", "load_model", "read_card", "save_checkpoint", "save_data",
    "shipped_model_path", "train",
]
