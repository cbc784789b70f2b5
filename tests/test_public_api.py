"""The public API: every name in ``neurofm.__all__`` resolves, is documented, and importing
``neurofm`` stays light."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import neurofm

NAMES = [n for n in neurofm.__all__ if n not in ("__version__", "registry")]


@pytest.mark.parametrize("name", NAMES)
def test_public_name_resolves_and_is_documented(name: str) -> None:
    value = getattr(neurofm, name)
    assert value is getattr(neurofm, name)  # cached, the same object every time
    assert inspect.getdoc(value), f"neurofm.{name} has no docstring"
    if inspect.isfunction(value):
        hints = inspect.get_annotations(value)
        assert "return" in hints, f"neurofm.{name} has no return type hint"


def test_all_is_complete_and_without_private_names() -> None:
    from neurofm.core import interfaces

    assert neurofm.registry.modalities.kind == "modality"
    assert not [n for n in neurofm.__all__ if n.startswith("_") and n != "__version__"]
    # what a plugin author subclasses or is handed (the interfaces' classes) is all top level
    aliases = {"Role", "Normalization"}  # typing aliases, documented on the classes
    missing = set(interfaces.__all__) - aliases - set(neurofm.__all__)
    assert not missing, f"interfaces not exported by neurofm: {sorted(missing)}"
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        neurofm.not_a_name  # noqa: B018


def test_common_work_needs_no_private_module() -> None:
    """The names the tutorials use come from the top level."""
    for name in (
        "NeuroFM",
        "PerceiverIO",
        "BackboneConfig",
        "build_model",
        "default_model_config",
        "get_preset",
        "load_config_file",
        "Trainer",
        "evaluate",
        "save_pretrained",
        "load_pretrained",
        "PluginConfig",
        "ModalityEncoder",
        "Readout",
        "Head",
        "TaskSpec",
        "StreamRule",
        "Session",
        "write_session",
        "open_dataset",
        "SimulationConfig",
        "simulate_to_disk",
        "get_registry",
    ):
        assert name in neurofm.__all__, name


def test_import_is_light() -> None:
    code = (
        "import sys, neurofm\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'pydantic', 'neurofm.core', 'neurofm.plugins')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "", f"`import neurofm` imported {done.stdout.strip()}"
