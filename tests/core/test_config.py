"""Configs: plugin configs forbid unknown fields, model configs validate through the registry,
round trips keep every plugin field, and errors list every problem with its path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pytest
from pydantic import ValidationError

from neurofm import registry
from neurofm.core.config import (
    PluginConfig,
    dump_config,
    load_config_file,
    validate_config,
)
from neurofm.core.model.config import ModelConfig
from neurofm.core.model.presets import default_model_config
from neurofm.core.training.config import ExperimentConfig
from neurofm.errors import ConfigError


def _model_data() -> dict:
    """A model config as plain data, with non-default plugin-specific fields."""
    data = default_model_config("tiny", frame_size=(18, 32)).model_dump(mode="json")
    # the tubelet movie encoder and the learned-embedding readout (options beside the default)
    data["modalities"]["movie"] = {"type": "movie", "height": 18, "width": 32, "patch_height": 6,
                                   "patch_width": 8, "patch_frames": 5}  # fmt: skip
    data["readout"] = {"type": "neuron_embedding"}
    data["modalities"]["calcium"]["patch_samples"] = 3
    data["heads"]["pupil"]["likelihood"] = "gaussian"
    data["heads"]["calcium"]["eps"] = 0.01
    data["readout"]["init_std"] = 0.5
    return data


@pytest.mark.parametrize(
    ("kind", "name"), [(k, n) for k, r in registry.REGISTRIES.items() for n in r.list()]
)
def test_plugin_configs_forbid_unknown_fields(kind: str, name: str) -> None:
    config_cls = registry.get_registry(kind).get(name).Config
    assert issubclass(config_cls, PluginConfig)
    assert config_cls().type == name
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        config_cls(type=name, not_an_option=1)


def test_model_config_validates_through_the_registry() -> None:
    from neurofm.plugins.heads.regression import RegressionConfig
    from neurofm.plugins.modalities.movie import MovieConfig

    config = ModelConfig.model_validate(_model_data())
    movie = config.modalities["movie"]
    assert isinstance(movie, MovieConfig) and movie.patch_frames == 5
    assert isinstance(config.heads["pupil"], RegressionConfig)
    assert config.heads["pupil"].likelihood == "gaussian"
    # a plugin's own constraints apply inside the model config
    data = _model_data()
    data["modalities"]["movie"]["patch_height"] = 7  # does not divide 18
    with pytest.raises(ConfigError, match=r"modalities\.movie: .*not divisible"):
        validate_config(ModelConfig, data)
    # config objects: of another kind's plugin, or of the wrong class for their tag, are refused
    with pytest.raises(ValidationError, match="no modality plugin named 'regression'"):
        ModelConfig(modalities={"movie": RegressionConfig()})

    class FakeMovieConfig(PluginConfig):
        type: Literal["movie"] = "movie"

    with pytest.raises(
        ValidationError, match=r"FakeMovieConfig has type='movie', .* expects MovieConfig"
    ):
        ModelConfig(modalities={"movie": FakeMovieConfig()})
    assert ModelConfig(modalities={"movie": movie}).modalities["movie"] is movie


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_round_trip_keeps_plugin_fields(tmp_path: Path, suffix: str) -> None:
    config = ModelConfig.model_validate(_model_data())
    path = tmp_path / f"model{suffix}"
    dump_config(config, path)
    again = load_config_file(path, ModelConfig)
    assert again.model_dump() == config.model_dump()
    assert again.modalities["movie"].patch_frames == 5
    assert again.heads["pupil"].likelihood == "gaussian"
    assert again.readout.init_std == 0.5
    if suffix == ".json":
        written = json.loads(path.read_text())
        assert written["modalities"]["movie"]["patch_frames"] == 5
        assert written["heads"]["pupil"]["likelihood"] == "gaussian"


def test_experiment_config_round_trip(tmp_path: Path) -> None:
    experiment = ExperimentConfig.model_validate(
        {
            "model": _model_data(),
            "data": {"path": "data", "window_s": 1.5},
            "training": {"steps": 7},
        }
    )
    dump_config(experiment, tmp_path / "exp.yaml")
    again = load_config_file(tmp_path / "exp.yaml", ExperimentConfig)
    assert again.model_dump() == experiment.model_dump()


def test_every_problem_is_reported_with_its_path() -> None:
    data = {
        "model": _model_data(),
        "data": {"path": "data", "window_s": -1},
        "training": {"steps": 0, "lr": "fast"},
    }
    data["model"]["modalities"]["movie"]["patch_framez"] = 3
    data["model"]["heads"]["pupil"]["likelihood"] = "laplace"
    data["model"]["backbone"]["d_model"] = "wide"
    with pytest.raises(ConfigError) as info:
        validate_config(ExperimentConfig, data, source="exp.yaml")
    message = str(info.value)
    assert message.startswith("exp.yaml has 6 problem(s)")
    for expected in [
        "model.modalities.movie: invalid config for modality plugin 'movie': patch_framez: Extra inputs",
        "model.heads.pupil: invalid config for head plugin 'regression': likelihood:",
        "model.backbone.d_model:",
        "data.window_s:",
        "training.steps:",
        "training.lr:",
    ]:
        assert expected in message, f"{expected!r} not in:\n{message}"
    assert "'laplace'" in message


def test_problems_in_a_file_name_the_file(tmp_path: Path) -> None:
    data = _model_data()
    data["modalities"]["movie"]["patch_framez"] = 3
    data["heads"]["calcium"]["eps"] = -1
    path = tmp_path / "model.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"config file .*model\.json has 2 problem") as info:
        load_config_file(path, ModelConfig)
    assert "modalities.movie:" in str(info.value) and "heads.calcium:" in str(info.value)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_config_file(path, ModelConfig)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config_file(tmp_path / "missing.yaml", ModelConfig)


def test_unknown_plugin_type_suggests_a_name() -> None:
    data = _model_data()
    data["modalities"]["movie"] = {"type": "moive"}
    data["heads"]["calcium"] = {"type": "poison"}
    with pytest.raises(ConfigError) as info:
        validate_config(ModelConfig, data)
    message = str(info.value)
    assert (
        "modalities.movie: no modality plugin named 'moive'. Did you mean 'movie' or 'movie_core'?"
        in message
    )
    assert "heads.calcium: no head plugin named 'poison'. Did you mean 'poisson'?" in message


def test_missing_type_tag_lists_known_plugins() -> None:
    with pytest.raises(ConfigError, match=r"modalities\.x: expected a 'type' field .*movie"):
        validate_config(ModelConfig, {"modalities": {"x": {"channels": 2}}})


def test_heads_need_an_encoded_stream() -> None:
    data = _model_data()
    data["heads"]["whisker"] = {"type": "regression"}
    with pytest.raises(ConfigError, match=r"heads \['whisker'\] have no stream in `modalities`"):
        validate_config(ModelConfig, data)
