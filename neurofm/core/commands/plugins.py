"""``neurofm plugins``: every plugin with its kind, name, package, version and status."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from neurofm import registry

    rows = [("kind", "name", "package", "version", "status")]
    for kind, reg in registry.REGISTRIES.items():
        for r in reg.records():
            status = "loaded" if r.status == "loaded" else f"failed: {r.error}"
            rows.append((kind, r.name, r.package, r.version, status))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="list every plugin: kind, name, package, version, status")
    p.set_defaults(func=run)
