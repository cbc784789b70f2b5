"""Regression head: behaviour decoding (squared error, or Gaussian likelihood with learned variance)."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from neurofm.core.config import PluginConfig
from neurofm.core.interfaces import Head

__all__ = ["RegressionConfig", "RegressionHead"]


class RegressionConfig(PluginConfig):
    """``likelihood="mse"``: squared error; ``"gaussian"``: NLL with a predicted per-entry variance."""

    type: Literal["regression"] = "regression"
    likelihood: Literal["mse", "gaussian"] = "mse"


class RegressionHead(Head):
    """Predicts normalised (z-scored) values of a channel stream.

    Shape: raw ``[Q, C, p]`` (p = 1 for mse, 2 for gaussian: mean, log-variance), target ``[Q, C]``.
    """

    Config = RegressionConfig

    def __init__(self, config: RegressionConfig, *, d_model: int, channels: int | None) -> None:
        self.params_per_channel = 2 if config.likelihood == "gaussian" else 1
        super().__init__(config, d_model=d_model, channels=channels)

    def anchor(self, raw: Tensor, last: Tensor, known: Tensor) -> Tensor:
        """The predicted mean starts from the last visible value where it is known."""
        offset = torch.where(known, last, 0.0)
        return torch.cat([raw[..., :1] + offset[:, None], raw[..., 1:]], dim=-1)

    def predict(self, raw: Tensor) -> Tensor:
        return raw[..., 0]

    def loss_terms(self, raw: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        error = (raw[..., 0] - target) ** 2
        if self.params_per_channel == 2:
            log_var = raw[..., 1].clamp(-10.0, 10.0)
            error = 0.5 * (error * (-log_var).exp() + log_var + math.log(2 * math.pi))
        return error * valid

    def loss(self, raw: Tensor, target: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        return self.loss_terms(raw, target, valid).sum(), valid.sum()

    def predict_variance(self, raw: Tensor) -> Tensor:
        """Predicted variance ``[Q, C]`` (gaussian likelihood; 1 for mse)."""
        if self.params_per_channel == 2:
            return raw[..., 1].clamp(-10.0, 10.0).exp()
        return raw[..., 0].new_ones(raw.shape[:-1])
