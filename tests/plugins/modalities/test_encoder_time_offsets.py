"""Per-unit sample times in the built-in per-unit encoders: tokens sit at ``t_k + offset_n``."""

from __future__ import annotations

import torch

from neurofm.core.interfaces import StreamTensor
from neurofm.plugins.modalities.calcium import CalciumConfig, CalciumEncoder
from neurofm.plugins.modalities.spikes import SpikesConfig, SpikesEncoder

D = 16


def _stream(values: torch.Tensor, offsets: torch.Tensor | None) -> StreamTensor:
    t = values.shape[0]
    times = torch.arange(t, dtype=torch.float32) / 8.0
    valid = torch.ones(values.shape, dtype=torch.bool)
    return StreamTensor(values, valid, times, 1 / 8.0, offsets)


def test_calcium_token_spans_are_shifted_by_each_units_offset() -> None:
    torch.manual_seed(0)
    enc = CalciumEncoder(CalciumConfig(patch_samples=3), d_model=D)
    values, units = torch.rand(7, 4), torch.randn(4, D)
    offsets = torch.tensor([0.0, 0.03, 0.06, 0.1])
    plain = enc.tokenize(_stream(values, None), units)
    shifted = enc.tokenize(_stream(values, offsets), units)
    torch.testing.assert_close(shifted.features, plain.features, rtol=0, atol=0)
    per_unit = len(plain) // 4  # every patch is valid: tokens are unit-major, [N * n]
    expected = plain.times + offsets.repeat_interleave(per_unit)[:, None]
    torch.testing.assert_close(shifted.times, expected)
    assert not torch.equal(shifted.times, plain.times)


def test_zero_offsets_give_the_same_calcium_tokens() -> None:
    enc = CalciumEncoder(CalciumConfig(), d_model=D)
    values, units = torch.rand(9, 3), torch.randn(3, D)
    plain = enc.tokenize(_stream(values, None), units)
    zero = enc.tokenize(_stream(values, torch.zeros(3)), units)
    assert torch.equal(plain.times, zero.times) and torch.equal(plain.features, zero.features)


def test_spike_tokens_start_at_the_bin_plus_the_units_offset() -> None:
    enc = SpikesEncoder(SpikesConfig(), d_model=D)
    counts = torch.zeros(4, 3)
    counts[1, 0], counts[2, 2], counts[3, 1] = 1, 2, 1
    offsets = torch.tensor([0.01, 0.05, 0.1])
    tokens = enc.tokenize(_stream(counts, offsets), torch.randn(3, D))
    starts = sorted(tokens.times[:, 0].tolist())
    expected = sorted([1 / 8 + 0.01, 2 / 8 + 0.1, 2 / 8 + 0.1, 3 / 8 + 0.05])
    torch.testing.assert_close(torch.tensor(starts), torch.tensor(expected))
    torch.testing.assert_close(tokens.times[:, 1] - tokens.times[:, 0], torch.full((4,), 1 / 8.0))
