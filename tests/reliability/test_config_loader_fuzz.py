"""The config loader under generated bad input: garbage files and mutations of a valid experiment
config always give a ConfigError (never another exception), and a config is data: naming a module
as a plugin type imports nothing."""

from __future__ import annotations

import copy
import json
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from nested_paths import nested_paths

from neurofm.core.config import load_config_file
from neurofm.core.model.presets import default_model_config
from neurofm.core.training.config import ExperimentConfig
from neurofm.errors import ConfigError

VALID = {
    "model": default_model_config("tiny", frame_size=(18, 32)).model_dump(mode="json"),
    "data": {"path": "data", "window_s": 1.0, "sessions": ["s0"]},
    "training": {"steps": 10, "batch_size": 2, "device": "cpu", "tasks": {"forecast": 1.0}},
}
SUFFIXES = st.sampled_from([".json", ".yaml", ".yml"])


def _load(raw: bytes, suffix: str) -> ExperimentConfig | None:
    """Write ``raw`` to a file and load it; None when it was refused with a ConfigError."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"experiment{suffix}"
        path.write_bytes(raw)
        try:
            return load_config_file(path, ExperimentConfig)
        except ConfigError as exc:
            assert str(exc).startswith(("config file", "cannot read config file")), str(exc)
            assert str(path) in str(exc)  # the message names the file
            return None


_YAMLISH = st.lists(
    st.sampled_from([*"{}[]:,-'\"!&*#|>%@`?\n\t ab01.eE+", "2024-02-30", "!!", "~", "<<"]),
    max_size=40,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(raw=st.one_of(st.binary(max_size=200), _YAMLISH.map(str.encode)), suffix=SUFFIXES)
@example(raw=b"date: 2024-02-30\n", suffix=".yaml")  # a date no calendar has
@example(raw=b"\xff\xfe\x00bad", suffix=".yaml")  # not UTF-8
@example(raw=b"[" * 50_000, suffix=".json")  # deeper than the parser allows
@example(raw=b"[" * 50_000, suffix=".yaml")
@example(raw=b"1" * 5_000, suffix=".json")  # more digits than Python converts
@example(raw=b"!!python/object/apply:os.system [echo pwned]", suffix=".yaml")
@example(raw=b"model: &a [*a]", suffix=".yaml")  # a self-referencing alias
def test_garbage_files_give_config_errors(raw: bytes, suffix: str) -> None:
    assert _load(raw, suffix) is None


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.sampled_from(["movie", "poisson", "acme.nothing", "os:system", "../x", "cpu", "-1", "1e999"]),
    st.lists(st.integers(-2, 5), max_size=3),
    st.dictionaries(st.sampled_from(["type", "channels", "x", "d_model"]),
                    st.one_of(st.integers(-3, 3), st.text(max_size=4)), max_size=2),
)  # fmt: skip
_KEYS = st.sampled_from(["type", "unknown_field", "patch_framez", "lr", "steps", "d_model", "0"])


@settings(max_examples=150, deadline=None)
@given(data=st.data(), suffix=SUFFIXES)
def test_mutated_experiment_configs_give_config_errors(data, suffix: str) -> None:
    """Replace, delete or add fields anywhere in a valid experiment config (plugin fields, plugin
    names, numbers, types): the result loads or is refused with a ConfigError naming the file."""
    config = copy.deepcopy(VALID)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        path = data.draw(st.sampled_from(nested_paths(config)), label="path")
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["replace", "delete", "add"]), label="action")
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[data.draw(_KEYS, label="key")] = data.draw(_VALUES, label="value")
        else:
            parent[path[-1]] = data.draw(_VALUES, label="value")
    # (json writes NaN/inf as the non-standard NaN/Infinity tokens, which json.loads reads back)
    raw = (json.dumps(config) if suffix == ".json" else yaml.safe_dump(config)).encode()
    loaded = _load(raw, suffix)
    if loaded is not None:  # what loads round-trips as data
        assert ExperimentConfig.model_validate(loaded.model_dump()) == loaded


def test_unknown_plugins_and_fields_are_config_errors(tmp_path: Path) -> None:
    """Also covered in tests/core/test_config.py for validate_config; here through a file."""
    config = copy.deepcopy(VALID)
    config["model"]["modalities"]["lfp"] = {"type": "acme.lfp"}
    config["training"]["learning_rate"] = 0.1
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as info:
        load_config_file(path, ExperimentConfig)
    message = str(info.value)
    assert "model.modalities.lfp: no modality plugin named 'acme.lfp'" in message
    assert "training.learning_rate: Extra inputs are not permitted" in message


def test_plugin_types_are_names_not_import_paths(tmp_path: Path, monkeypatch) -> None:
    """A config names plugins only by their registered name; a module path in ``type`` is not
    imported, so a config file never runs code (YAML is read with safe_load)."""
    marker = tmp_path / "imported"
    (tmp_path / "evil_plugin_module.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("evil_plugin_module", "evil_plugin_module:Encoder", "evil_plugin_module.Encoder"):
        config = copy.deepcopy(VALID)
        config["model"]["modalities"]["movie"] = {"type": name}
        path = tmp_path / "exp.yaml"
        path.write_text(yaml.safe_dump(config) + "extra: !!python/object/apply:os.getcwd []\n")
        with pytest.raises(ConfigError):
            load_config_file(path, ExperimentConfig)
        path.write_text(yaml.safe_dump(config))
        with pytest.raises(ConfigError, match=f"no modality plugin named '{name}'"):
            load_config_file(path, ExperimentConfig)
    assert not marker.exists() and "evil_plugin_module" not in sys.modules
