"""What the runner asks of a processor beyond coffea's ``ProcessorABC``: an optional interface.

Any coffea processor runs (``process`` and ``postprocess`` are all coffea needs). A processor
may also implement any of these methods, which the runner then uses:

* ``check() -> None`` — driver-side checks before any work (model cards, weights …): raise a
  :class:`~flashsim_coffea.errors.UserError` naming what is wrong. Default: nothing to check.
* ``required_branches(available: set[str] | None = None) -> list[str]`` — the flat branch
  names the processor reads (``available``: a file's branches, when the answer depends on the
  file's format). Default: none.
* ``missing_branches(available: set[str]) -> list[str]`` — the required branches absent from a
  file's ``available`` ones; every readable non-empty file is checked before any chunk runs.
  Default: :meth:`required_branches` minus ``available``.
* ``empty_output() -> dict`` — the output of a dataset none of whose files gave a chunk (all
  empty or skipped), so that it still appears in the result with its report. Default: ``{}``.
* ``simulation_folds() -> int | None`` — the FlashSim upsampling factor N when the processor
  simulates with FlashSim, else None; the inputs of a simulating processor are checked before
  any work (not already folded by ``flashsim simulate``, no repeated event identity with N > 1).
  Default: N = its ``folds`` attribute (1 without one) when it has a ``flashsim`` attribute that
  is set or ``mode == "flashsim"`` (the convention of the processors here), else None.

A processor's output per dataset should hold ``"files": {file: events read}``: the runner's
``skipped`` report gives, per file, its entries minus these (the events of skipped chunks).

:class:`FlashSimProcessor` declares the interface (a ``typing.Protocol``, runtime-checkable:
``isinstance(proc, FlashSimProcessor)`` holds when all five methods are there);
:class:`ProcessorDefaults` is a mixin with the defaults, to inherit beside ``ProcessorABC``;
:func:`processor_interface` gives the runner one object with all four methods for any
processor: the processor itself when it has them, else a view that completes it with the
defaults (which read the processor's attributes).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["METHODS", "FlashSimProcessor", "ProcessorDefaults", "processor_interface"]

#: the optional methods, in the order the runner calls them
METHODS = ("check", "required_branches", "missing_branches", "empty_output", "simulation_folds")


@runtime_checkable
class FlashSimProcessor(Protocol):
    """The optional processor interface of the runner (module docstring)."""

    def check(self) -> None: ...

    def required_branches(self, available: set[str] | None = None) -> list[str]: ...

    def missing_branches(self, available: set[str]) -> list[str]: ...

    def empty_output(self) -> dict: ...

    def simulation_folds(self) -> int | None: ...


class ProcessorDefaults:
    """The defaults of the interface: nothing to check, no required branches, an empty output::

        class MyProcessor(ProcessorDefaults, coffea.processor.ProcessorABC):
            def required_branches(self, available=None):
                return ["Muon_pt", "Muon_eta"]
    """

    def check(self) -> None:
        return None

    def required_branches(self, available: set[str] | None = None) -> list[str]:
        return []

    def missing_branches(self, available: set[str]) -> list[str]:
        available = set(available)
        return [b for b in self.required_branches(available) if b not in available]

    def empty_output(self) -> dict:
        return {}

    def simulation_folds(self) -> int | None:
        proc = getattr(self, "processor", self)  # the completed processor's attributes (_Completed)
        if getattr(proc, "flashsim", None) is None and getattr(proc, "mode", None) != "flashsim":
            return None
        return int(getattr(proc, "folds", 1) or 1)


class _Completed(ProcessorDefaults):
    """A processor's own interface methods, the defaults for those it lacks."""

    def __init__(self, proc: Any):
        self.processor = proc
        for name in METHODS:
            own = getattr(proc, name, None)
            if callable(own):
                setattr(self, name, own)


def processor_interface(proc: Any) -> FlashSimProcessor:
    """``proc`` when it implements :class:`FlashSimProcessor`, else ``proc``'s methods of it
    completed by :class:`ProcessorDefaults`."""
    if isinstance(proc, FlashSimProcessor):
        return proc
    return _Completed(proc)
