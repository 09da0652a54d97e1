"""The ``flashsim`` console script.

Each sub-command lives in its own module under :mod:`flashsim_coffea.commands` and exposes

    NAME: str                                   # the sub-command, e.g. "generate"
    HELP: str                                   # one line for ``flashsim --help``
    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int    # exit status

Modules are discovered with :mod:`pkgutil`, so adding a command never touches this file.
User errors are raised as :class:`flashsim_coffea.errors.UserError` and printed as one clear
line (no traceback) with exit status 2; so are errors of reading a truncated or corrupt ROOT
file that reach this level (``FILE: cannot read (corrupt or truncated ROOT file?: ...)``,
:func:`flashsim_coffea.nanoaod.io.unreadable`). A
:class:`~flashsim_coffea.runner.errors.RunNotice` warning is printed as one line
``flashsim COMMAND: MESSAGE``; SIGTERM during a run with worker processes ends with
``flashsim COMMAND: terminated by SIGTERM`` and exit status 143 once they are shut down.
stdout and stderr escape what their encoding cannot show (as ``\\xff``: file and dataset names
print on any terminal, e.g. with ``PYTHONIOENCODING=ascii``).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import re
import sys
import warnings
from contextlib import contextmanager

from . import __version__, commands
from .errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flashsim",
        description="FlashSim for coffea: Gen-level NanoAOD -> reconstructed Jets and Muons with normalizing flows.",
    )
    parser.add_argument("--version", action="version", version=f"flashsim-coffea {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def _safe_stdio() -> None:
    """stdout and stderr escape the characters their encoding cannot show instead of raising."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a text stream we may reconfigure
            pass


@contextmanager
def _one_line_notices(command: str):
    """RunNotice warnings printed as one line ``flashsim COMMAND: MESSAGE`` (others as before)."""
    from .runner.errors import RunNotice

    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, RunNotice):
            print(f"flashsim {command}: {message}", file=sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        if warnings.showwarning is show:
            warnings.showwarning = previous


def _unreadable_input(err: BaseException) -> str | None:
    """The one-line message of an error of reading a truncated or corrupt ROOT file (uproot's short
    read, a corrupt basket), naming the file when the error does; None for any other error."""
    from .nanoaod.io import read_errors, unreadable

    chain, seen = [], set()
    while err is not None and id(err) not in seen:
        chain.append(err)
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    for e in chain:
        if not isinstance(e, read_errors()):
            continue
        if isinstance(e, OSError) and (type(e) is not OSError or not _raised_in_uproot(e)):
            continue  # a missing file, a full disk ...: not a corrupt input
        m = re.search(r"(?:for file path|in file) (\S+)", str(e))
        return str(unreadable(m.group(1) if m else "an input file", e))
    return None


def _raised_in_uproot(err: BaseException) -> bool:
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "uproot" in tb.tb_frame.f_code.co_filename


def _one_line(message: str) -> str:
    return re.sub(r"\s*\n\s*", " ", str(message)).strip()


def main(argv: list[str] | None = None) -> int:
    _safe_stdio()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from .runner.errors import Terminated

    try:
        with _one_line_notices(args.command):
            return int(args.func(args) or 0)
    except UserError as err:
        print(f"flashsim {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"flashsim {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated as err:
        print(f"flashsim {args.command}: {err}", file=sys.stderr)
        return 128 + err.signum
    except Exception as err:
        line = _unreadable_input(err)
        if line is None:
            raise
        print(f"flashsim {args.command}: error: {_one_line(line)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
