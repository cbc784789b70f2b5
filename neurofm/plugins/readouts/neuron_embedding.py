"""Per-session learned neuron embeddings: one vector per neuron, used on input and output sides."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.interfaces import Readout, SessionUnits

__all__ = ["NeuronEmbeddingConfig", "NeuronEmbeddingReadout"]


class NeuronEmbeddingConfig(PluginConfig):
    """``init_std``: scale of the random initial embeddings."""

    type: Literal["neuron_embedding"] = "neuron_embedding"
    init_std: float = Field(0.02, gt=0)


class NeuronEmbeddingReadout(Readout):
    """Each neuron ``n`` of each session has a learned vector ``e_n``. Its input identity is ``e_n``;
    its prediction from a backbone output ``h`` is ``<W_j h, e_n> + b_nj`` for each output parameter j.

    Shape: ``project(h [Q, d], session, units [K]) -> [Q, K, params_per_unit]``.
    """

    Config = NeuronEmbeddingConfig

    def build_shared(self) -> None:
        self.embeddings = nn.ParameterDict()  # per session: [N, d]
        self.biases = nn.ParameterDict()  # per session: [N, p]
        self.query = nn.Linear(self.d_model, self.d_model * self.params_per_unit)

    def add_session(self, key: str, units: SessionUnits) -> None:
        n, d = units.count, self.d_model
        self.embeddings[key] = nn.Parameter(torch.randn(n, d) * self.config.init_std)
        self.biases[key] = nn.Parameter(torch.zeros(n, self.params_per_unit))

    def unit_embeddings(self, session_id: str, units: Tensor) -> Tensor:
        return self.embeddings[self.checked_key(session_id)][units]

    def project(self, h: Tensor, session_id: str, units: Tensor) -> Tensor:
        key = self.checked_key(session_id)
        weights = self.embeddings[key][units]  # [K, d]
        q = self.query(h).unflatten(-1, (self.params_per_unit, self.d_model))  # [Q, p, d]
        return torch.einsum("qpd,kd->qkp", q, weights) / self.d_model**0.5 + self.biases[key][units]
