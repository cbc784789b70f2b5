"""An encoder whose normalization the data pipeline does not know (``minmax``)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from neurofm import ModalityEncoder, PluginConfig, StreamTensor, Tokens


class BadNormalizationConfig(PluginConfig):
    type: Literal["broken.badnormalization"] = "broken.badnormalization"


class BadNormalizationEncoder(ModalityEncoder):
    Config = BadNormalizationConfig
    role = "behaviour"
    normalization = "minmax"

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        raise NotImplementedError
