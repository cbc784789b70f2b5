"""The ``neurofm`` command line. Each sub-command lives in its own module under
:mod:`neurofm.core.commands`; add one by listing its module in ``COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from neurofm.errors import NeurofmError

__all__ = ["COMMANDS", "build_parser", "main"]

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
        prog="neurofm", description="Foundation models of neural activity."
    )
    parser.add_argument("--version", action="version", version=f"neurofm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 a clear error was printed, 130 interrupted).

    A write that fails for lack of disk space anywhere is reported like any other error (the
    writers name the path and the size; failing that, the command's output folder).
    """
    from neurofm.core.io import disk_full_guard

    args = build_parser().parse_args(argv)
    try:
        with disk_full_guard(getattr(args, "out", None) or ".", None):
            return int(args.func(args) or 0)
    except (NeurofmError, FileExistsError) as exc:
        print(f"neurofm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
