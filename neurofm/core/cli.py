"""The ``neurofm`` command line. Each sub-command lives in its own module under
:mod:`neurofm.core.commands`; add one by listing its module in ``COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from neurofm.errors import NeurofmError

__all__ = ["COMMANDS", "TRACEBACK_ENV", "build_parser", "main"]

TRACEBACK_ENV = "NEUROFM_TRACEBACK"

COMMANDS = [
    "neurofm.core.commands.demo",
    "neurofm.core.commands.simulate",
    "neurofm.core.commands.import_",
    "neurofm.core.commands.train",
    "neurofm.core.commands.finetune",
    "neurofm.core.commands.evaluate",
    "neurofm.core.commands.insilico",
    "neurofm.core.commands.plugins",
    "neurofm.core.commands.new_plugin",
]


def build_parser() -> argparse.ArgumentParser:
    from neurofm import __version__

    parser = argparse.ArgumentParser(
        prog="neurofm",
        description="Foundation models of neural activity.",
        epilog="An error is one line on stderr (neurofm COMMAND: error: ...) and exit status 2; "
        f"set {TRACEBACK_ENV}=1 to print the traceback as well.",
    )
    parser.add_argument("--version", action="version", version=f"neurofm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 an error was printed, 130 interrupted).

    Every error is one line on stderr, ``neurofm <command>: error: <message>``: neurofm's own
    errors as they are, any other exception (a plugin's ``ValueError``, a config's validation
    error) with its type and its message joined onto one line. ``NEUROFM_TRACEBACK=1`` prints
    the traceback as well. A write that fails for lack of disk space anywhere is reported like
    any other error (the writers name the path and the size; failing that, the command's output
    folder).
    """
    from neurofm.core.storage.files import disk_full_guard

    args = build_parser().parse_args(argv)
    try:
        with disk_full_guard(getattr(args, "out", None) or ".", None):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0"):
            traceback.print_exc()
        print(f"neurofm {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    message = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    if isinstance(exc, (NeurofmError, FileExistsError)):
        return message
    hint = f" (set {TRACEBACK_ENV}=1 for the traceback)"
    return f"{type(exc).__name__}: {message or repr(exc)}{hint}"


if __name__ == "__main__":
    raise SystemExit(main())
