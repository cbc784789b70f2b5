"""Gaze encoder: eye position (x, y) from eye tracking."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.interfaces import ModalityEncoder, StreamTensor, Tokens
from neurofm.core.tokenization import series_tokens

__all__ = ["GazeConfig", "GazeEncoder"]


class GazeConfig(PluginConfig):
    """Gaze stream ``[T, channels]`` (default: x, y in degrees); ``patch_samples`` per token."""

    type: Literal["gaze"] = "gaze"
    channels: int = Field(2, ge=1)
    patch_samples: int = Field(4, ge=1)


class GazeEncoder(ModalityEncoder):
    """Temporal patches of eye position -> tokens; blinks / lost tracking (NaN) are flagged, not zeroed.

    Shape: stream.values ``[T, C]`` -> tokens ``[ceil(T / patch_samples) - dropped, d_model]``.
    """

    Config = GazeConfig
    role = "behaviour"
    normalization = "zscore"

    def __init__(self, config: GazeConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        self.embed = nn.Linear(2 * config.patch_samples * config.channels, d_model)

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        c = self.config
        return series_tokens(self.embed, c.channels, c.patch_samples, stream, "gaze")
