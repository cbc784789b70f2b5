"""Image encoder: static images flashed inside trials, encoded once per presentation.

The stream holds one frame per presentation, timestamped at its onset (SENSORIUM 2022 style:
an image for ~0.5 s, then gray, which may be written as a presentation of a gray frame). Each
presentation is cut into spatial patches; every patch token spans the whole presentation
``[onset, onset + duration)``, where ``duration`` is ``duration_s`` from the config or, when that
is None, the time to the next onset (the stream's sampling period for the last one in a window).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.devices import take_rows
from neurofm.core.interfaces import ModalityEncoder, StreamTensor, Tokens
from neurofm.core.tokens.tokenization import frames_hwc, patch_grid

__all__ = ["ImageConfig", "ImageEncoder"]


class ImageConfig(PluginConfig):
    """Image size, patch size and presentation duration. Frames ``[T, H, W]`` or ``[T, H, W, C]``."""

    type: Literal["image"] = "image"
    height: int = Field(36, ge=1)
    width: int = Field(64, ge=1)
    channels: int = Field(1, ge=1)
    patch_height: int = Field(9, ge=1)
    patch_width: int = Field(16, ge=1)
    duration_s: float | None = Field(
        None, gt=0, description="on-screen time of each image; None: until the next onset"
    )

    @model_validator(mode="after")
    def _divisible(self) -> ImageConfig:
        patch_grid("image", self.height, self.width, self.patch_height, self.patch_width)
        return self


class ImageEncoder(ModalityEncoder):
    """Patches of each presented image -> one token each, spanning the presentation.

    A learned embedding marks a patch's position on the screen. Invalid (missing) presentations
    give no tokens.

    Shape:
        stream.values ``[T, H, W]`` or ``[T, H, W, C]`` (T presentations) -> tokens
        ``[T_valid * (H / patch_height) * (W / patch_width), d_model]``.
    """

    Config = ImageConfig
    role = "stimulus"
    normalization = "zscore"

    def __init__(self, config: ImageConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        c = config
        self.patch = nn.Conv2d(
            c.channels,
            d_model,
            (c.patch_height, c.patch_width),
            stride=(c.patch_height, c.patch_width),
        )
        n_spatial = (c.height // c.patch_height) * (c.width // c.patch_width)
        # unit-scale position codes: with a small init the screen position of a patch is swamped by
        # its content and learned slowly (measured on simulated V1: r / noise ceiling 0.40 -> 0.42
        # after 300 steps; 0.36 -> 0.50 on a synthetic block-luminance task)
        self.position = nn.Parameter(torch.randn(n_spatial, d_model))

    def spans(self, onsets: Tensor, period_s: float) -> Tensor:
        """``[T, 2]`` (onset, offset) of presentations with onsets ``[T]`` (seconds)."""
        if self.config.duration_s is not None:
            return torch.stack([onsets, onsets + self.config.duration_s], -1)
        ends = torch.cat([onsets[1:], onsets[-1:] + period_s])
        return torch.stack([onsets, ends], -1)

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        c = self.config
        frames = frames_hwc(stream.values, c.height, c.width, c.channels, "image")
        if frames.shape[0] == 0:
            return Tokens(frames.new_zeros(0, self.d_model), frames.new_zeros(0, 2))
        spans = self.spans(stream.times, stream.period_s)
        keep = stream.host_valid().reshape(frames.shape[0], -1).all(1)  # on the host
        x = self.patch(take_rows(frames, keep).permute(0, 3, 1, 2))  # [T', d, nh, nw]
        x = x.flatten(2).transpose(1, 2) + self.position  # [T', n_spatial, d]
        n_spatial = x.shape[1]
        spans = take_rows(spans, keep).repeat_interleave(n_spatial, 0)
        return Tokens(x.reshape(-1, self.d_model), spans)
