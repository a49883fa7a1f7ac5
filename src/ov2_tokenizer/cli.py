"""The ``ov2`` command line.

Sub-commands come from this package and from plug-ins registered under the entry-point group ``ov2.cli``
(``ov2_model`` adds ``eval``, ``chat``, ...), so ``ov2_tokenizer`` never imports ``ov2_model``.
A plug-in is a callable ``register(subparsers)`` that adds its parser(s) and sets ``func`` on them;
``func(args)`` returns the exit code.

Errors of ov2 are printed as one line naming the file and the cause, with exit code 2.
"""
from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points
from typing import Callable, Sequence

from .errors import Ov2Error

_BUILTIN: list[Callable[[argparse._SubParsersAction], None]] = []


def builtin(register: Callable[[argparse._SubParsersAction], None]):
    """Decorator for this package's own sub-command registrars."""
    _BUILTIN.append(register)
    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ov2", description="Codec-aligned video tokenization (ov2).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import cli_commands  # noqa: F401,PLC0415  (registers the built-in commands)

    for register in _BUILTIN:
        register(sub)
    missing = []
    for ep in entry_points(group="ov2.cli"):
        try:
            ep.load()(sub)
        except ImportError as exc:  # a plug-in whose optional dependencies are missing: said in --help only
            missing.append(f"{ep.name} ({exc})")
    if missing:
        parser.epilog = ("unavailable plug-ins (pip install 'ov2[model]' for eval/train/chat): " + "; ".join(missing))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except Ov2Error as exc:
        print(f"ov2: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an output path that is a file, unwritable, a full disk: one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ov2: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    # `python -m ov2_tokenizer.cli` runs this file as __main__: use the package's module, on which the built-in
    # commands register, not this second copy.
    from ov2_tokenizer.cli import main as _main

    sys.exit(_main())
