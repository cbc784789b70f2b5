"""Neuron identities computed from neuron metadata, so neurons never seen in training get predictions.

A neuron's embedding is an MLP of its cortical position (x, y, depth in µm, expanded in Fourier
features) and its brain area (a hashed embedding, so an area name never seen before still maps to
a learned vector without a vocabulary). Sessions added later need only their metadata; an optional
learned per-neuron residual starts at zero, so a new neuron's embedding is the metadata one until
fine-tuning moves it.
"""

from __future__ import annotations

import math
import zlib
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.interfaces import Readout, SessionUnits

__all__ = ["MetadataConfig", "MetadataReadout", "area_bucket"]


def area_bucket(area: str, n_buckets: int) -> int:
    """Stable bucket of an area name (crc32; the same in every process, unlike ``hash``)."""
    return zlib.crc32(area.strip().lower().encode("utf-8")) % n_buckets


class MetadataConfig(PluginConfig):
    """How metadata become embeddings.

    ``position_scale_um``: positions are divided by it before the Fourier features (whose
    frequencies run from 1 to ``max_frequency`` cycles per scale, ``n_frequencies`` of them, log
    spaced). ``area_buckets``/``area_dim``: hashed area embedding. ``hidden``: MLP width.
    ``residual``: add a learned per-neuron vector (zero at creation) to the metadata embedding.
    """

    type: Literal["metadata"] = "metadata"
    position_scale_um: float = Field(1000.0, gt=0)
    n_frequencies: int = Field(8, ge=1)
    max_frequency: float = Field(32.0, gt=0)
    area_buckets: int = Field(64, ge=1)
    area_dim: int = Field(16, ge=1)
    hidden: int = Field(128, ge=1)
    residual: bool = False


class MetadataReadout(Readout):
    """Embedding ``e_n = MLP([fourier(position_n / scale), area_emb(area_n)]) (+ r_n)``; bias
    ``b_n`` is a linear map of the same MLP's hidden layer. Prediction from a backbone output ``h``:
    ``<W_j h, e_n> / sqrt(d) + b_nj`` for each output parameter ``j`` (as the learned-embedding
    readout, but every per-neuron quantity is a function of metadata).

    Sessions without positions use position 0; without areas, the empty area name.

    Shape: ``unit_embeddings(session, units [K]) -> [K, d]``;
    ``project(h [Q, d], session, units [K]) -> [Q, K, params_per_unit]``.
    """

    Config = MetadataConfig

    def build_shared(self) -> None:
        c, d_model, params_per_unit = self.config, self.d_model, self.params_per_unit
        freqs = torch.logspace(0.0, math.log10(c.max_frequency), c.n_frequencies)
        self.register_buffer("frequencies", freqs * 2 * math.pi, persistent=False)
        n_in = 3 + 6 * c.n_frequencies + c.area_dim
        self.area = nn.Embedding(c.area_buckets, c.area_dim)
        self.trunk = nn.Sequential(
            nn.Linear(n_in, c.hidden), nn.GELU(), nn.Linear(c.hidden, c.hidden), nn.GELU()
        )
        self.to_embedding = nn.Linear(c.hidden, d_model)
        self.to_bias = nn.Linear(c.hidden, params_per_unit)
        self.query = nn.Linear(d_model, d_model * params_per_unit)
        self.residuals = nn.ParameterDict()

    def add_session(self, key: str, units: SessionUnits) -> None:
        n, device = units.count, self.frequencies.device
        position = np.zeros((n, 3), np.float32)
        if units.position_um is not None:
            position = np.array(units.position_um, np.float32).reshape(n, 3)
        areas = [""] * n if units.area is None else [str(a) for a in units.area]
        buckets = [area_bucket(a, self.config.area_buckets) for a in areas]
        position_t = torch.from_numpy(position).to(device)
        self.register_buffer(f"position_{key}", position_t, persistent=False)
        buckets_t = torch.tensor(buckets, dtype=torch.long, device=device)
        self.register_buffer(f"area_{key}", buckets_t, persistent=False)
        if self.config.residual:
            self.residuals[key] = nn.Parameter(torch.zeros(n, self.d_model, device=device))

    def _features(self, session_id: str, units: Tensor) -> Tensor:
        """Hidden metadata features ``[K, hidden]`` of the given units."""
        key = self.checked_key(session_id)
        units = units.to(self.frequencies.device)
        pos = getattr(self, f"position_{key}")[units] / self.config.position_scale_um  # [K, 3]
        angles = pos[..., None] * self.frequencies  # [K, 3, F]
        fourier = torch.cat([angles.sin(), angles.cos()], -1).flatten(1)  # [K, 6F]
        area = self.area(getattr(self, f"area_{key}")[units])
        return self.trunk(torch.cat([pos, fourier, area], -1))

    def _embedding(self, session_id: str, units: Tensor, hidden: Tensor) -> Tensor:
        emb = self.to_embedding(hidden)
        if self.config.residual:
            emb = emb + self.residuals[self.parameter_key(session_id)][units]
        return emb

    def unit_embeddings(self, session_id: str, units: Tensor) -> Tensor:
        return self._embedding(session_id, units, self._features(session_id, units))

    def project(self, h: Tensor, session_id: str, units: Tensor) -> Tensor:
        hidden = self._features(session_id, units)
        weights = self._embedding(session_id, units, hidden)  # [K, d]
        q = self.query(h).unflatten(-1, (self.params_per_unit, self.d_model))  # [Q, p, d]
        raw = torch.einsum("qpd,kd->qkp", q, weights) / self.d_model**0.5
        return raw + self.to_bias(hidden)
