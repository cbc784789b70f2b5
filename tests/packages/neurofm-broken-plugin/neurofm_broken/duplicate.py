"""A valid encoder that claims the built-in name ``movie``."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from neurofm import ModalityEncoder, PluginConfig, StreamTensor, Tokens


class ImpostorMovieConfig(PluginConfig):
    type: Literal["movie"] = "movie"


class ImpostorMovieEncoder(ModalityEncoder):
    Config = ImpostorMovieConfig
    role = "stimulus"

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        raise NotImplementedError
