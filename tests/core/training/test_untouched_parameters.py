"""A single process trains without putting every parameter in the graph (``TrainStep``'s
touch, one operation per parameter, which DDP needs): it keeps the gradients of the parameters
outside the backbone allocated and zeroes them instead. The run is bitwise the one with the
touch, sessions missing from a batch included (their parameters get a gradient of 0 either way,
so AdamW's weight decay and moments treat them alike)."""

from __future__ import annotations

from pathlib import Path

import torch

from neurofm.core.data import open_dataset
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig


def _train(sessions, touch: bool) -> tuple[list[float], dict[str, torch.Tensor], Trainer]:
    torch.manual_seed(0)
    model = build_model(default_model_config("tiny", frame_size=(18, 32)), sessions)
    config = TrainingConfig(steps=6, batch_size=1, warmup_steps=1, eval_every=10_000)
    trainer = Trainer(model, sessions, config, window_s=1.0, progress=False)
    assert not trainer.module.touch_parameters  # one process: no touch by default
    if touch:  # as under DDP: every parameter in the graph, gradients freed between steps
        trainer.module.touch_parameters = True
        trainer._zero_gradients = lambda: trainer.optimizer.zero_grad(set_to_none=True)
    losses = [trainer.train_step() for _ in range(6)]
    return losses, {k: v.clone() for k, v in model.state_dict().items()}, trainer


def test_training_without_the_touch_is_bitwise_the_same(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    assert len(sessions) >= 2  # batches of one window leave a session out of each step
    touched, touched_state, _ = _train(sessions, touch=True)
    kept, kept_state, trainer = _train(sessions, touch=False)
    assert kept == touched
    for name, value in touched_state.items():
        assert torch.equal(kept_state[name], value), name
    # every trainable parameter outside the backbone holds a gradient (0 where unused)
    for name, p in trainer.model.named_parameters():
        if p.requires_grad and not name.startswith("backbone."):
            assert p.grad is not None, name
