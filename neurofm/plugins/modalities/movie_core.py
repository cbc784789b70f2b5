"""Movie encoder with a shared convolutional core: positioned features for the stimulus path and
pooled tokens for the backbone.

The frames of every sample of a batch go through one :class:`~neurofm.core.tokens.conv_core.
FactorisedCore` call (spatial conv, causal temporal conv, batch norm, ELU per block). Its output
at each frame is the sample's :class:`~neurofm.FeatureMap` over the screen, which a retinotopic
readout samples at each neuron's place. For the backbone (the context path) the same features are
averaged over ``token_frames`` frames and pooled onto a ``token_rows x token_cols`` grid; each
grid cell becomes one token (a linear map of its channels plus a learned position code).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.devices import take_rows
from neurofm.core.interfaces import (
    FeatureMap,
    PositionedOutput,
    PositionedStimulusEncoder,
    StreamTensor,
    Tokens,
)
from neurofm.core.tokens.conv_core import CoreConfig, FactorisedCore
from neurofm.core.tokens.tokenization import frames_hwc, groups_with_valid, same_length_groups

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
        out: list[PositionedOutput | None] = [None] * len(streams)
        groups = []  # samples of one length are pooled and tokenised at once
        for idx in same_length_groups(streams):
            if streams[idx[0]].n_samples == 0:
                for i in idx:  # the frame size is checked here, or in _pool_frames
                    frames_hwc(streams[i].values, c.height, c.width, c.channels, "movie")
                    out[i] = self._empty(streams[i])
            else:
                groups.append(idx)
        if not groups:
            return out  # type: ignore[return-value]
        pooled = [self._pool_frames([streams[i] for i in idx]) for idx in groups]
        longest = max(frames.shape[1] for frames, *_ in pooled)
        # one core call for the whole batch (its batch norm sees every sample); zero frames after
        # a shorter sample's end change nothing (the core is causal)
        padded = torch.cat(
            [nn.functional.pad(f, (0, 0, 0, 0, 0, 0, 0, longest - f.shape[1])) for f, *_ in pooled]
        )  # [B, T', H, W, C]
        maps = self.core(padded.permute(0, 1, 4, 2, 3))  # [B, T', C', H', W']
        # split and unbind, not index: each indexing op's backward writes a zero tensor of the
        # whole batch's maps (16 samples: 16 of them), unbind's backward stacks once
        by_group = maps.split([len(idx) for idx in groups])
        for idx, group_maps, (frames, valid, starts, times, valid_host) in zip(
            groups, by_group, pooled, strict=True
        ):
            if group_maps.shape[1] != frames.shape[1]:
                group_maps = group_maps[:, : frames.shape[1]]
            period = streams[idx[0]].period_s * c.frame_pool
            tokens = self._tokens(
                group_maps, valid, valid_host, starts, times, streams[idx[0]].period_s
            )
            for i, sample_maps, sample_times, sample_tokens in zip(
                idx, group_maps.unbind(0), times.unbind(0), tokens, strict=True
            ):
                out[i] = PositionedOutput(
                    sample_tokens, FeatureMap(sample_maps, sample_times, period)
                )
        return out  # type: ignore[return-value]

    def penalty(self) -> Tensor | None:
        return self.core.penalty()

    def learning_rate_scales(self) -> dict[str, float]:
        """The core at its config's ``lr_scale`` (the token projection at 1)."""
        return {"core.": self.config.core.lr_scale}

    def _pool_frames(
        self, streams: Sequence[StreamTensor]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, np.ndarray]:
        """Frames ``[G, T', H, W, C]`` of samples of one length, each group of ``frame_pool``
        consecutive frames averaged (valid ones only), with whether each group had a valid frame
        ``[G, T']``, its first frame's time and its last frame's time ``[G, T']`` (a core step
        describes the frames up to its time), and the groups' validity on the host ``[G, T']``."""
        c = self.config
        frames = torch.stack(
            [frames_hwc(s.values, c.height, c.width, c.channels, "movie") for s in streams]
        )  # [G, T, H, W, C]
        t = frames.shape[1]
        valid = torch.stack([s.valid.reshape(t) for s in streams])
        valid_host = np.stack([s.host_valid().reshape(t) for s in streams])
        times = torch.stack([s.times for s in streams])
        if c.frame_pool == 1:
            return frames, valid, times, times, valid_host
        all_valid = bool(valid_host.all())
        mean, any_valid, first, last = _group_mean(frames, valid, c.frame_pool, all_valid)
        return (
            mean,
            any_valid,
            times[:, first],
            times[:, last],
            groups_with_valid(valid_host, c.frame_pool, axis=1),
        )

    def _tokens(
        self,
        maps: Tensor,
        valid: Tensor,
        valid_host: np.ndarray,
        starts: Tensor,
        times: Tensor,
        frame_period: float,
    ) -> list[Tokens]:
        """Tokens of each sample of a group: core steps ``maps [G, T', C, H', W']`` averaged over
        ``token_frames`` steps and pooled onto the token grid."""
        c = self.config
        g, t = maps.shape[:2]
        # pooled onto the token grid first, then averaged over time: both are averages, so the
        # order does not change the values, and the time average then runs on r*c positions
        # instead of H'*W' (it pads the map when T' is not a multiple of token_frames)
        grid = (c.token_rows, c.token_cols)
        pooled = nn.functional.adaptive_avg_pool2d(maps.flatten(0, 1), grid)
        pooled = pooled.view(g, t, *pooled.shape[1:])  # [G, T', C, r, c]
        mean, _, first, last = _group_mean(
            pooled, valid, c.token_frames, bool(valid_host.all())
        )  # [G, n, C, r, c]
        keep = groups_with_valid(valid_host, c.token_frames, axis=1)  # [G, n], on the host
        n = mean.shape[1]
        x = self.to_token(mean.flatten(0, 1).flatten(2).transpose(1, 2)) + self.position
        n_spatial = x.shape[1]
        x = x.view(g, n * n_spatial, self.d_model)
        spans = torch.stack([starts[:, first], times[:, last] + frame_period], -1)  # [G, n, 2]
        spans = spans.repeat_interleave(n_spatial, dim=1)  # [G, n * r*c, 2]
        if keep.all():
            return [Tokens(xi, si) for xi, si in zip(x.unbind(0), spans.unbind(0), strict=True)]
        keep = keep.repeat(n_spatial, axis=1)
        return [
            Tokens(take_rows(xi, ki), take_rows(si, ki))
            for xi, si, ki in zip(x.unbind(0), spans.unbind(0), keep, strict=True)
        ]

    def _empty(self, stream: StreamTensor) -> PositionedOutput:
        c = self.config
        h, w = c.core.map_size(c.height, c.width)
        values = stream.values.new_zeros(0, self.feature_channels, h, w)
        tokens = Tokens(stream.values.new_zeros(0, self.d_model), stream.values.new_zeros(0, 2))
        return PositionedOutput(tokens, FeatureMap(values, stream.times[:0], stream.period_s))


def _group_mean(
    values: Tensor, valid: Tensor, k: int, all_valid: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Means over the valid steps of each group of ``k`` consecutive steps (the last group may be
    shorter), for every sample at once. ``all_valid``: every step is valid (known on the host; a
    plain mean then).

    Shape: values ``[G, T, ...]``, valid ``[G, T]`` -> mean ``[G, n, ...]``, whether any step of
    the group was valid ``[G, n]``, and the index of each group's first and last step ``[n]``,
    with ``n = ceil(T / k)``.
    """
    g, t = values.shape[:2]
    n = -(-t // k)
    pad = n * k - t
    weight = nn.functional.pad(valid.reshape(g, t).to(values.dtype), (0, pad)).view(g, n, k)
    grouped = nn.functional.pad(values, (0, 0) * (values.ndim - 2) + (0, pad)) if pad else values
    grouped = grouped.reshape(g, n, k, *values.shape[2:])
    expand = (1,) * (values.ndim - 2)
    total = weight.sum(2)
    if pad == 0 and all_valid:  # every step counts: a plain mean (no weighting pass)
        mean = grouped.mean(2)
    else:
        mean = (grouped * weight.view(g, n, k, *expand)).sum(2)
        mean = mean / total.clamp(min=1).view(g, n, *expand)
    first = torch.arange(n, device=values.device) * k
    last = torch.clamp(first + k - 1, max=t - 1)
    return mean, total > 0, first, last
