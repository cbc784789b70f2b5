"""A batch in which no sample has a target still puts every backbone parameter in the graph, so
distributed gradient reductions (DDP, FSDP) see the same parameters on every rank."""

from __future__ import annotations

import numpy as np
import torch

from neurofm.core.data import open_dataset
from neurofm.core.data.windows import load_window
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config
from neurofm.core.tokens.tasks import StreamRule, TaskSpec


def test_batch_without_targets_gives_zero_loss_and_gradients_to_the_backbone(tiny_data) -> None:
    sessions = open_dataset(tiny_data)
    model = build_model(default_model_config("tiny", frame_size=(18, 32)), sessions)
    iv = sessions[0].intervals("train")[0]
    window = load_window(sessions[0], iv.start, 1.0, model.normalization())
    inputs_only = TaskSpec(name="inputs_only", rules={"*": StreamRule(visible=(0.0, 1.0))})
    out = model([window, window], [inputs_only, inputs_only], np.random.default_rng(0))
    assert out.targets == [] and float(out.loss.detach()) == 0.0
    out.loss.backward()
    missing = [n for n, p in model.backbone.named_parameters() if p.grad is None]
    assert missing == []
    assert all(torch.count_nonzero(p.grad) == 0 for p in model.backbone.parameters())
