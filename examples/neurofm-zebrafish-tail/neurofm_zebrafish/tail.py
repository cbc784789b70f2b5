"""Zebrafish tail encoder: angles of the tracked tail segments (radians, base to tip).

A larval zebrafish's tail is tracked as a chain of segments; bouts (swims, turns, struggles)
show up as travelling bends. Each token covers ``patch_samples`` samples and sees, per sample,
the segment angles and the bends between neighbouring segments (the tail's curvature).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from neurofm import ModalityEncoder, PluginConfig, StreamTensor, Tokens
from neurofm.core.tokens.tokenization import series_tokens

__all__ = ["TailConfig", "TailEncoder"]


class TailConfig(PluginConfig):
    """Tail stream ``[T, channels]`` (one angle per segment); ``patch_samples`` samples per token."""

    type: Literal["zebrafish.tail"] = "zebrafish.tail"
    channels: int = Field(8, ge=2, description="tracked tail segments")
    patch_samples: int = Field(10, ge=1)


class TailEncoder(ModalityEncoder):
    """Temporal patches of tail angles and bends -> behaviour tokens.

    Shape: stream.values ``[T, S]`` (S segments) -> features ``[T, 2S - 1]`` (angles, bends) ->
    tokens ``[ceil(T / patch_samples) - dropped, d_model]``. Untracked samples (NaN) are flagged.
    """

    Config = TailConfig
    role = "behaviour"
    normalization = "zscore"

    def __init__(self, config: TailConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        self.width = 2 * config.channels - 1
        self.embed = nn.Linear(2 * config.patch_samples * self.width, d_model)

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        c = self.config
        angles, valid = stream.values, stream.valid
        if angles.ndim != 2 or angles.shape[1] != c.channels:
            raise ValueError(
                f"zebrafish.tail expects angles [T, {c.channels}], found {tuple(angles.shape)}; "
                f"set `channels` to the number of tracked segments"
            )
        valid = valid if valid.ndim == 2 else valid[:, None].expand_as(angles)
        bends = angles[:, 1:] - angles[:, :-1]
        features = torch.cat([angles, bends], dim=1)
        flags = torch.cat([valid, valid[:, 1:] & valid[:, :-1]], dim=1)
        features = torch.where(flags, features, torch.zeros_like(features))
        stream = StreamTensor(features, flags, stream.times, stream.period_s)
        return series_tokens(self.embed, self.width, c.patch_samples, stream, "zebrafish.tail")
