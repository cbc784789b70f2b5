"""Running encoder: treadmill / wheel running speed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.interfaces import ModalityEncoder, StreamTensor, Tokens
from neurofm.core.tokenization import series_tokens

__all__ = ["RunningConfig", "RunningEncoder"]


class RunningConfig(PluginConfig):
    """Running stream ``[T, channels]`` (default: speed); ``patch_samples`` per token."""

    type: Literal["running"] = "running"
    channels: int = Field(1, ge=1)
    patch_samples: int = Field(4, ge=1)


class RunningEncoder(ModalityEncoder):
    """Temporal patches of running speed -> tokens; missing samples are flagged, not zeroed.

    Shape: stream.values ``[T, C]`` -> tokens ``[ceil(T / patch_samples), d_model]``.
    """

    Config = RunningConfig
    role = "behaviour"
    normalization = "zscore"

    def __init__(self, config: RunningConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        self.embed = nn.Linear(2 * config.patch_samples * config.channels, d_model)

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        c = self.config
        return series_tokens(self.embed, c.channels, c.patch_samples, stream, "running")
