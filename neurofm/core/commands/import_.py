"""``neurofm import FORMAT SRC OUT``: convert recordings of another format into session folders."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from neurofm import registry
    from neurofm.core.config import load_config_file

    source_cls = registry.sources.get(args.format)
    config = load_config_file(args.config, source_cls.Config) if args.config else None
    source = source_cls(config)
    summary = source.import_(
        Path(args.src), Path(args.out), overwrite=args.overwrite, progress=not args.quiet
    )
    print(summary.format())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="import recordings (experanto, sensorium, nwb, or any installed source) as sessions",
        description="Convert recordings into neurofm session folders. FORMAT is a registered "
        "source (`neurofm plugins` lists them): experanto, sensorium, nwb, ...",
    )
    p.add_argument("format", metavar="FORMAT", help="source format (a registered source name)")
    p.add_argument("src", metavar="SRC", help="input file or folder in that format")
    p.add_argument("out", metavar="OUT", help="output dataset folder (must not exist)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument(
        "--config", default=None, help="importer options as YAML/JSON (e.g. tier_aliases)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
