"""Running encoder: treadmill / wheel running speed."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neurofm.core.config import PluginConfig
from neurofm.plugins.modalities.series import SeriesEncoder

__all__ = ["RunningConfig", "RunningEncoder"]


class RunningConfig(PluginConfig):
    """Running stream ``[T, channels]`` (default: speed); ``patch_samples`` per token."""

    type: Literal["running"] = "running"
    channels: int = Field(1, ge=1)
    patch_samples: int = Field(4, ge=1)


class RunningEncoder(SeriesEncoder):
    """Temporal patches of running speed -> tokens; missing samples are flagged, not zeroed.

    Shape: stream.values ``[T, C]`` -> tokens ``[ceil(T / patch_samples), d_model]``.
    """

    Config = RunningConfig
    role = "behaviour"
    normalization = "zscore"
