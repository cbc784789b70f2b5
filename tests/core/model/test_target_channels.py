"""A target stream's head is sized by its encoder's ``target_channels`` (the plugin owns it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurofm.core.data import open_dataset
from neurofm.core.model.builder import target_channels
from neurofm.core.model.presets import default_model_config
from neurofm.plugins.modalities.pupil import PupilEncoder
from neurofm.plugins.modalities.running import RunningEncoder


def test_the_default_reads_c_of_t_by_c_samples() -> None:
    assert RunningEncoder.target_channels((1,)) == 1
    assert PupilEncoder.target_channels((2,)) == 2
    with pytest.raises(ValueError, match=r"RunningEncoder streams of sample shape \(2, 3\)"):
        RunningEncoder.target_channels((2, 3))


def test_the_builder_asks_the_encoder(tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sessions = open_dataset(tiny_data)
    config = default_model_config("tiny", frame_size=(18, 32))
    assert target_channels(config, sessions) == {"pupil": 2, "running": 1}
    monkeypatch.setattr(RunningEncoder, "target_channels", classmethod(lambda cls, shape: 7))
    assert target_channels(config, sessions)["running"] == 7

    def refuse(cls, shape):
        raise ValueError(f"{cls.__name__} cannot predict {shape}")

    monkeypatch.setattr(RunningEncoder, "target_channels", classmethod(refuse))
    with pytest.raises(ValueError, match=r"target stream 'running': RunningEncoder cannot predict"):
        target_channels(config, sessions)
