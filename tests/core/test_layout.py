"""The layout of ``neurofm.core`` and its one config style.

Core's folders follow the data path, and a folder imports only folders before it on that path (or
the shared modules beside them): data never imports the model, the model never imports training.
Every config, of a plugin or of an experiment, is a frozen pydantic model that forbids unknown
fields (one style: :class:`~neurofm.core.config.StrictModel`).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pydantic
import pytest

import neurofm
from neurofm.core.config import StrictModel
from neurofm.core.training.config import TrainingConfig

CORE = Path(neurofm.__file__).parent / "core"

# the data path, then what uses the trained model; a folder may import those before it
ORDER = ["storage", "data", "tokens", "backbone", "model", "training", "baselines",
         "evaluation", "commands"]  # fmt: skip


def _imports(path: Path) -> set[str]:
    """The ``neurofm.core.<part>`` names a module imports, at any depth (also inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["neurofm", "core"] and len(parts) > 2:
                out.add(parts[2])
    return out


def test_core_folders_import_only_earlier_stages_of_the_data_path() -> None:
    upward = []
    for folder in ORDER:
        for path in sorted((CORE / folder).rglob("*.py")):
            for target in _imports(path) & set(ORDER):
                if ORDER.index(target) > ORDER.index(folder):
                    upward.append(f"{path.relative_to(CORE)} imports neurofm.core.{target}")
    assert not upward, "imports against the data path:\n" + "\n".join(upward)


def test_the_layering_check_sees_a_late_import(tmp_path: Path) -> None:
    """The check reads imports inside functions too (where cycles are usually hidden)."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from neurofm.core.training.trainer import Trainer\n")
    assert _imports(module) == {"training"}


def _all_models() -> list[type[pydantic.BaseModel]]:
    for info in pkgutil.walk_packages(neurofm.__path__, "neurofm."):
        if not info.name.startswith("neurofm.scaffold"):
            importlib.import_module(info.name)
    found, todo = [], [pydantic.BaseModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("neurofm."):
                found.append(sub)
    return found


def test_every_config_is_a_frozen_strict_model() -> None:
    models = _all_models()
    names = {m.__name__ for m in models}
    # the configs of each layer are among them (the walk found the package)
    assert {"ModelConfig", "TrainingConfig", "BackboneConfig", "CoreConfig", "CNNConfig",
            "SimulationConfig", "RetinotopicConfig"} <= names  # fmt: skip
    loose = [
        f"{m.__module__}.{m.__name__}"
        for m in models
        if not issubclass(m, StrictModel)
        or not m.model_config.get("frozen")
        or m.model_config.get("extra") != "forbid"
    ]
    assert not loose, (
        f"configs not in the one style (StrictModel: frozen, extra forbidden): {loose}"
    )


def test_a_config_changes_by_copy_not_by_assignment() -> None:
    cfg = TrainingConfig()
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.steps = 5
    changed = cfg.model_copy(update={"steps": 5})
    assert (cfg.steps, changed.steps) == (1000, 5)
