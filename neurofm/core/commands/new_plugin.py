"""``neurofm new-plugin KIND NAME``: scaffold a plugin package (entry point, config, module, tests)."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from neurofm import registry
    from neurofm.errors import NeurofmError
    from neurofm.scaffold import plugin_layout, scaffold_plugin

    layout = plugin_layout(args.kind, args.name, args.package)
    reg = registry.get_registry(layout.registry)
    if layout.name in reg:
        owner = reg.record(layout.name)
        raise NeurofmError(
            f"a {layout.kind} plugin named {layout.name!r} is already installed "
            f"({owner.describe()}); choose another name, e.g. 'mylab.{layout.name}'"
        )
    out = scaffold_plugin(layout.kind, layout.name, args.out, package=args.package)
    if "." not in layout.name:
        print(
            f"note: {layout.name!r} has no namespace; third-party plugins are usually named "
            f"'<lab>.{layout.name}' so they cannot clash with built-ins",
            file=sys.stderr,
        )
    print(f"wrote {layout.kind} plugin {layout.name!r} as package {layout.package} to {out}")
    print(
        f"  entry point: [{layout.group}] {layout.name} = {layout.package}.{layout.module}:{layout.cls}"
    )
    print("next:")
    print(f"  cd {out} && pip install -e '.[test]' && python -m pytest && neurofm plugins")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "new-plugin",
        help="scaffold a plugin package (modality, readout or head) ready to pip install -e",
        description="Write a plugin package: pyproject.toml with its entry point, a config class "
        "whose `type` tag is NAME, a module implementing the interface, a README and tests that "
        "run neurofm's conformance kit (neurofm.testing).",
    )
    p.add_argument("kind", metavar="KIND", help="modality, readout or head")
    p.add_argument("name", metavar="NAME", help="registered name, namespaced: e.g. mylab.lfp")
    p.add_argument(
        "--out", default=None, help="folder to create (default: ./neurofm-<name>); must not exist"
    )
    p.add_argument("--package", default=None, help="Python package name (default: neurofm_<name>)")
    p.set_defaults(func=run)
