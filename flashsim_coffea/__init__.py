"""flashsim-coffea: FlashSim (conditional normalizing flows) for NanoAOD Jets and Muons in coffea.

Main entry points (imported lazily, so ``import flashsim_coffea`` and the CLI stay fast):

* :class:`FlashSim` — inject FlashSim ``Jet``/``Muon`` into NanoEvents (``flashsim_coffea.inject``)
* :class:`FoldHist` — the fold-weighted upsampling histogram, a ``hist.Hist`` (``flashsim_coffea.hists``)
"""

__version__ = "0.1.0"

_LAZY = {"FlashSim": "flashsim_coffea.inject", "FoldHist": "flashsim_coffea.hists"}
__all__ = ["FlashSim", "FoldHist", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flashsim_coffea' has no attribute {name!r}")


def _checkout_processors() -> None:
    """Resolve ``flashsim_coffea.processors`` when this package is imported from a source checkout.

    An install maps the repository's top-level ``processors/`` to ``flashsim_coffea.processors``
    (setup.py; the editable install's finder does it too). With the repository root on
    ``sys.path`` (``python -m pytest`` there) but flashsim-coffea installed from a wheel, or not
    at all, this ``flashsim_coffea`` comes from the checkout and has no ``processors`` folder: a
    last-resort finder for that one name gives the checkout's. Nothing happens in an install.
    """
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(here)
    folder = os.path.join(repo, "processors")
    checkout = os.path.isfile(os.path.join(folder, "__init__.py")) and os.path.isfile(os.path.join(repo, "pyproject.toml"))
    if not checkout or os.path.isdir(os.path.join(here, "processors")):
        return

    class _CheckoutProcessorsFinder:
        @staticmethod
        def find_spec(fullname, path=None, target=None):
            if fullname != f"{__name__}.processors":
                return None
            from importlib.util import spec_from_file_location

            return spec_from_file_location(fullname, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder])

    if not any(getattr(f, "__name__", "") == _CheckoutProcessorsFinder.__name__ for f in sys.meta_path):
        sys.meta_path.append(_CheckoutProcessorsFinder)


_checkout_processors()
