"""``training.compile``: the backbone's blocks compile once; batches of other token counts reuse
the compiled code instead of recompiling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neurofm.core.data import open_dataset
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig


@pytest.mark.slow  # a few seconds of compilation
def test_compiled_training_does_not_recompile_per_batch(tiny_data: Path) -> None:
    from torch._dynamo.utils import counters

    sessions = open_dataset(tiny_data)
    torch.manual_seed(0)
    model = build_model(default_model_config("tiny", frame_size=(18, 32)), sessions)
    training = TrainingConfig(steps=6, batch_size=4, warmup_steps=1, device="cpu", compile=True)
    trainer = Trainer(model, sessions, training, window_s=1.0, progress=False)
    tokens: list[int] = []
    model.backbone.register_forward_hook(lambda m, inp, out: tokens.append(inp[0].x.shape[0]))
    try:
        trainer.train_step()
    except Exception as err:  # inductor needs a working C++ toolchain
        pytest.skip(f"torch.compile does not run on this machine: {type(err).__name__}: {err}")
    graphs = counters["stats"]["unique_graphs"]
    for _ in range(4):
        trainer.train_step()
    assert len(set(tokens)) > 1  # the batches did differ in their token counts
    assert counters["stats"]["unique_graphs"] == graphs
