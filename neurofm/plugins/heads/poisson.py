"""Poisson head: neural response prediction with a Poisson likelihood and a positive output."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.interfaces import Head

__all__ = ["PoissonConfig", "PoissonHead"]


class PoissonConfig(PluginConfig):
    """``eps`` keeps the predicted rate strictly positive."""

    type: Literal["poisson"] = "poisson"
    eps: float = Field(1e-4, gt=0)


class PoissonHead(Head):
    """Rate = softplus(raw) + eps; loss = rate - y log(rate) (Poisson negative log-likelihood
    without the constant log y! term), averaged over valid entries. Targets must be >= 0.

    Forecasting has no head of its own: a forecast is a prediction of the same stream at future
    times, so it has the same likelihood; the task (which times are targets) makes it a forecast.

    Shape: raw ``[Q, C, 1]``, target/valid ``[Q, C]``.
    """

    Config = PoissonConfig
    params_per_channel = 1

    def predict(self, raw: Tensor) -> Tensor:
        return nn.functional.softplus(raw[..., 0]) + self.config.eps

    def anchor(self, raw: Tensor, last: Tensor, known: Tensor) -> Tensor:
        """Start from the last visible rate: ``raw + softplus^-1(last)`` where it is known."""
        level = last.clamp(min=1e-3)
        offset = torch.where(known, level + torch.log(-torch.expm1(-level)), 0.0)
        return raw + offset[:, None]

    def loss_terms(self, raw: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        rate = self.predict(raw)
        return (rate - target * rate.log()) * valid

    def loss(self, raw: Tensor, target: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        return self.loss_terms(raw, target, valid).sum(), valid.sum()
