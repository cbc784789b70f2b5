"""An encoder whose role no task selects (``visual`` instead of ``stimulus``)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from neurofm import ModalityEncoder, PluginConfig, StreamTensor, Tokens


class BadRoleConfig(PluginConfig):
    type: Literal["broken.badrole"] = "broken.badrole"


class BadRoleEncoder(ModalityEncoder):
    Config = BadRoleConfig
    role = "visual"

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        raise NotImplementedError
