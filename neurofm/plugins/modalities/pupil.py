"""Pupil encoder: pupil size and its time derivative."""

from __future__ import annotations

from neurofm.plugins.modalities.behaviour import behaviour_encoder

__all__ = ["PupilConfig", "PupilEncoder"]

PupilEncoder = behaviour_encoder(
    "pupil",
    channels=2,
    doc="Temporal patches of pupil samples -> tokens; missing samples (blinks, NaN) are flagged, "
    "not zeroed.",
    config_doc="Pupil stream ``[T, channels]`` (default: size, d/dt size); ``patch_samples`` per "
    "token.",
)
PupilConfig = PupilEncoder.Config
