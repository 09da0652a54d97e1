"""flashsim-coffea: FlashSim (conditional normalizing flows) for NanoAOD Jets and Muons in coffea.

Main entry points (imported lazily, so ``import flashsim_coffea`` and the CLI stay fast):

* :class:`FlashSim` — inject FlashSim ``Jet``/``Muon`` into NanoEvents (``flashsim_coffea.inject``)
* :class:`FoldHist` — the fold-weighted upsampling accumulator (``flashsim_coffea.hists``)
"""

__version__ = "0.1.0"

_LAZY = {"FlashSim": "flashsim_coffea.inject", "FoldHist": "flashsim_coffea.hists"}
__all__ = ["FlashSim", "FoldHist", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flashsim_coffea' has no attribute {name!r}")
