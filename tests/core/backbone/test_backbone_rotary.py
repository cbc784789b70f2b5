"""Rotary time embedding: norm preserving, depends only on time differences."""

import torch

from neurofm.core.backbone.rotary import RotaryTimeEmbedding


def _spans(mid: torch.Tensor) -> torch.Tensor:
    return torch.stack((mid - 0.01, mid + 0.01), dim=1)


def test_rotation_preserves_norm_and_is_identity_at_zero() -> None:
    rope = RotaryTimeEmbedding(head_dim=16, min_period_s=0.01, max_period_s=100.0)
    x = torch.randn(6, 3, 16)
    out = rope(x, _spans(torch.rand(6) * 5))
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(rope(x, torch.zeros(6, 2)), x)


def test_scores_depend_only_on_time_difference() -> None:
    rope = RotaryTimeEmbedding(head_dim=8, min_period_s=0.05, max_period_s=20.0)
    q, k = torch.randn(5, 2, 8), torch.randn(7, 2, 8)
    tq, tk = torch.rand(5) * 2, torch.rand(7) * 2
    scores = torch.einsum("qhd,khd->hqk", rope(q, _spans(tq)), rope(k, _spans(tk)))
    shifted = torch.einsum("qhd,khd->hqk", rope(q, _spans(tq + 1.5)), rope(k, _spans(tk + 1.5)))
    torch.testing.assert_close(scores, shifted, atol=1e-4, rtol=1e-4)


def test_periods_are_geometric_between_bounds() -> None:
    rope = RotaryTimeEmbedding(head_dim=8, min_period_s=0.01, max_period_s=100.0)
    periods = 2 * torch.pi / rope.inv_period
    torch.testing.assert_close(periods[0], torch.tensor(0.01))
    torch.testing.assert_close(periods[-1], torch.tensor(100.0))
    ratios = periods[1:] / periods[:-1]
    torch.testing.assert_close(ratios, ratios[0].expand_as(ratios))
