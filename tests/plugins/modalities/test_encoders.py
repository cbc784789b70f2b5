"""Unit behaviour of the built-in encoders: image, parametric, spikes, gaze, movie pooling/stride."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from neurofm import registry
from neurofm.core.interfaces import StreamTensor
from neurofm.testing import check_modality

D = 16


def _stream(values: torch.Tensor, times: torch.Tensor, period: float) -> StreamTensor:
    valid = torch.isfinite(values)
    if values.ndim != 2:
        valid = valid.reshape(values.shape[0], -1).all(1)
    return StreamTensor(torch.nan_to_num(values), valid, times, period)


def _build(name: str, **config):
    cls = registry.modalities.get(name)
    return cls(cls.Config(**config), d_model=D)


def test_image_tokens_span_each_presentation() -> None:
    enc = _build("image", height=8, width=12, patch_height=4, patch_width=6)
    images = torch.randn(3, 8, 12)
    images[1] = float("nan")  # a missing presentation gives no tokens
    tokens = enc.tokenize(_stream(images, torch.tensor([0.1, 0.6, 1.0]), 0.5))
    assert len(tokens) == 2 * 4  # 2 valid presentations x 4 patches, not frame by frame
    assert torch.allclose(tokens.times[:4], torch.tensor([0.1, 0.6]).expand(4, 2))
    assert torch.allclose(tokens.times[4:], torch.tensor([1.0, 1.5]).expand(4, 2))
    fixed = _build("image", height=8, width=12, patch_height=4, patch_width=6, duration_s=0.25)
    tokens = fixed.tokenize(_stream(images, torch.tensor([0.1, 0.6, 1.0]), 0.5))
    assert torch.allclose(tokens.times[0], torch.tensor([0.1, 0.35]))


def test_parametric_embeds_periodic_parameters_as_periodic() -> None:
    enc = _build("parametric")
    values = torch.tensor(
        [[1.0, 1, 0.04, 2, 1, 0], [179.0, 359, 0.04, 2, 1, 0], [91, 181, 0.04, 2, 1, 0]]
    )
    feats, _ = enc.features(values, torch.ones_like(values, dtype=torch.bool))
    assert torch.dist(feats[0], feats[1]) < 0.2  # 1 and 179 degrees are neighbours
    assert torch.dist(feats[0], feats[2]) > 2.0  # 1 and 91 degrees are opposite
    with pytest.raises(ValidationError, match="period"):
        registry.modalities.get("parametric").Config(parameters=[{"name": "o", "kind": "periodic"}])


def test_moving_dots_are_parameters_too() -> None:
    dots = [
        {"name": "direction", "kind": "periodic", "period": 360},
        {"name": "speed_deg_s", "kind": "linear", "scale": 20},
        {"name": "coherence", "kind": "linear"},
    ]
    cls = registry.modalities.get("parametric")
    check_modality(cls, cls.Config(parameters=dots), d_model=D)


def test_parametric_nan_parameters_are_flagged_not_zero_filled() -> None:
    enc = _build("parametric", patch_samples=2)
    values = torch.randn(8, 6) * 50
    values[:4, [0, 1, 2, 3, 5]] = float("nan")  # gray screen: only contrast defined
    values[:4, 4] = 0.0
    stream = _stream(values, torch.arange(8) / 30.0, 1 / 30.0)
    _feats, flags = enc.features(stream.values, stream.valid)
    assert not flags[:4, :4].any() and flags[:4, 6].all() and flags[4:].all()
    tokens = enc.tokenize(stream)
    assert len(tokens) == 4 and torch.isfinite(tokens.features).all()


def test_spikes_one_token_per_spike_with_unit_identity() -> None:
    enc = _build("spikes")
    counts = torch.zeros(4, 3)
    counts[1, 2] = 3
    counts[3, 0] = 1
    counts[2, 1] = float("nan")  # invalid bin: no token
    units = torch.randn(3, D)
    tokens = enc.tokenize(_stream(counts, torch.arange(4) * 0.01, 0.01), units)
    assert len(tokens) == 4
    assert torch.allclose(tokens.features[0], units[2] + enc.spike)
    assert torch.allclose(tokens.times[0], torch.tensor([0.01, 0.02]))
    assert torch.allclose(tokens.features[3], units[0] + enc.spike)


def test_gaze_blinks_are_flagged() -> None:
    enc = _build("gaze", patch_samples=2)
    gaze = torch.randn(6, 2)
    gaze[2:4] = float("nan")  # a blink: that token is dropped, the others are finite
    tokens = enc.tokenize(_stream(gaze, torch.arange(6) / 20.0, 0.05))
    assert len(tokens) == 2 and torch.isfinite(tokens.features).all()


def test_movie_defaults_unchanged_and_token_count_controls() -> None:
    frames = torch.randn(30, 36, 64)
    stream = _stream(frames, torch.arange(30) / 30.0, 1 / 30.0)
    default = _build("movie")
    assert len(default.tokenize(stream)) == 10 * 16
    assert set(default.state_dict()) == {"patch.weight", "patch.bias", "position"}
    pooled = _build("movie", pool_height=2, pool_width=4)
    assert len(pooled.tokenize(stream)) == 10 * 2
    strided = _build("movie", patch_frames=4, stride_frames=2)
    tokens = strided.tokenize(stream)
    assert len(tokens) == 14 * 16  # overlapping tubelets: starts 0, 2, ..., 26
    assert torch.allclose(tokens.times[16], torch.tensor([2 / 30, 6 / 30]))
    with pytest.raises(ValidationError, match="pooled"):
        registry.modalities.get("movie").Config(pool_height=3)
    cls = registry.modalities.get("movie")
    check_modality(cls, cls.Config(height=8, width=12, patch_height=2, patch_width=3,
                                   pool_height=2, pool_width=2, stride_frames=2), d_model=D)  # fmt: skip
