"""Gaze encoder: eye position (x, y) from eye tracking."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neurofm.core.config import PluginConfig
from neurofm.plugins.modalities.series import SeriesEncoder

__all__ = ["GazeConfig", "GazeEncoder"]


class GazeConfig(PluginConfig):
    """Gaze stream ``[T, channels]`` (default: x, y in degrees); ``patch_samples`` per token."""

    type: Literal["gaze"] = "gaze"
    channels: int = Field(2, ge=1)
    patch_samples: int = Field(4, ge=1)


class GazeEncoder(SeriesEncoder):
    """Temporal patches of eye position -> tokens; blinks / lost tracking (NaN) are flagged, not zeroed.

    Shape: stream.values ``[T, C]`` -> tokens ``[ceil(T / patch_samples) - dropped, d_model]``.
    """

    Config = GazeConfig
    role = "behaviour"
    normalization = "zscore"
