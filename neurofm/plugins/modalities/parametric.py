"""Parametric stimulus encoder: stimuli described by their parameters over time (gratings, dots).

Each parameter is declared in the config with its kind:

- ``periodic`` with its ``period`` (orientation 180 degrees, direction and phase 360 degrees) is
  embedded as the pair ``(cos 2 pi x / period, sin 2 pi x / period)``, so 179 degrees sits next to
  1 degree;
- ``linear`` is embedded as ``(x - offset) / scale``.

A NaN parameter (e.g. orientation while the screen is gray) is flagged invalid, never zero-filled.

Example (moving dots)::

    {"type": "parametric", "parameters": [
        {"name": "direction", "kind": "periodic", "period": 360},
        {"name": "speed_deg_s", "kind": "linear", "scale": 20},
        {"name": "coherence", "kind": "linear"}]}
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from neurofm.core.config import PluginConfig, StrictModel
from neurofm.core.interfaces import ModalityEncoder, StreamTensor, Tokens
from neurofm.core.tokens.tokenization import series_tokens

__all__ = ["GRATING_PARAMETERS", "ParameterSpec", "ParametricConfig", "ParametricEncoder"]


class ParameterSpec(StrictModel):
    """One stimulus parameter (one channel of the stream, in order)."""

    name: str
    kind: Literal["periodic", "linear"] = "linear"
    period: float | None = Field(None, gt=0, description="periodic parameters only")
    offset: float = 0.0
    scale: float = Field(1.0, gt=0, description="linear parameters only")

    @model_validator(mode="after")
    def _period(self) -> ParameterSpec:
        if (self.kind == "periodic") != (self.period is not None):
            raise ValueError(
                f"parameter {self.name!r}: a periodic parameter needs `period` (e.g. 180 for an "
                f"orientation in degrees) and a linear one must not have it; found kind="
                f"{self.kind!r}, period={self.period!r}"
            )
        return self

    @property
    def width(self) -> int:
        """Features of this parameter per sample (2 for periodic, 1 for linear)."""
        return 2 if self.kind == "periodic" else 1


GRATING_PARAMETERS: tuple[ParameterSpec, ...] = (
    ParameterSpec(name="orientation", kind="periodic", period=180.0),
    ParameterSpec(name="direction", kind="periodic", period=360.0),
    ParameterSpec(name="spatial_frequency_cpd", kind="linear", scale=0.05),
    ParameterSpec(name="temporal_frequency_hz", kind="linear", scale=2.0),
    ParameterSpec(name="contrast", kind="linear"),
    ParameterSpec(name="phase", kind="periodic", period=360.0),
)


class ParametricConfig(PluginConfig):
    """Stream ``[T, len(parameters)]``; ``patch_samples`` consecutive samples per token.

    The default parameters describe drifting gratings (degrees, cycles/degree, Hz, contrast 0-1).
    """

    type: Literal["parametric"] = "parametric"
    parameters: list[ParameterSpec] = Field(
        default_factory=lambda: [p.model_copy() for p in GRATING_PARAMETERS], min_length=1
    )
    patch_samples: int = Field(4, ge=1)

    @property
    def channels(self) -> int:
        """Channels of the stream: one per parameter."""
        return len(self.parameters)


class ParametricEncoder(ModalityEncoder):
    """Temporal patches of embedded stimulus parameters -> tokens.

    Shape: stream.values ``[T, P]`` (raw parameter values) -> features ``[T, F]`` (``F`` = 2 per
    periodic + 1 per linear parameter) -> tokens ``[ceil(T / patch_samples) - dropped, d_model]``.
    """

    Config = ParametricConfig
    role = "stimulus"
    normalization = "none"  # periodic values must stay in their units; linear ones scale themselves

    def __init__(self, config: ParametricConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        self.n_features = sum(p.width for p in config.parameters)
        self.embed = nn.Linear(2 * config.patch_samples * self.n_features, d_model)
        period = [p.period or 1.0 for p in config.parameters]
        self.register_buffer("_period", torch.tensor(period), persistent=False)
        self.register_buffer(
            "_offset", torch.tensor([p.offset for p in config.parameters]), persistent=False
        )
        self.register_buffer(
            "_scale", torch.tensor([p.scale for p in config.parameters]), persistent=False
        )

    def features(self, values: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """Embedded parameters and their validity. Shape: ``[T, P]`` -> ``[T, F]`` each."""
        angle = 2 * math.pi * values / self._period
        linear = (values - self._offset) / self._scale
        parts, flags = [], []
        for i, spec in enumerate(self.config.parameters):
            if spec.kind == "periodic":
                parts += [torch.cos(angle[:, i]), torch.sin(angle[:, i])]
                flags += [valid[:, i], valid[:, i]]
            else:
                parts.append(linear[:, i])
                flags.append(valid[:, i])
        feats = torch.stack(parts, dim=1) if parts else values[:, :0]
        flag = torch.stack(flags, dim=1)
        return torch.where(flag, feats, torch.zeros_like(feats)), flag

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        c = self.config
        values, valid = stream.values, stream.valid
        if values.ndim != 2 or values.shape[1] != c.channels:
            names = [p.name for p in c.parameters]
            raise ValueError(
                f"parametric encoder expects data [T, {c.channels}] (parameters {names}), found "
                f"{tuple(values.shape)}; declare one parameter per channel in its config"
            )
        valid = valid if valid.ndim == 2 else valid[:, None].expand_as(values)
        feats, flags = self.features(values, valid)
        embedded = StreamTensor(feats, flags, stream.times, stream.period_s)
        return series_tokens(self.embed, self.n_features, c.patch_samples, embedded, "parametric")
