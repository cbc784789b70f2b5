"""The generated reference pages are up to date, and the docs' links point at files that exist.

Regenerate with ``python -m neurofm.docs`` when a check here fails.
"""

from __future__ import annotations

import re
from pathlib import Path

from neurofm import registry
from neurofm.docs import (
    plugin_sections,
    render_cli_reference,
    render_config_reference,
    split_plugin_sections,
)

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REGENERATE = "regenerate it with `python -m neurofm.docs`"


def test_cli_reference_is_current() -> None:
    committed = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert committed == render_cli_reference(), f"docs/cli.md is stale; {REGENERATE}"


def test_cli_reference_covers_every_command() -> None:
    from neurofm.core.cli import COMMANDS

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert text.count("\n## `neurofm ") == len(COMMANDS)
    assert "## `neurofm new-plugin`" in text


def test_config_reference_sections_of_builtins_are_current(tmp_path: Path) -> None:
    """Only the sections of built-in plugins present in the committed page are compared, so a
    plugin being added elsewhere does not fail this test before the page is regenerated."""
    fresh = tmp_path / "config-reference.md"
    fresh.write_text(render_config_reference(), encoding="utf-8")
    regenerated = split_plugin_sections(fresh.read_text(encoding="utf-8"))
    committed = split_plugin_sections((DOCS / "config-reference.md").read_text(encoding="utf-8"))
    builtins = {key for key in committed if key in plugin_sections(builtin_only=True)}
    assert {("modalities", "movie"), ("readouts", "neuron_embedding"), ("heads", "poisson")} <= (
        builtins
    )
    stale = sorted(k for k in builtins if committed[k] != regenerated.get(k))
    assert not stale, f"docs/config-reference.md is stale for {stale}; {REGENERATE}"


def test_config_reference_lists_third_party_plugins(third_party_plugins) -> None:
    sections = split_plugin_sections(render_config_reference())
    section = sections[("modalities", "acme.whisker")]
    assert "neurofm-acme-plugin" in section
    assert "| `patch_samples` | `int` | `5` | >= 1 |" in section
    assert ("modalities", "movie") in sections
    assert "acme.whisker" in registry.modalities.list("acme.*")


def test_links_between_pages_resolve() -> None:
    pages = [*DOCS.rglob("*.md"), ROOT / "README.md"]
    broken = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)
