"""An encoder whose ``per_unit`` is the int 1, not a bool (equal to True, but not one)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from neurofm import ModalityEncoder, PluginConfig, StreamTensor, Tokens


class BadPerUnitConfig(PluginConfig):
    type: Literal["broken.badperunit"] = "broken.badperunit"


class BadPerUnitEncoder(ModalityEncoder):
    Config = BadPerUnitConfig
    role = "neural"
    per_unit = 1

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        raise NotImplementedError
