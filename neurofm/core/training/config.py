"""The config of an experiment: the model, where the data is, and how to train."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neurofm.core.config import StrictModel
from neurofm.core.model.config import ModelConfig

__all__ = ["DataConfig", "ExperimentConfig", "TrainingConfig"]


class DataConfig(StrictModel):
    """Where the sessions are and how windows are cut (``session_weights``: session id -> sampling
    weight; default: sessions weighted by their usable train time). ``validation_fraction``: when
    no session has a validation tier, the fraction of each session's train intervals held out as
    validation (whole intervals, repeats of a stimulus together; 0 trains without validation)."""

    path: str
    sessions: list[str] | None = None
    window_s: float = Field(2.0, gt=0)
    session_weights: dict[str, float] | None = None
    validation_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="share of train intervals held out as validation when the data has no "
        "validation tier (0: train without validation)",
    )


class TrainingConfig(StrictModel):
    """Optimisation settings (AdamW with linear warm-up and cosine decay).

    ``batch_size`` is per process; under ``torchrun`` the global batch is the sum over ranks.
    ``checkpoint_every``: steps between saves of the training state (resume). ``num_workers`` and
    ``prefetch``: loader threads and batches kept ready. ``fsdp``: shard the backbone with FSDP2
    (distributed runs). ``compile``: ``torch.compile`` the backbone's per-token compute
    (:meth:`PerceiverIO.compile_blocks`). ``bf16``: bf16 autocast (CUDA only).
    ``shard_sessions``: under torchrun, each session belongs to one rank, which alone draws its
    windows and keeps its per-session parameters and their optimizer state (sessions balanced by
    neuron count; docs/scale-out.md); no effect in a single process.
    """

    steps: int = Field(1000, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(50, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    seed: int = 0
    eval_every: int = Field(200, ge=1)
    tasks: dict[str, float] = Field(
        default_factory=lambda: {
            "responses_from_stimulus_behaviour": 8.0,
            "behaviour_from_responses": 1.0,
            "forecast": 1.0,
            "causal_50_stimulus_behaviour": 1.0,
            "population_random": 1.0,
        }
    )
    device: Literal["cpu", "cuda", "auto"] = "auto"
    checkpoint_every: int = Field(100, ge=1)
    num_workers: int = Field(2, ge=1)
    prefetch: int = Field(4, ge=1)
    fsdp: bool = False
    shard_sessions: bool = False
    compile: bool = False
    bf16: bool = True


class ExperimentConfig(StrictModel):
    """Everything ``neurofm train`` needs: model, data and training settings."""

    model: ModelConfig
    data: DataConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)
