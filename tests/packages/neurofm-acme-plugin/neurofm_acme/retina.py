"""A third-party stimulus encoder that gives positioned features: local contrast energy.

It shows the documented path for the stimulus path (``neurofm.PositionedStimulusEncoder``): no
convolutional core, just each frame's pixels and their squares, average-pooled onto a coarse grid
of the screen, as a 2-channel feature map; tokens are the pooled maps through a linear layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from neurofm import PluginConfig, StreamTensor, Tokens
from neurofm.core.interfaces import FeatureMap, PositionedOutput, PositionedStimulusEncoder

__all__ = ["RetinaConfig", "RetinaEncoder"]


class RetinaConfig(PluginConfig):
    type: Literal["acme.retina"] = "acme.retina"
    height: int = Field(18, ge=1)
    width: int = Field(32, ge=1)
    pool: int = Field(2, ge=1)


class RetinaEncoder(PositionedStimulusEncoder):
    """Frames ``[T, H, W]`` -> feature maps ``[T, 2, H / pool, W / pool]`` and one token per frame."""

    Config = RetinaConfig
    role = "stimulus"
    normalization = "zscore"

    def __init__(self, config: RetinaConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        self.feature_channels = 2
        h, w = config.height // config.pool, config.width // config.pool
        self.embed = nn.Linear(2 * h * w, d_model)

    def encode_batch(self, streams: Sequence[StreamTensor]) -> list[PositionedOutput]:
        out = []
        for stream in streams:  # small enough to loop; a real encoder batches its core
            c = self.config
            frames = stream.values.reshape(stream.n_samples, 1, c.height, c.width)
            maps = nn.functional.avg_pool2d(torch.cat([frames, frames**2], 1), self.config.pool)
            spans = torch.stack([stream.times, stream.times + stream.period_s], -1)
            tokens = Tokens(self.embed(maps.flatten(1)), spans)
            out.append(PositionedOutput(tokens, FeatureMap(maps, stream.times, stream.period_s)))
        return out
