"""The shared backbone: packed sequences, attention backends, rotary time, Perceiver-IO, presets."""

from neurofm.core.backbone.attention import (
    BACKEND_NAMES,
    AttentionBackend,
    BackendUnavailableError,
    get_backend,
    time_local_mask,
)
from neurofm.core.backbone.packing import PackedSequence
from neurofm.core.backbone.perceiver import PerceiverIO
from neurofm.core.backbone.presets import PRESETS, BackboneConfig, get_preset, tiny
from neurofm.core.backbone.rotary import RotaryTimeEmbedding

__all__ = [
    "BACKEND_NAMES",
    "PRESETS",
    "AttentionBackend",
    "BackboneConfig",
    "BackendUnavailableError",
    "PackedSequence",
    "PerceiverIO",
    "RotaryTimeEmbedding",
    "get_backend",
    "get_preset",
    "time_local_mask",
    "tiny",
]
