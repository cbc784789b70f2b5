"""docs/reliability.md names, for every guarantee, tests that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def test_every_guarantee_names_tests_that_exist() -> None:
    rows = [line for line in DOC.read_text(encoding="utf-8").splitlines()
            if line.startswith("| ") and not line.startswith(("| Guarantee", "|---"))]  # fmt: skip
    assert len(rows) >= 30
    missing = []
    for row in rows:
        references = REFERENCE.findall(row)
        assert references, f"a guarantee without a test: {row[:80]}"
        for file, name in references:
            path = ROOT / file
            if not path.is_file() or not re.search(rf"^def {name}\(", path.read_text(), re.M):
                missing.append(f"{file}::{name}")
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
