"""Presets: each builds, sized presets have head dim 64 and about the advertised parameter count."""

import pytest
import torch
from pydantic import ValidationError

from neurofm.core.backbone.perceiver import PerceiverIO
from neurofm.core.backbone.presets import PRESETS, BackboneConfig, get_preset

SIZES = {"1M": 1e6, "5M": 5e6, "20M": 20e6, "80M": 80e6, "300M": 300e6}
TABLE = {"1M": (256, 4, 2), "5M": (256, 4, 6), "20M": (512, 8, 6), "80M": (768, 12, 12)}
TABLE["300M"] = (1024, 16, 24)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_builds_with_advertised_size(name) -> None:
    config = get_preset(name)
    with torch.device("meta"):  # no memory, no init cost
        model = PerceiverIO(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n_params / 1e6:.2f}M parameters")
    if name in SIZES:
        assert (config.d_model, config.n_heads, config.n_layers) == TABLE[name]
        assert config.head_dim == 64
        assert SIZES[name] / 2 <= n_params <= SIZES[name] * 2


def test_unknown_preset_lists_known_names() -> None:
    with pytest.raises(ValueError, match="tiny, small, 1M, 5M, 20M, 80M, 300M"):
        get_preset("bogus")


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
