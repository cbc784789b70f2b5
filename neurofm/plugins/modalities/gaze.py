"""Gaze encoder: eye position (x, y) from eye tracking."""

from __future__ import annotations

from neurofm.plugins.modalities.behaviour import behaviour_encoder

__all__ = ["GazeConfig", "GazeEncoder"]

GazeEncoder = behaviour_encoder(
    "gaze",
    channels=2,
    doc="Temporal patches of eye position -> tokens; blinks / lost tracking (NaN) are flagged, "
    "not zeroed.",
    config_doc="Gaze stream ``[T, channels]`` (default: x, y in degrees); ``patch_samples`` per "
    "token.",
)
GazeConfig = GazeEncoder.Config
