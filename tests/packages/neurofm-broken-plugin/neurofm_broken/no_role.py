"""An encoder that sets no ``role`` (no task would ever select its stream)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from neurofm import ModalityEncoder, PluginConfig, StreamTensor, Tokens


class NoRoleConfig(PluginConfig):
    type: Literal["broken.norole"] = "broken.norole"


class NoRoleEncoder(ModalityEncoder):
    Config = NoRoleConfig

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        raise NotImplementedError
