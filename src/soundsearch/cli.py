"""The ``soundsearch`` command: a thin dispatcher.

Each subcommand lives in ``soundsearch.commands.<name>`` and exposes ``register(subparsers)`` (adds
its parser and sets ``func``) and a ``run(args) -> int``. ``main(argv)`` runs in-process, so tests
call it directly. Errors meant for the user are :class:`UserError`: printed as one line, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from soundsearch import __version__
from soundsearch.errors import UserError

# Order is the order shown in --help.
COMMANDS = (
    "index",
    "search",
    "similar",
    "status",
    "serve",
    "models",
    "train",
    "evaluate",
    "synth",
    "augment",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soundsearch", description="Find sounds by describing them in words."
    )
    parser.add_argument("--version", action="version", version=f"soundsearch {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"soundsearch.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"soundsearch.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    root = logging.getLogger("soundsearch")
    root.setLevel(level)
    if not any(getattr(h, "_soundsearch_cli", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        handler._soundsearch_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    for h in root.handlers:
        if getattr(h, "_soundsearch_cli", False):
            h.stream = (
                sys.stderr
            )  # follow pytest's capsys when run in-process (no flush of the old one)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"soundsearch {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"soundsearch {args.command}: interrupted; finished work is kept", file=sys.stderr)
        return 130
