"""Pupil encoder: pupil size and its time derivative."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neurofm.core.config import PluginConfig
from neurofm.plugins.modalities.series import SeriesEncoder

__all__ = ["PupilConfig", "PupilEncoder"]


class PupilConfig(PluginConfig):
    """Pupil stream ``[T, channels]`` (default: size, d/dt size); ``patch_samples`` per token."""

    type: Literal["pupil"] = "pupil"
    channels: int = Field(2, ge=1)
    patch_samples: int = Field(4, ge=1)


class PupilEncoder(SeriesEncoder):
    """Temporal patches of pupil samples -> tokens; missing samples (blinks, NaN) are flagged, not zeroed.

    Shape: stream.values ``[T, C]`` -> tokens ``[ceil(T / patch_samples), d_model]``.
    """

    Config = PupilConfig
    role = "behaviour"
    normalization = "zscore"
