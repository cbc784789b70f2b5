"""An encoder whose config tag differs from the name its entry point registers."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from neurofm import ModalityEncoder, PluginConfig, StreamTensor, Tokens


class BadTagConfig(PluginConfig):
    type: Literal["broken.othertag"] = "broken.othertag"


class BadTagEncoder(ModalityEncoder):
    Config = BadTagConfig
    role = "behaviour"

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        raise NotImplementedError
