"""coffea processors of flashsim-coffea (importable, so that executors can unpickle them)."""

from .vbf_hmumu import MODES, VBFHmmProcessor

__all__ = ["MODES", "VBFHmmProcessor"]
