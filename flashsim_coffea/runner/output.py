"""The output files of a run: checked before it, written after it.

* :func:`check_outputs` — before any work: ``-o`` and ``--root`` are two different files, and
  each may be written (:func:`flashsim_coffea.safe_write.check_output`: never an input — any
  file of the filesets or a fileset JSON, under any spelling, symbolic or hard link —, an
  existing one only with ``force``, a folder that exists and is writable).
* :func:`save_outputs` — the ``coffea.util.save`` file (FoldHists saved as plain ``hist.Hist``,
  readable without flashsim_coffea: :func:`flashsim_coffea.outputs.portable`) and the ROOT file
  of histograms (:func:`write_root`), each written to a temporary file renamed at the end
  (:func:`flashsim_coffea.safe_write.atomic_write`), so an interrupted write leaves no
  truncated output.
* :func:`lock_outputs` — while a run writes them, the lock of each output
  (:func:`flashsim_coffea.safe_write.output_lock`): a second run to the same file fails at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..safe_write import atomic_write, check_output, output_lock, same_file
from .fileset import canonical_fileset, is_remote

__all__ = ["check_outputs", "lock_outputs", "save_outputs", "write_root"]


def _input_paths(inputs: Iterable[Any]) -> list[str]:
    """Local paths of ``inputs`` (paths and/or filesets)."""
    paths: list[str] = []
    for i in inputs:
        if isinstance(i, Mapping):  # a fileset
            for spec in canonical_fileset(i).values():
                paths.extend(f for f in spec["files"] if not is_remote(f))
        elif not is_remote(str(i)):
            paths.append(str(i))
    return paths


def check_outputs(output: str | Path | None, root: str | Path | None = None, inputs: Iterable[Any] = (),
                  force: bool = False) -> None:
    """Refuse, before any work and with one clear line, output paths that would lose something:
    an output that is an input (``inputs``: paths and/or filesets), ``-o`` equal to ``--root``,
    an existing output without ``force``, a folder, a path under a file or a missing folder, a
    folder that cannot be written (tried with a temporary file)."""
    outs = [(flag, str(p)) for flag, p in (("-o", output), ("--root", root)) if p is not None]
    if len(outs) == 2 and same_file(outs[0][1], outs[1][1]):
        raise UserError(f"-o and --root are the same file {outs[0][1]}; give two different files "
                        "(one would overwrite the other)")
    ins = _input_paths(inputs)
    for flag, p in outs:
        check_output(p, ins, force, what=flag)


@contextmanager
def lock_outputs(output: str | Path | None, root: str | Path | None = None) -> Iterator[None]:
    """Hold the locks of ``output`` and ``root`` (those given) for the block: a UserError naming the
    output and the holder's PID when another process writes one of them."""
    with ExitStack() as stack:
        for flag, p in (("-o", output), ("--root", root)):
            if p is not None:
                stack.enter_context(output_lock(p, what=flag))
        yield


def write_root(output: Mapping, path: str | Path) -> int:
    """Write every histogram of a run's output as a TH1 ``DATASET/REGION/VARIABLE`` with uproot
    (FoldHists as their fold-weighted histogram; :func:`flashsim_coffea.outputs.write_root`);
    returns how many."""
    from ..outputs import by_variable
    from ..outputs import write_root as write_layout

    return write_layout(by_variable(output), path)


def save_outputs(out: Mapping, output: str | Path | None, root: str | Path | None = None) -> int | None:
    """Write ``out`` with ``coffea.util.save`` to ``output`` and its histograms to the ROOT file
    ``root`` (:func:`write_root`), each through a temporary file renamed at the end; returns the
    number of histograms written to ``root`` (None without it). Check the paths first with
    :func:`check_outputs`. The ``.coffea`` file holds every FoldHist as a plain ``hist.Hist``
    (fold-weighted values and variances, ``folds`` as its attribute;
    :func:`flashsim_coffea.outputs.portable`), so it opens with coffea and hist alone."""
    from coffea.util import save

    from ..outputs import portable

    if output is not None:
        with atomic_write(output) as tmp:
            save(portable(dict(out)), tmp)
    if root is None:
        return None
    with atomic_write(root) as tmp:
        return write_root(out, tmp)

