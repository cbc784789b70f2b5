"""Plugin penalties: regularisation terms that training adds to the loss once per step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from training_helpers import stimulus_model

from neurofm.core.data import open_dataset
from neurofm.core.data.windows import WindowSampler, load_window
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config
from neurofm.core.tokens.conv_core import CoreConfig, FactorisedCore
from neurofm.core.tokens.tasks import get_task
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.distributed import TrainStep


def test_no_penalty_unless_a_plugin_asks_for_one(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    assert stimulus_model(sessions, readout={"feature_l1": 0.0}).penalty() is None
    before = default_model_config("tiny", frame_size=(18, 32), stimulus_path=False)
    assert build_model(before, sessions).penalty() is None
    # the retinotopic readout's default asks for the L1 of its neurons' feature weights
    model = stimulus_model(sessions)
    weights = [model.readout.shared_weights + w for w in model.readout.weights.values()]
    l1 = sum(float(w.abs().sum()) for w in weights) / sum(w.shape[0] for w in weights)
    assert abs(float(model.penalty()) - 0.005 * l1) <= 1e-6 * max(1.0, 0.005 * l1)


def test_training_adds_the_penalty_and_evaluation_does_not(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    model = stimulus_model(sessions, readout={"logit_penalty": 1.0, "feature_l1": 0.5},
                   core={"laplace_penalty": 0.2})  # fmt: skip
    with torch.no_grad():  # free logits start at zero: give them something to cost
        for p in model.readout.logits.values():
            p.normal_()
    penalty = float(model.penalty())
    assert penalty > 0
    same = stimulus_model(sessions, readout={"feature_l1": 0.0})  # same weights, no penalty
    same.load_state_dict(model.state_dict())
    sampler = WindowSampler(sessions, 1.0, seed=0)
    batch = [load_window(sessions[i], t0, 1.0, model.normalization()) for i, t0 in sampler.draw(3)]
    tasks = [get_task("responses_from_stimulus")] * 3
    totals = {}
    for mode in ("train", "eval"):  # with gradients, as in a training step
        for name, m in (("penalised", model), ("plain", same)):
            step = TrainStep(m).train(mode == "train")
            totals[mode, name] = [float(x) for x in step(batch, tasks, None)]
    count = float(totals["train", "plain"][1])
    assert count > 0
    # added per target: the trainer divides by the target count, which leaves it once per step
    added = (totals["train", "penalised"][0] - totals["train", "plain"][0]) / count
    assert abs(added - penalty) < 1e-4 * penalty
    assert totals["eval", "penalised"][0] == totals["eval", "plain"][0]
    with torch.no_grad():  # and none without gradients (a validation pass in train mode)
        no_grad, _ = TrainStep(model).train()(batch, tasks, None)
    assert abs(float(no_grad) - totals["train", "plain"][0]) < 1e-4 * penalty


def test_logit_penalty_keeps_windows_near_their_prior(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    norms = {}
    for weight in (0.0, 10.0):
        model = stimulus_model(sessions, readout={"logit_penalty": weight})
        training = TrainingConfig(steps=15, batch_size=4, lr=1e-2, warmup_steps=1,
                                  eval_every=10**6, tasks={"responses_from_stimulus": 1.0},
                                  device="cpu", seed=0)  # fmt: skip
        Trainer(model, sessions, training, window_s=1.0, progress=False).fit()
        norms[weight] = sum(float(p.detach().pow(2).sum()) for p in model.readout.logits.values())
    assert norms[10.0] < 0.5 * norms[0.0]


def test_laplace_penalty_prefers_smooth_kernels_at_any_scale() -> None:
    core = FactorisedCore(CoreConfig(channels=2, layers=1, spatial_kernels=(7,),
                                     temporal_kernels=(1,), laplace_penalty=1.0), in_channels=1)  # fmt: skip
    yy, xx = torch.meshgrid(torch.arange(7.0) - 3, torch.arange(7.0) - 3, indexing="ij")
    smooth = torch.exp(-(xx**2 + yy**2) / 8.0)
    noisy = torch.randn(7, 7, generator=torch.Generator().manual_seed(0))
    costs = []
    for kernel in (smooth, 10 * smooth, noisy):
        with torch.no_grad():
            core.spatial[0].weight.copy_(kernel.expand(2, 1, 7, 7))
        costs.append(float(core.penalty()))
    assert abs(costs[0] - costs[1]) < 1e-5 * costs[0]  # scale-free
    assert costs[2] > 5 * costs[0]
    assert FactorisedCore(CoreConfig(layers=1, spatial_kernels=(3,), temporal_kernels=(1,)),
                          in_channels=1).penalty() is None  # fmt: skip


def test_validation_loss_has_no_penalty_whatever_the_mode_it_is_given(tiny_data: Path) -> None:
    from neurofm.core.training.trainer import validation_loss

    sessions = open_dataset(tiny_data)
    model = stimulus_model(sessions, readout={"logit_penalty": 1.0})
    with torch.no_grad():
        for p in model.readout.logits.values():
            p.normal_()
    assert float(model.penalty()) > 0
    same = stimulus_model(sessions, readout={"feature_l1": 0.0})  # same weights, no penalty
    same.load_state_dict(model.state_dict())
    tasks = [get_task("responses_from_stimulus")]
    step = TrainStep(model).train()  # as a caller may pass it
    penalised = validation_loss(step, sessions, tasks, 1.0, max_windows=4)
    plain = validation_loss(TrainStep(same), sessions, tasks, 1.0, max_windows=4)
    assert np.isfinite(penalised) and penalised == plain
    assert step.training  # its mode is given back
