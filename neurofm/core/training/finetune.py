"""Fine-tuning a trained model to new sessions/animals: new neurons in, the rest frozen.

``finetune`` adds the new sessions' neurons to the readout (``Readout.add_sessions``), freezes
every existing parameter (backbone, encoders, heads, the old sessions' readout entries) and trains
only the parameters that adding the sessions created. Optionally the whole model is unfrozen after
``unfreeze_after`` steps. Which parameters are new is found by name (before/after), never by
``isinstance``, so any readout plugin works.

Example:
    >>> model, config = load_pretrained("ckpt")                              # doctest: +SKIP
    >>> result = finetune(model, TrainingConfig(steps=200), new_sessions,
    ...                   window_s=2.0, unfreeze_after=150)                 # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from neurofm.core.data.session import Session
from neurofm.core.model.builder import session_units, stream_statistics
from neurofm.core.model.neurofm import NeuroFM
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.trainer import Trainer, TrainResult
from neurofm.errors import NeurofmError

__all__ = ["FinetuneResult", "add_sessions", "finetune", "freeze_all_but"]


@dataclass
class FinetuneResult:
    """The training result, the names of the parameters added for the new sessions, the trainer."""

    train: TrainResult
    new_parameters: list[str]
    trainer: Trainer


def add_sessions(model: NeuroFM, sessions: Sequence[Session]) -> list[str]:
    """Give ``model`` the neurons of ``sessions``; returns the names of the parameters added.

    Sessions the model already knows are left as they are. The sessions' normalisation statistics
    are recorded for the checkpoint.
    """
    if model.readout is None:
        raise NeurofmError("the model has no readout (no neural stream); nothing to add")
    before = {name for name, _ in model.named_parameters()}
    model.add_sessions(session_units(sessions), stream_statistics(sessions))
    model.to(model.device)  # new tables are created on the CPU
    return sorted(name for name, _ in model.named_parameters() if name not in before)


def freeze_all_but(model: NeuroFM, names: Sequence[str]) -> None:
    """Only the parameters named in ``names`` receive gradients."""
    keep = set(names)
    for name, p in model.named_parameters():
        p.requires_grad_(name in keep)


def finetune(
    model: NeuroFM,
    config: TrainingConfig,
    new_sessions: Sequence[Session],
    *,
    window_s: float,
    unfreeze_after: int | None = None,
    progress: bool = False,
    state_dir: str | Path | None = None,
    resume: bool = False,
    resume_from: str | Path | None = None,
) -> FinetuneResult:
    """Fine-tune ``model`` to ``new_sessions`` for ``config.steps`` steps (single process).

    Args:
        model: a trained model (e.g. from :func:`~neurofm.core.model.checkpoint.load_pretrained`).
        config: optimisation settings of the fine-tuning run.
        new_sessions: sessions (usually of new animals) to train on.
        window_s: window duration (seconds).
        unfreeze_after: from this step on, every parameter is trained (None: never).
        progress: show a progress bar.
        state_dir, resume: save training state there / continue from it (from the state folder
            ``resume_from`` instead of the newest, when given).
    """
    new = add_sessions(model, new_sessions)
    if not new and unfreeze_after is None:
        raise NeurofmError(
            "the model already knows every session given, so there is nothing new to train; "
            "pass unfreeze_after=0 to fine-tune the whole model on them"
        )
    freeze_all_but(model, new)
    trainer = Trainer(
        model, new_sessions, config, window_s=window_s, progress=progress, state_dir=state_dir
    )
    if trainer.dist.distributed:
        raise NeurofmError("fine-tuning runs in one process; launch it without torchrun")
    if unfreeze_after is not None:

        def unfreeze(t: Trainer) -> None:
            freeze_all_but(
                model, new if t.step < unfreeze_after else [n for n, _ in model.named_parameters()]
            )

        trainer.before_step.append(unfreeze)
    if resume:
        trainer.resume(resume_from)
    return FinetuneResult(trainer.fit(), new, trainer)
