"""Numerics: training with the Poisson head stays finite on sparse, bursty and all-zero neurons;
loss spikes are reported with their step; steps with non-finite gradients are skipped with a
warning; a non-finite loss stops training with an error before any update. NaN never reaches the
weights."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
from reliability_helpers import units

from neurofm.core.data import Interval, Session, StreamInput, write_session
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.monitor import LossMonitor
from neurofm.errors import NeurofmError

RATE_HZ = 20.0
DURATION_S = 24.0
N_UNITS = 12  # 3 all-zero, 3 sparse, 3 bursty, 3 ordinary
MODEL = {
    "backbone": {"d_model": 16, "n_heads": 2, "n_layers": 1, "n_latents": 4},
    "modalities": {"calcium": {"type": "calcium"}, "running": {"type": "running"}},
    "readout": {"type": "neuron_embedding"},
    "heads": {"calcium": {"type": "poisson"}, "running": {"type": "regression"}},
}


@pytest.fixture(scope="module")
def hard_session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    """Calcium of neurons that are silent, fire once in a while, or burst to huge values."""
    rng = np.random.default_rng(0)
    ts = np.arange(round(DURATION_S * RATE_HZ)) / RATE_HZ
    calcium = np.zeros((ts.size, N_UNITS))
    calcium[:, 3:6] = rng.random((ts.size, 3)) < 0.01  # sparse: ~1 event in 5 s
    for unit in range(6, 9):  # bursty: silent, then a few samples 1e3-1e5 high
        for start in rng.choice(ts.size - 5, 2, replace=False):
            calcium[start : start + 5, unit] = 10.0 ** rng.uniform(3, 5)
    calcium[:, 9:] = rng.gamma(2.0, 1.0, (ts.size, 3))
    running = rng.normal(size=(ts.size, 1))
    path = write_session(
        tmp_path_factory.mktemp("hard"),
        session_id="hard",
        animal_id="m0",
        species="mouse",
        streams={
            "calcium": StreamInput("calcium", calcium, ts, per_unit=True),
            "running": StreamInput("running", running, ts),
        },
        intervals=[
            Interval(start=0.0, end=20.0, tier="train"),
            Interval(start=20.0, end=24.0, tier="validation"),
        ],
        units=units(N_UNITS),
    )
    return Session.open(path)


def _trainer(session: Session, **training) -> Trainer:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(MODEL), [session])
    settings = {"steps": 100, "batch_size": 4, "lr": 3e-2, "warmup_steps": 0, "device": "cpu",
                "eval_every": 1000, "num_workers": 1, "prefetch": 1, "bf16": False,
                "tasks": {"forecast": 1.0, "responses_from_stimulus_behaviour": 1.0,
                          "behaviour_from_responses": 1.0}}  # fmt: skip
    settings.update(training)
    return Trainer(model, [session], TrainingConfig(**settings), window_s=1.0, progress=False)


def _all_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_poisson_training_stays_finite_on_silent_sparse_and_bursty_neurons(
    hard_session: Session,
) -> None:
    stats = hard_session.stream_spec("calcium").statistics
    assert np.isfinite(stats.std).all() and min(stats.std) > 0  # silent units: std 1, not 0
    trainer = _trainer(hard_session)
    losses = [trainer.train_step() for _ in range(12)]
    assert all(math.isfinite(x) for x in losses), losses
    assert _all_finite(trainer.model) and trainer.monitor.skipped == []
    assert math.isfinite(trainer.validation_loss(max_windows=4))


def test_steps_with_non_finite_gradients_are_skipped_with_a_warning(
    hard_session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    trainer = _trainer(hard_session)
    poisoned = {"step": 3}
    weight = next(trainer.model.parameters())
    weight.register_hook(
        lambda g: torch.full_like(g, math.nan) if trainer.step == poisoned["step"] else g
    )
    for _ in range(3):
        trainer.train_step()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger="neurofm.training"):
        assert math.isfinite(trainer.train_step())  # the loss was fine; the gradient was not
    assert "non-finite gradient norm (nan) at step 3: the optimizer step was skipped" in caplog.text
    assert trainer.monitor.skipped == [3] and trainer.step == 4
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no update at all
    for _ in range(3):
        trainer.train_step()  # training goes on
    assert _all_finite(trainer.model) and trainer.monitor.skipped == [3]
    assert not all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


class _SpikeAt(torch.nn.Module):
    """The trainer's step module with the loss multiplied by ``factor`` at one step."""

    def __init__(self, inner: torch.nn.Module, trainer: Trainer, step: int, factor: float):
        super().__init__()
        self.inner, self.trainer, self.step, self.factor = inner, [trainer], step, factor

    def forward(self, *args):
        total, count = self.inner(*args)
        return (total * self.factor if self.trainer[0].step == self.step else total), count


def test_loss_spikes_are_reported_with_their_step(
    hard_session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    trainer = _trainer(hard_session, lr=1e-3)
    trainer.monitor = LossMonitor(min_history=6)
    trainer.module = _SpikeAt(trainer.module, trainer, step=8, factor=1000.0)
    with caplog.at_level(logging.WARNING, logger="neurofm.training"):
        losses = [trainer.train_step() for _ in range(10)]
    assert [step for step, _, _ in trainer.monitor.spikes] == [8], (losses, trainer.monitor.spikes)
    assert "loss spike at step 8:" in caplog.text
    assert _all_finite(trainer.model)  # clipping kept the spike's update bounded


def test_a_non_finite_loss_stops_training_before_any_update(hard_session: Session) -> None:
    trainer = _trainer(hard_session)
    trainer.module = _SpikeAt(trainer.module, trainer, step=2, factor=math.nan)
    trainer.train_step(), trainer.train_step()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(NeurofmError, match="loss became nan at step 2; the weights were not upd"):
        trainer.train_step()
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_loss_monitor_thresholds() -> None:
    monitor = LossMonitor(spike_factor=10.0, min_history=5)
    steady = [-0.50, -0.52, -0.49, -0.51, -0.50, -0.48, -0.53]  # Poisson NLL may be negative
    assert not any(monitor.check_loss(i, x) for i, x in enumerate(steady))
    assert monitor.check_loss(7, -0.20)  # far above the negative median
    assert not monitor.check_loss(8, -0.505)
    assert not monitor.check_loss(9, math.inf)  # non-finite losses are the trainer's to refuse
    assert [s[0] for s in monitor.spikes] == [7]
    assert monitor.gradients_finite(10, torch.tensor(3.0))
    assert not monitor.gradients_finite(11, torch.tensor(math.inf))
    assert monitor.skipped == [11]
    with pytest.raises(ValueError, match="spike_factor > 0"):
        LossMonitor(spike_factor=0.0)
