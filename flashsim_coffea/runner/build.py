"""The VBF H→μμ processor from command options: one place for ``flashsim run`` and ``flashsim closure``.

:func:`make_processor` turns the options ``--mode``, ``--folds``, ``--no-dnn``/``--dnn-model``,
``--jets-model``/``--muons-model``/``--pileup-jets-model``, ``--threads``, ``--device`` and
``--precision`` into a :class:`flashsim_coffea.processors.VBFHmmProcessor`:

* the FlashSim options need flashsim mode (a UserError naming them otherwise) and give the
  processor a :class:`flashsim_coffea.inject.FlashSim` (it carries only model paths, cheap to
  pickle to workers): a model folder, or the shipped model when not given; pile-up jets off
  with ``False`` or ``"none"``;
* without any of them the processor makes its own default ``FlashSim()``, except that the
  sampling threads default to :func:`~flashsim_coffea.runner.executors.default_threads` of the
  executor (the samples do not depend on the number of threads);
* a device other than the CPU is checked here, once, not on every worker. The models
  themselves are checked by the processor's ``check()``, before the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import UserError
from .executors import default_threads

__all__ = ["MODEL_OPTIONS", "make_processor"]

#: model name → its command-line option
MODEL_OPTIONS = {"jets": "--jets-model", "muons": "--muons-model", "pileup_jets": "--pileup-jets-model"}


def _given(value: Any) -> bool:
    return value is not None and value != ""


def make_processor(mode: str = "fullsim", folds: int = 1, dnn: bool | str | Path = True,
                   models: Mapping[str, str | Path | bool | None] | None = None, threads: int | None = None,
                   device: str = "cpu", precision: str = "float32", executor: Any = "iterative"):
    """The VBFHmmProcessor the options describe (module docstring); it loads no model.

    ``dnn``: True (the shipped DNN), False (none) or a model folder; ``models``: ``{"jets",
    "muons", "pileup_jets"}`` → a model folder, None (the shipped one), or for ``pileup_jets``
    False/``"none"`` (no FlashSim pile-up jets); ``threads``: FlashSim sampling threads (None:
    :func:`~flashsim_coffea.runner.executors.default_threads` of ``executor``).
    """
    from flashsim_coffea.processors import VBFHmmProcessor

    from ..sampling_precision import check_precision

    models = dict(models or {})
    unknown = sorted(set(models) - set(MODEL_OPTIONS))
    if unknown:
        raise UserError(f"unknown FlashSim model(s) {', '.join(unknown)}; known: {', '.join(MODEL_OPTIONS)}")
    simulator = None
    effective_threads = threads if threads is not None else default_threads(executor)
    asked = (threads is not None or any(_given(v) for v in models.values()) or device != "cpu"
             or check_precision(precision) != "float32")
    if asked or (mode == "flashsim" and effective_threads != 1):
        if mode != "flashsim":
            raise UserError("--jets-model/--muons-model/--pileup-jets-model/--device/--precision/--threads need "
                            "--mode flashsim")
        from ..inject import FlashSim

        # None or "" is the shipped model, False or "none" none (flows.bundle.resolve_model)
        simulator = FlashSim({name: value if _given(value) or value is False else None for name, value in models.items()},
                             device=device, precision=precision, threads=effective_threads)
        if device != "cpu":  # fail here, not on every worker
            from ..flows.sampler import check_device

            check_device(device)
    return VBFHmmProcessor(mode=mode, folds=folds, dnn=dnn, flashsim=simulator)
