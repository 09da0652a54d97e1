"""Options shared by the sub-commands, so that every command names them one way.

The naming rules (checked for every sub-command by ``tests/test_cli_names.py``):

* **input files** are positional, ``dest="inputs"``: ``FILE.root [FILE.root ...]`` (NanoAOD),
  ``DATA`` for the training data of ``flashsim train`` (``FILESET.json|FILE.root`` for
  ``flashsim run``). The one exception is ``train-dnn``, whose inputs have two roles:
  ``--signal FILE.root... --background FILE.root...``;
* **output**: ``-o/--output`` (a file or a folder, as the command's help says);
* **progress bars** off: ``--no-progress`` (``dest="no_progress"``), on every command that
  draws them.

:func:`input_files` refuses a URL or an unexpanded glob pattern (:func:`check_local`): the
commands that use it read local files (``flashsim run`` reads its own inputs and takes URLs).

Old spellings (``--input``, ``--data``, ``--model-dir``, ``--quiet``) still parse, hidden
from ``--help``, and print a one-line deprecation note on stderr.

This module's name starts with ``_``: :mod:`flashsim_coffea.cli` does not take it for a command.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["add_inputs", "add_no_progress", "add_output", "check_local", "input_files", "output_of"]

INPUTS_DEST = "inputs"
OUTPUT_DEST = "output"
PROGRESS_DEST = "no_progress"


def _deprecated(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    print(f"{parser.prog}: warning: {old} is deprecated; use {new}", file=sys.stderr)


class _ExtendInputs(argparse.Action):
    """Appends to ``args.inputs`` (so the positional and a hidden old spelling combine)."""

    def __init__(self, *args, replacement: str | None = None, **kwargs):
        self.replacement = replacement
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string and self.replacement:
            _deprecated(parser, option_string, self.replacement)
        items = list(getattr(namespace, self.dest, None) or [])
        setattr(namespace, self.dest, items + list(values))


class _DeprecatedStore(argparse.Action):
    """A hidden old spelling of an option that takes one value."""

    def __init__(self, *args, replacement: str, **kwargs):
        self.replacement = replacement
        super().__init__(*args, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        _deprecated(parser, option_string, self.replacement)
        setattr(namespace, self.dest, values)


class _DeprecatedTrue(argparse.Action):
    """A hidden old spelling of a store-true flag."""

    def __init__(self, *args, replacement: str, **kwargs):
        self.replacement = replacement
        super().__init__(*args, nargs=0, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        _deprecated(parser, option_string, self.replacement)
        setattr(namespace, self.dest, True)


def add_inputs(p: argparse.ArgumentParser, help: str, *, metavar: str = "FILE.root", one: bool = False,
               deprecated: Sequence[str] = ()) -> argparse.Action:
    """The positional input files ``inputs`` (``one``: exactly one file).

    ``deprecated``: old option spellings (e.g. ``--input``) that still fill ``inputs``, hidden
    from ``--help``. argparse does not require the positional (so that those spellings can
    supply it): read it with :func:`input_files`, which does.
    """
    action = p.add_argument(INPUTS_DEST, nargs=1 if one else "+", metavar=metavar, action=_ExtendInputs, help=help)
    action.required = False  # checked by input_files(); the old spellings may give the files instead
    for flag in deprecated:
        p.add_argument(flag, dest=INPUTS_DEST, nargs=1 if one else "+", metavar=metavar, action=_ExtendInputs,
                       replacement=f"positional {metavar}", help=argparse.SUPPRESS)
    return action


def input_files(args: argparse.Namespace, *, required: bool = True, one: bool = False, metavar: str = "FILE.root") -> list[str]:
    """``args.inputs`` as a list (``[]`` when none and not ``required``); a clear error otherwise."""
    from ..errors import UserError

    files = list(getattr(args, INPUTS_DEST, None) or [])
    if required and not files:
        raise UserError(f"give the input {metavar} file{'' if one else 's'} (positional)")
    if one and len(files) > 1:
        raise UserError(f"give one {metavar} file, got {len(files)}: {' '.join(files)}")
    check_local(files, getattr(args, "command", None) or "")
    return files


#: characters of a shell glob pattern
GLOB_CHARS = frozenset("*?[")


def check_local(files: Sequence[str], command: str) -> None:
    """A UserError naming the first of ``files`` that is a URL (``root://``, ``https://`` …) or an
    unexpanded glob pattern (``*.root`` in quotes; a file of that very name is a file): the
    commands that read their inputs as local files take neither."""
    from ..errors import UserError

    for f in files:
        f = str(f)
        remote = "://" in f
        glob = bool(GLOB_CHARS & set(f)) and not os.path.exists(f)
        if remote or glob:
            raise UserError(f"{f}: remote files and globs are not supported by flashsim {command}: give local paths "
                            "(the shell expands globs)")


def add_output(p: argparse.ArgumentParser, help: str, *, required: bool = True, default: str | None = None,
               metavar: str | None = None, deprecated: Sequence[str] = ()) -> argparse.Action:
    """``-o/--output``; ``deprecated``: hidden old spellings (then read it with :func:`output_of`)."""
    if required and deprecated:  # argparse cannot require it (an old spelling may give it): say so
        help = f"{help} (required)"
    action = p.add_argument("-o", "--output", dest=OUTPUT_DEST, default=default, metavar=metavar,
                            required=required and not deprecated, help=help)
    for flag in deprecated:
        p.add_argument(flag, dest=OUTPUT_DEST, action=_DeprecatedStore, replacement="-o/--output", help=argparse.SUPPRESS)
    return action


def output_of(args: argparse.Namespace, what: str = "OUTPUT") -> str:
    """``args.output``, or a clear error when it was not given (by ``-o`` or an old spelling)."""
    from ..errors import UserError

    out = getattr(args, OUTPUT_DEST, None)
    if not out:
        raise UserError(f"give -o/--output {what}")
    return out


def add_no_progress(p: argparse.ArgumentParser, help: str = "no progress bars", *,
                    deprecated: Sequence[str] = ()) -> argparse.Action:
    """``--no-progress`` (``args.no_progress``); ``deprecated``: hidden old spellings such as ``--quiet``."""
    action = p.add_argument("--no-progress", dest=PROGRESS_DEST, action="store_true", help=help)
    for flag in deprecated:
        p.add_argument(flag, dest=PROGRESS_DEST, action=_DeprecatedTrue, replacement="--no-progress", help=argparse.SUPPRESS)
    return action
