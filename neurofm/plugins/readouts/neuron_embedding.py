"""Per-session learned neuron embeddings: one vector per neuron, used on input and output sides."""

from __future__ import annotations

from collections.abc import Mapping
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

    def __init__(
        self,
        config: NeuronEmbeddingConfig,
        *,
        d_model: int,
        sessions: Mapping[str, SessionUnits],
        params_per_unit: int = 1,
    ) -> None:
        super().__init__(
            config, d_model=d_model, sessions=sessions, params_per_unit=params_per_unit
        )
        self.embeddings = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        self.query = nn.Linear(d_model, d_model * params_per_unit)
        self.add_sessions(sessions)

    def add_sessions(self, sessions: Mapping[str, SessionUnits]) -> None:
        for sid, units in sessions.items():
            if self.parameter_key(sid) in self.embeddings:
                continue
            self.embeddings[self.parameter_key(sid)] = nn.Parameter(
                torch.randn(units.count, self.d_model) * self.config.init_std
            )
            self.biases[self.parameter_key(sid)] = nn.Parameter(
                torch.zeros(units.count, self.params_per_unit)
            )

    def known_sessions(self) -> list[str]:
        return [self.session_of_key(k) for k in self.embeddings]

    def unit_embeddings(self, session_id: str, units: Tensor) -> Tensor:
        return self.embeddings[self.checked_key(session_id)][units]

    def project(self, h: Tensor, session_id: str, units: Tensor) -> Tensor:
        key = self.checked_key(session_id)
        weights = self.embeddings[key][units]  # [K, d]
        q = self.query(h).unflatten(-1, (self.params_per_unit, self.d_model))  # [Q, p, d]
        return torch.einsum("qpd,kd->qkp", q, weights) / self.d_model**0.5 + self.biases[key][units]
