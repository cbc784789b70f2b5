"""Spatial Gaussian-position readout (in the style of the SENSORIUM baselines).

How it meets stimulus features through the unchanged ``Readout.project(h)`` interface: each
backbone output ``h [d_model]`` (one per target time sample) is decoded by a learned linear map
into a coarse feature map ``[channels, grid_h, grid_w]`` over the stimulus (screen) coordinates —
the backbone's stimulus tokens carry their screen position, so the map is a spatially resolved
view of the stimulus features at that time. Each neuron has a learned 2-D position ``mu`` in
``[-1, 1]^2`` on that map (and a learned ``sigma``): in training the map is read at
``mu + sigma * eps`` (``eps ~ N(0, 1)``, the SENSORIUM Gaussian readout; only while gradients
are recorded, so outputs under ``torch.no_grad`` are deterministic), at evaluation at ``mu``,
with bilinear interpolation; a per-neuron feature vector then weighs the channels.

The input-side identity of a neuron is a function of the same parameters (Fourier features of its
position and its feature weights, through a linear map), so one object serves both sides.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.interfaces import Readout, SessionUnits

__all__ = ["GaussianConfig", "GaussianReadout"]


class GaussianConfig(PluginConfig):
    """``grid_h x grid_w`` map of ``channels`` features; ``init_sigma`` (map units, 2 = whole
    map); ``learn_sigma``: learn sigma per neuron (else fixed); ``position_frequencies``: Fourier
    features of the position used for the input-side identity."""

    type: Literal["gaussian"] = "gaussian"
    channels: int = Field(16, ge=1)
    grid_h: int = Field(6, ge=1)
    grid_w: int = Field(8, ge=1)
    init_sigma: float = Field(0.2, gt=0)
    learn_sigma: bool = True
    position_frequencies: int = Field(4, ge=1)


class GaussianReadout(Readout):
    """Per neuron ``n``: position ``mu_n [2]``, log-sigma ``[2]`` (if learned), feature weights
    ``w_n [channels, p]``, bias ``b_n [p]``.

    Shape: ``project(h [Q, d], session, units [K]) -> [Q, K, params_per_unit]``;
    ``unit_embeddings(session, units [K]) -> [K, d]``.
    """

    Config = GaussianConfig

    def build_shared(self) -> None:
        c, d = self.config, self.d_model
        self.to_map = nn.Linear(d, c.channels * c.grid_h * c.grid_w)
        self.identity = nn.Linear(4 * c.position_frequencies + c.channels * self.params_per_unit, d)
        self.mu = nn.ParameterDict()
        self.log_sigma = nn.ParameterDict()
        self.features = nn.ParameterDict()
        self.bias = nn.ParameterDict()

    def add_session(self, key: str, units: SessionUnits) -> None:
        c, n, p = self.config, units.count, self.params_per_unit
        device = self.to_map.weight.device
        # distinct but reproducible initial positions per session (SENSORIUM: uniform init)
        gen = torch.Generator().manual_seed(len(self.mu) + 1)
        self.mu[key] = nn.Parameter((torch.rand(n, 2, generator=gen) * 1.6 - 0.8).to(device))
        self.log_sigma[key] = nn.Parameter(
            torch.full((n, 2), math.log(c.init_sigma), device=device), requires_grad=c.learn_sigma
        )
        weights = torch.randn(n, c.channels, p, generator=gen)
        self.features[key] = nn.Parameter((weights / c.channels**0.5).to(device))
        self.bias[key] = nn.Parameter(torch.zeros(n, p, device=device))

    def positions(self, session_id: str, units: Tensor) -> Tensor:
        """Read-out positions ``[K, 2]`` (x, y in ``[-1, 1]``; jittered by sigma when training)."""
        key = self.checked_key(session_id)
        mu = self.mu[key][units].clamp(-1.0, 1.0)
        if self.training and torch.is_grad_enabled():
            mu = mu + torch.randn_like(mu) * self.log_sigma[key][units].exp()
        return mu

    def unit_embeddings(self, session_id: str, units: Tensor) -> Tensor:
        key = self.checked_key(session_id)
        freqs = 2.0 ** torch.arange(self.config.position_frequencies, device=units.device)
        angles = self.mu[key][units].clamp(-1.0, 1.0)[..., None] * freqs * math.pi  # [K, 2, F]
        fourier = torch.cat([angles.sin(), angles.cos()], -1).flatten(1)
        return self.identity(torch.cat([fourier, self.features[key][units].flatten(1)], -1))

    def project(self, h: Tensor, session_id: str, units: Tensor) -> Tensor:
        c = self.config
        key = self.checked_key(session_id)
        q, k = h.shape[0], units.shape[0]
        if q == 0 or k == 0:
            return h.new_zeros(q, k, self.params_per_unit) + self.bias[key][units].sum() * 0
        fmap = self.to_map(h).view(q, c.channels, c.grid_h, c.grid_w)
        grid = self.positions(session_id, units).view(1, 1, k, 2).expand(q, 1, k, 2)
        sampled = nn.functional.grid_sample(fmap, grid, align_corners=True)  # [Q, C, 1, K]
        sampled = sampled[:, :, 0, :].transpose(1, 2)  # [Q, K, C]
        out = torch.einsum("qkc,kcp->qkp", sampled, self.features[key][units])
        return out + self.bias[key][units]
