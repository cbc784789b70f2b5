"""Running encoder: treadmill / wheel running speed."""

from __future__ import annotations

from neurofm.plugins.modalities.behaviour import behaviour_encoder

__all__ = ["RunningConfig", "RunningEncoder"]

RunningEncoder = behaviour_encoder(
    "running",
    channels=1,
    doc="Temporal patches of running speed -> tokens; missing samples are flagged, not zeroed.",
    config_doc="Running stream ``[T, channels]`` (default: speed); ``patch_samples`` per token.",
)
RunningConfig = RunningEncoder.Config
