"""Training: resumable loader, (distributed) training loop, training state, fine-tuning."""

from neurofm.core.training.finetune import FinetuneResult, finetune
from neurofm.core.training.trainer import Trainer, TrainResult, resolve_device

__all__ = ["FinetuneResult", "TrainResult", "Trainer", "finetune", "resolve_device"]
