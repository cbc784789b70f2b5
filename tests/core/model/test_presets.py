"""Named model presets: the mouse-V1 default is one preset among ``MODEL_PRESETS``; every preset
builds a model at the CPU backbone sizes; an unknown name lists the known ones."""

from __future__ import annotations

import pytest

from neurofm import registry
from neurofm.core.interfaces import StimulusReadout
from neurofm.core.model.builder import build_model_from_units
from neurofm.core.model.presets import (
    DEFAULT_MODEL_PRESET,
    MODEL_PRESETS,
    default_model_config,
    get_model_preset,
)


def test_the_default_model_is_the_named_mouse_v1_preset() -> None:
    assert DEFAULT_MODEL_PRESET == "mouse_v1" and DEFAULT_MODEL_PRESET in MODEL_PRESETS
    for backbone in ("tiny", "small", "7M"):
        assert default_model_config(backbone, frame_size=(18, 32)) == get_model_preset(
            "mouse_v1", backbone=backbone, frame_size=(18, 32)
        )


@pytest.mark.parametrize("name", sorted(MODEL_PRESETS))
@pytest.mark.parametrize("backbone", ["tiny", "small"])
def test_every_preset_builds_a_model(name: str, backbone: str) -> None:
    cfg = get_model_preset(name, backbone=backbone)
    assert cfg.backbone.d_model == {"tiny": 32, "small": 64}[backbone]
    channels = {n: 1 for n, m in cfg.modalities.items()
                if n in cfg.heads and not registry.modalities.get(m.type).per_unit}  # fmt: skip
    model = build_model_from_units(cfg, {}, channels)
    assert set(model.encoders) == set(cfg.modalities) and set(model.heads) == set(cfg.heads)


def test_the_stimulus_path_option_swaps_the_readout() -> None:
    on = get_model_preset("mouse_v1", backbone="tiny")
    off = get_model_preset("mouse_v1", backbone="tiny", stimulus_path=False)
    assert issubclass(registry.readouts.get(on.readout.type), StimulusReadout)
    assert not issubclass(registry.readouts.get(off.readout.type), StimulusReadout)


def test_an_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown model preset 'mouse_v2'; known: mouse_v1"):
        get_model_preset("mouse_v2")
