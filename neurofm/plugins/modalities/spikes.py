"""Spike encoder: one token per spike (POYO style), from a per-unit binned count stream.

Stored layout: spikes are a per-unit stream ``[T, N]`` of counts per time bin (the bin width is
the stream's sampling period), exactly like calcium. This keeps the session format unchanged (no
ragged event arrays): windows, unit masks, per-unit targets and the Poisson head all work as they
do for calcium, and a bin of 1 ms recovers event times as finely as any recording needs.

Each spike becomes a token ``unit identity + learned spike embedding`` spanning its bin
``[t, t + period_s)``, shifted by the unit's time offset when the stream carries them
(``stream.unit_time_offset_s``). Bins flagged invalid give no tokens.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.interfaces import ModalityEncoder, StreamTensor, Tokens
from neurofm.core.tokens.tokenization import check_unit_stream

__all__ = ["SpikesConfig", "SpikesEncoder"]


class SpikesConfig(PluginConfig):
    """``max_spikes_per_bin`` caps the tokens of one (bin, unit) (bounds the token count)."""

    type: Literal["spikes"] = "spikes"
    max_spikes_per_bin: int = Field(8, ge=1)


class SpikesEncoder(ModalityEncoder):
    """One token per spike: the unit's identity embedding plus a learned spike embedding.

    Counts are rounded to whole spikes (negative values count as 0). The stream is not normalised,
    so as a target the Poisson head sees raw counts.

    Shape:
        stream.values ``[T, N]`` counts, unit_embeddings ``[N, d_model]`` ->
        tokens ``[sum(min(counts, max_spikes_per_bin)), d_model]``, times ``[n, 2]`` (bin spans).
    """

    Config = SpikesConfig
    role = "neural"
    normalization = "none"
    per_unit = True

    def __init__(self, config: SpikesConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        self.spike = nn.Parameter(torch.randn(d_model) * 0.02)

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        values, valid = stream.values, stream.valid
        check_unit_stream(values, unit_embeddings, self.d_model, "spikes")
        valid = valid if valid.ndim == 2 else valid[:, None].expand_as(values)
        counts = torch.round(values.detach()).clamp(0, self.config.max_spikes_per_bin)
        counts = torch.where(valid, counts, 0).long()
        bins, units = counts.nonzero(as_tuple=True)
        repeats = counts[bins, units]
        bins, units = bins.repeat_interleave(repeats), units.repeat_interleave(repeats)
        features = unit_embeddings[units] + self.spike
        start = stream.times[bins]
        if stream.unit_time_offset_s is not None:  # [N]: each unit's sample time in a bin
            start = start + stream.unit_time_offset_s[units]
        return Tokens(features, torch.stack([start, start + stream.period_s], -1))
