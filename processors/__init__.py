"""coffea processors of flashsim-coffea (importable, so that executors can unpickle them)."""

from .vbf_hmumu import MODES, VBFHmmProcessor
from .zmumu_jets import ZmumuJetsProcessor

__all__ = ["MODES", "VBFHmmProcessor", "ZmumuJetsProcessor"]
