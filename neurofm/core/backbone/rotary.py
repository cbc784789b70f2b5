"""Rotary position embeddings over continuous time (seconds).

Each token carries a time span ``(start, end)``; its position is the span midpoint in seconds. Pairs
of channels of every attention head are rotated by ``angle = 2 pi t / period`` with periods spaced
geometrically between ``min_period_s`` and ``max_period_s``. Because rotations compose, the score
between a query at time ``t_q`` and a key at time ``t_k`` depends on ``t_q - t_k`` only.

The rotation is applied to queries and keys once, before the attention backend is called, so every
backend sees identical inputs.

Example:
    >>> import torch
    >>> rope = RotaryTimeEmbedding(head_dim=8, min_period_s=0.01, max_period_s=100.0)
    >>> q = torch.randn(5, 2, 8)
    >>> spans = torch.rand(5, 2)
    >>> rope(q, spans).shape
    torch.Size([5, 2, 8])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["RotaryTimeEmbedding", "span_midpoints"]


def span_midpoints(times: Tensor) -> Tensor:
    """Midpoints of time spans.

    Shape:
        times ``[n, 2]`` -> ``[n]`` (float32).
    """
    times = times.to(torch.float32)
    return 0.5 * (times[:, 0] + times[:, 1])


class RotaryTimeEmbedding(nn.Module):
    """Rotate head channels by angles proportional to each token's time (span midpoint, seconds).

    Channels are split into two halves ``(x1, x2)``; pair ``j`` is ``(x1[j], x2[j])``, rotated with
    angular frequency ``2 pi / period_j``; periods are geometric from ``min_period_s`` to
    ``max_period_s``.

    Args:
        head_dim: channels per head (even).
        min_period_s: shortest period in seconds (finest time resolution).
        max_period_s: longest period in seconds (longest distinguishable offset).

    Shape:
        - x: ``[n, H, head_dim]``
        - times: ``[n, 2]`` spans ``(start, end)`` in seconds
        - output: ``[n, H, head_dim]``, same dtype as x
    """

    inv_period: Tensor

    def __init__(self, head_dim: int, min_period_s: float, max_period_s: float) -> None:
        super().__init__()
        if head_dim % 2 != 0:
            raise ValueError(f"rotary embeddings need an even head dimension, found {head_dim}")
        if not 0 < min_period_s <= max_period_s:
            raise ValueError(
                f"need 0 < min_period_s <= max_period_s, found {min_period_s}, {max_period_s}"
            )
        n_freq = head_dim // 2
        if n_freq == 1:
            periods = torch.tensor([min_period_s], dtype=torch.float64)
        else:
            exponents = torch.linspace(0.0, 1.0, n_freq, dtype=torch.float64)
            periods = min_period_s * (max_period_s / min_period_s) ** exponents
        angular = (2.0 * math.pi / periods).to(torch.float32)
        # A buffer, not a parameter: follows .to(device), is not trained, not saved in checkpoints.
        self.register_buffer("inv_period", angular, persistent=False)
        self.head_dim = head_dim

    def forward(self, x: Tensor, times: Tensor) -> Tensor:
        """Rotate ``x`` by the midpoint time of each token's span."""
        if x.shape[-1] != self.head_dim:
            raise ValueError(f"expected head dim {self.head_dim}, found {x.shape[-1]}")
        t = span_midpoints(times).to(x.device)
        angles = t[:, None] * self.inv_period[None, :]  # [n, head_dim/2], fp32
        cos = torch.cos(angles)[:, None, :]
        sin = torch.sin(angles)[:, None, :]
        x1, x2 = x.float().chunk(2, dim=-1)
        rotated = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return rotated.to(x.dtype)
