"""Helper shared by the fuzz tests that mutate parsed JSON/YAML documents (importable because the
test folders are not packages: pytest puts ``tests/``, where the root conftest lives, on the path)."""

from __future__ import annotations

from typing import Any


def nested_paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key/index path into a nested dict/list document, parents before children.

    Example: ``nested_paths({"a": [1, {"b": 2}]})`` ->
    ``[("a",), ("a", 0), ("a", 1), ("a", 1, "b")]``.
    """
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += nested_paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += nested_paths(v, (*prefix, i))
    return out
