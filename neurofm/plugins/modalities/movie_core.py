"""Movie encoder with a shared convolutional core: positioned features for the stimulus path and
pooled tokens for the backbone.

The frames of every sample of a batch go through one :class:`~neurofm.core.conv_core.
FactorisedCore` call (spatial conv, causal temporal conv, batch norm, ELU per block). Its output
at each frame is the sample's :class:`~neurofm.FeatureMap` over the screen, which a retinotopic
readout samples at each neuron's place. For the backbone (the context path) the same features are
averaged over ``token_frames`` frames and pooled onto a ``token_rows x token_cols`` grid; each
grid cell becomes one token (a linear map of its channels plus a learned position code).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.conv_core import CoreConfig, FactorisedCore
from neurofm.core.interfaces import (
    FeatureMap,
    PositionedOutput,
    PositionedStimulusEncoder,
    StreamTensor,
    Tokens,
)
from neurofm.core.tokenization import frames_hwc

__all__ = ["MovieCoreConfig", "MovieCoreEncoder"]


class MovieCoreConfig(PluginConfig):
    """Frame size, the core, and the backbone's token grid. Frames ``[T, H, W]`` (or
    ``[T, H, W, C]`` with ``channels`` C)."""

    type: Literal["movie_core"] = "movie_core"
    height: int = Field(36, ge=1)
    width: int = Field(64, ge=1)
    channels: int = Field(1, ge=1)
    core: CoreConfig = Field(default_factory=CoreConfig)
    frame_pool: int = Field(
        1, ge=1, description="average this many consecutive frames into one core time step"
    )
    token_frames: int = Field(3, ge=1, description="core time steps averaged into one token")
    token_rows: int = Field(4, ge=1)
    token_cols: int = Field(4, ge=1)


class MovieCoreEncoder(PositionedStimulusEncoder):
    """Movie -> core feature maps ``[T, C, H', W']`` (stimulus path) and tokens (context path).

    Token groups whose frames are all invalid (missing) give no tokens; their feature-map steps
    stay (computed from zero frames), so the map keeps one step per frame (per ``frame_pool``
    frames: the core then runs at a fraction of the frame rate).

    Shape:
        stream.values ``[T, H, W]`` or ``[T, H, W, C]`` -> features ``[T', core.channels, H', W']``
        with ``T' = ceil(T / frame_pool)``, at the (last) frame times, and tokens
        ``[ceil(T' / token_frames) * token_rows * token_cols, d_model]``.
    """

    Config = MovieCoreConfig
    role = "stimulus"
    normalization = "zscore"

    def __init__(self, config: MovieCoreConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        c = config
        c.core.map_size(c.height, c.width)  # fails early on frames the core cannot pool
        self.core = FactorisedCore(c.core, in_channels=c.channels)
        self.feature_channels = c.core.channels
        self.to_token = nn.Linear(c.core.channels, d_model)
        # unit-scale position codes (as the tubelet encoder's): a token's screen position must not
        # be swamped by its content
        self.position = nn.Parameter(torch.randn(c.token_rows * c.token_cols, d_model))

    def encode_batch(self, streams: Sequence[StreamTensor]) -> list[PositionedOutput]:
        c = self.config
        pooled = [self._pool_frames(s) for s in streams]
        streams, starts = [p[0] for p in pooled], [p[1] for p in pooled]
        frames = [frames_hwc(s.values, c.height, c.width, c.channels, "movie") for s in streams]
        lengths = [f.shape[0] for f in frames]
        longest = max(lengths, default=0)
        if longest == 0:
            return [self._empty(s) for s in streams]
        # zero frames after a shorter sample's end: the core is causal, so they change nothing
        padded = torch.stack(
            [nn.functional.pad(f, (0, 0, 0, 0, 0, 0, 0, longest - f.shape[0])) for f in frames]
        )  # [B, T, H, W, C]
        maps = self.core(padded.permute(0, 1, 4, 2, 3))  # [B, T, C', H', W']
        out = []
        for b, stream in enumerate(streams):
            t = lengths[b]
            if t == 0:
                out.append(self._empty(stream))
                continue
            values = maps[b, :t]
            features = FeatureMap(values, stream.times, stream.period_s)
            tokens = self._tokens(values, stream, starts[b])
            out.append(PositionedOutput(tokens, features))
        return out

    def penalty(self) -> Tensor | None:
        return self.core.penalty()

    def _pool_frames(self, stream: StreamTensor) -> tuple[StreamTensor, Tensor]:
        """Average groups of ``frame_pool`` consecutive frames (valid ones only); a group is
        timed at its last frame, so a core step describes the frames up to its time. Also returns
        the time of each group's first frame ``[T']``."""
        k = self.config.frame_pool
        if k == 1 or stream.n_samples == 0:
            return stream, stream.times
        mean, any_valid, first, last = _group_mean(stream.values, stream.valid, k)
        pooled = StreamTensor(mean, any_valid, stream.times[last], stream.period_s * k)
        return pooled, stream.times[first]

    def _tokens(self, values: Tensor, stream: StreamTensor, starts: Tensor) -> Tokens:
        c = self.config
        mean, keep, first, last = _group_mean(values, stream.valid, c.token_frames)
        pooled = nn.functional.adaptive_avg_pool2d(mean, (c.token_rows, c.token_cols))
        x = self.to_token(pooled.flatten(2).transpose(1, 2)) + self.position  # [n_t, r*c, d]
        frame_period = stream.period_s / c.frame_pool
        spans = torch.stack([starts[first], stream.times[last] + frame_period], -1)
        n_spatial = x.shape[1]
        x, spans = x[keep], spans[keep]
        return Tokens(x.reshape(-1, self.d_model), spans.repeat_interleave(n_spatial, dim=0))

    def _empty(self, stream: StreamTensor) -> PositionedOutput:
        c = self.config
        h, w = c.core.map_size(c.height, c.width)
        values = stream.values.new_zeros(0, self.feature_channels, h, w)
        tokens = Tokens(stream.values.new_zeros(0, self.d_model), stream.values.new_zeros(0, 2))
        return PositionedOutput(tokens, FeatureMap(values, stream.times[:0], stream.period_s))


def _group_mean(values: Tensor, valid: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Means over the valid steps of each group of ``k`` consecutive steps (the last group may be
    shorter).

    Shape: values ``[T, ...]``, valid ``[T]`` (or ``[T, 1...]``) -> mean ``[n, ...]``, whether any
    step of the group was valid ``[n]``, and the index of each group's first and last step
    ``[n]``, with ``n = ceil(T / k)``.
    """
    t = values.shape[0]
    n = -(-t // k)
    pad = n * k - t
    weight = nn.functional.pad(valid.reshape(t).to(values.dtype), (0, pad)).view(n, k)
    grouped = nn.functional.pad(values, (0, 0) * (values.ndim - 1) + (0, pad))
    grouped = grouped.view(n, k, *values.shape[1:])
    expand = (1,) * (values.ndim - 1)
    total = weight.sum(1)
    mean = (grouped * weight.view(n, k, *expand)).sum(1) / total.clamp(min=1).view(n, *expand)
    first = torch.arange(n, device=values.device) * k
    last = torch.clamp(first + k - 1, max=t - 1)
    return mean, total > 0, first, last
