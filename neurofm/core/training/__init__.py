"""Training: batches of windows with one task per sample, AdamW, validation."""

from neurofm.core.training.trainer import Trainer, TrainResult, resolve_device

__all__ = ["TrainResult", "Trainer", "resolve_device"]
