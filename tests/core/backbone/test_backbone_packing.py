"""PackedSequence: packing, offsets, splitting, validation."""

import pytest
import torch

from neurofm.core.backbone.packing import PackedSequence


def _sample(n: int, d: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    start = torch.arange(n, dtype=torch.float32) * 0.1
    return torch.randn(n, d), torch.stack((start, start + 0.1), dim=1)


def test_pack_split_roundtrip_with_empty_sample() -> None:
    samples = [_sample(3), _sample(0), _sample(5)]
    packed = PackedSequence.pack([s[0] for s in samples], [s[1] for s in samples])
    assert packed.seqlens == (3, 0, 5)
    assert packed.batch_size == 3
    assert packed.offsets.tolist() == [0, 3, 3, 8]
    assert packed.offsets.dtype == torch.int64
    for (x, t), xs, ts in zip(samples, packed.split(), packed.split_times(), strict=True):
        torch.testing.assert_close(xs, x)
        torch.testing.assert_close(ts, t)


def test_with_x_keeps_packing() -> None:
    x, t = _sample(4)
    packed = PackedSequence.pack([x], [t])
    other = packed.with_x(torch.zeros(4, 7))
    assert other.seqlens == packed.seqlens and other.times is packed.times
    assert other.x.shape == (4, 7)


def test_mismatched_lengths_are_rejected() -> None:
    x, t = _sample(4)
    with pytest.raises(ValueError, match="seqlens"):
        PackedSequence(x=x, times=t, seqlens=(3,))
    with pytest.raises(ValueError, match="times"):
        PackedSequence(x=x, times=t[:, :1], seqlens=(4,))
    with pytest.raises(ValueError, match="sample 0"):
        PackedSequence.pack([x], [t[:2]])
