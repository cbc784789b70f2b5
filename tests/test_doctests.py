"""The ``>>>`` examples in neurofm's docstrings run and print what they show (those marked
``# doctest: +SKIP`` need files or a trained model and are only parsed)."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import neurofm


def _has_examples(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.origin is not None and ">>> " in Path(spec.origin).read_text()


_SUBMODULES = sorted(i.name for i in pkgutil.walk_packages(neurofm.__path__, prefix="neurofm."))
MODULES = [name for name in ["neurofm", *_SUBMODULES] if _has_examples(name)]


def test_modules_with_examples_are_found() -> None:
    assert {"neurofm", "neurofm.registry", "neurofm.core.tokens.conv_core"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # an example that writes files writes them here
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    found = sum(len(t.examples) for t in doctest.DocTestFinder().find(module))
    assert found > 0, f"{name} has '>>> ' but doctest finds no example in its docstrings"
    result = doctest.testmod(module, optionflags=flags, report=False, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
