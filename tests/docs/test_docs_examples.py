"""Every ```python block of the documentation runs: docs/**/*.md and README.md.

Each page's blocks run in order in one fresh namespace, inside a temporary working folder (so a
block that writes ``data/`` writes it there). A block is skipped only when marked, for what cannot
run here (a GPU, torchrun): its info string says ``python no-run`` or the line before it is an HTML
comment ``<!-- no-run: reason -->``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from neurofm import registry

ROOT = Path(__file__).resolve().parents[2]
PAGES = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_NO_RUN = re.compile(r"<!--\s*no-run\b.*?-->\s*$", re.DOTALL)


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    code: str
    run: bool


def python_blocks(page: Path) -> list[Block]:
    """The fenced python blocks of a Markdown page, with whether each must run."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for m in _FENCE.finditer(text):
        info = m.group(1).split()
        if not info or info[0] not in ("python", "py"):
            continue
        before = text[: m.start()].rstrip().rsplit("\n", 1)[-1]
        run = "no-run" not in info[1:] and not _NO_RUN.search(before)
        blocks.append(Block(page, text.count("\n", 0, m.start()) + 2, m.group(2), run))
    return blocks


RUNNABLE = [p for p in PAGES if any(b.run for b in python_blocks(p))]


def test_marked_blocks_give_a_reason() -> None:
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for m in re.finditer(r"<!--\s*no-run\s*(.*?)-->", text, re.DOTALL):
            assert m.group(1).strip(" :"), f"{page}: a no-run marker without a reason"


def test_the_tutorials_have_code_that_runs() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in RUNNABLE}
    assert "docs/tutorials/custom-model.md" in names
    assert "docs/tutorials/readout-head-plugin.md" in names


@pytest.mark.parametrize("page", RUNNABLE, ids=[p.relative_to(ROOT).as_posix() for p in RUNNABLE])
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"docs_{page.stem.replace('-', '_')}"}
    try:
        for block in python_blocks(page):
            if not block.run:
                continue
            where = f"{page.relative_to(ROOT)}:{block.line}"
            try:
                # dont_inherit: a block runs as a user would run it, without this module's
                # `from __future__ import annotations`
                exec(compile(block.code, where, "exec", dont_inherit=True), namespace)
            except Exception as exc:
                raise AssertionError(
                    f"the code block at {where} failed: {type(exc).__name__}: {exc}"
                ) from exc
    finally:
        for reg in registry.REGISTRIES.values():
            reg.reload()  # forget plugins a page registered by hand
