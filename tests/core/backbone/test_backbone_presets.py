"""Presets: each builds, and a sized preset's name is its measured size; old names are aliases."""

import re

import pytest
import torch
from pydantic import ValidationError

from neurofm.core.backbone import presets
from neurofm.core.backbone.perceiver import PerceiverIO
from neurofm.core.backbone.presets import DEPRECATED_ALIASES, PRESETS, BackboneConfig, get_preset


def _backbone_parameters(config: BackboneConfig) -> int:
    """Parameters of the backbone alone, the size a preset's name gives."""
    with torch.device("meta"):  # no memory, no init cost
        model = PerceiverIO(config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(PRESETS))
def test_sized_preset_has_the_size_in_its_name(name) -> None:
    config = get_preset(name)
    n_params = _backbone_parameters(config)
    print(f"{name}: {n_params / 1e6:.2f}M parameters")
    size = re.fullmatch(r"(\d+(?:\.\d+)?)M", name)
    if size is None:
        assert name in ("tiny", "small")  # the two unsized presets
        return
    assert n_params == pytest.approx(float(size.group(1)) * 1e6, rel=0.1)
    assert config.head_dim == 64


@pytest.mark.parametrize(("old", "new"), list(DEPRECATED_ALIASES.items()))
def test_deprecated_alias_resolves_to_its_preset(old, new) -> None:
    assert new in PRESETS and old not in PRESETS
    with pytest.warns(
        DeprecationWarning, match=re.escape(f"'{old}' is a deprecated alias of '{new}'")
    ):
        config = get_preset(old)
    assert config == get_preset(new)
    # the builder's old name too: preset_5m is preset_7m
    with pytest.warns(DeprecationWarning, match=PRESETS[new].__name__):
        assert getattr(presets, f"preset_{old.lower()}") is PRESETS[new]


def test_unknown_preset_lists_known_names_and_aliases() -> None:
    with pytest.raises(ValueError, match="unknown backbone preset 'bogus'") as error:
        get_preset("bogus")
    assert "known presets: tiny, small, 1.6M, 7M, 28M, 106M, 340M" in str(error.value)
    assert "deprecated aliases: 1M -> 1.6M, 5M -> 7M" in str(error.value)
    with pytest.raises(AttributeError):
        presets.preset_bogus  # noqa: B018


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValidationError, match="extra"):
        BackboneConfig(d_modle=32)
    with pytest.raises(ValidationError, match="must divide"):
        BackboneConfig(d_model=30, n_heads=4)
    with pytest.raises(ValidationError):
        BackboneConfig(attention="flash")
    with pytest.raises(ValidationError, match="decoder_lookback_s"):
        BackboneConfig(decoder_reads_inputs=True, decoder_lookback_s=-1.0)


def test_local_every_marks_global_layers() -> None:
    config = BackboneConfig(n_layers=6, local_every=3)
    assert [config.is_local(i) for i in range(6)] == [True, True, False, True, True, False]
    assert not any(BackboneConfig(n_layers=4).is_local(i) for i in range(4))
