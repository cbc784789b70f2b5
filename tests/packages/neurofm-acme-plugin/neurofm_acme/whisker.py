"""Whisker encoder: whisker angles (one channel per tracked whisker) as behaviour tokens."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from torch import Tensor, nn

from neurofm import ModalityEncoder, PluginConfig, StreamTensor, Tokens
from neurofm.core.tokens.tokenization import series_tokens

__all__ = ["WhiskerConfig", "WhiskerEncoder"]


class WhiskerConfig(PluginConfig):
    """Whisker stream ``[T, channels]``; ``patch_samples`` samples per token."""

    type: Literal["acme.whisker"] = "acme.whisker"
    channels: int = Field(2, ge=1)
    patch_samples: int = Field(5, ge=1)


class WhiskerEncoder(ModalityEncoder):
    """Temporal patches of whisker angles -> tokens.

    Shape: stream.values ``[T, C]`` -> tokens ``[ceil(T / patch_samples), d_model]``.
    """

    Config = WhiskerConfig
    role = "behaviour"
    normalization = "zscore"

    def __init__(self, config: WhiskerConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        self.embed = nn.Linear(2 * config.patch_samples * config.channels, d_model)

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        c = self.config
        return series_tokens(self.embed, c.channels, c.patch_samples, stream, "acme.whisker")
