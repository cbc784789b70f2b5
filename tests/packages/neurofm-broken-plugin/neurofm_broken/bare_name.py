"""A valid encoder registered under a bare (not namespaced) name."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from neurofm import ModalityEncoder, PluginConfig, StreamTensor, Tokens


class LfpConfig(PluginConfig):
    type: Literal["lfp"] = "lfp"


class LfpEncoder(ModalityEncoder):
    Config = LfpConfig
    role = "neural"
    per_unit = True

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        raise NotImplementedError
