"""The ``flashsim`` console script.

Each sub-command lives in its own module under :mod:`flashsim_coffea.commands` and exposes

    NAME: str                                   # the sub-command, e.g. "generate"
    HELP: str                                   # one line for ``flashsim --help``
    def add_arguments(parser: argparse.ArgumentParser) -> None
    def run(args: argparse.Namespace) -> int    # exit status

Modules are discovered with :mod:`pkgutil`, so adding a command never touches this file.
User errors are raised as :class:`flashsim_coffea.errors.UserError` and printed as one clear
line (no traceback) with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"flashsim {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"flashsim {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
