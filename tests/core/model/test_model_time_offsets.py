"""Per-unit sample times in the model: offsets reach the per-unit encoders and the stimulus reads
of the targets; absent or zero offsets change nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.core.data import open_dataset
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig
from neurofm.core.data.windows import WindowSampler, load_window
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.model.presets import default_model_config
from neurofm.core.tokens.tasks import get_task
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.trainer import Trainer


@pytest.fixture(scope="module")
def offset_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny simulated sessions at 8 Hz whose neurons are sampled at frame time + scan offset."""
    config = SimulationConfig.tiny().model_copy(
        update=dict(sessions_per_animal=1, neural_rate_hz=8.0, apply_scan_offsets=True)
    )
    return simulate_to_disk(tmp_path_factory.mktemp("offsets") / "d", config, progress=False)


def _config(**changes) -> ModelConfig:
    data = default_model_config("tiny", frame_size=(18, 32), stimulus_path=True).model_dump()
    return ModelConfig.model_validate({**data, **changes})


def _batch(sessions, model, n=3):
    draws = WindowSampler(sessions, 2.0, seed=0).draw(n)
    return [load_window(sessions[i], t0, 2.0, model.normalization()) for i, t0 in draws]


def _loss(model, batch, task: str) -> torch.Tensor:
    with torch.no_grad():
        return model(batch, [get_task(task)] * len(batch), np.random.default_rng(1)).loss


def test_per_unit_encoders_get_the_visible_units_offsets(offset_data: Path, monkeypatch) -> None:
    sessions = open_dataset(offset_data)
    torch.manual_seed(0)
    model = build_model(_config(), sessions)
    batch = _batch(sessions, model, n=1)
    enc = model.encoder("calcium")
    seen = []
    tokenize = enc.tokenize
    monkeypatch.setattr(enc, "tokenize", lambda s, u=None: seen.append(s) or tokenize(s, u))
    out = model(batch, [get_task("population_half")], np.random.default_rng(0))
    (stream,) = seen
    offsets = batch[0].unit_time_offset_s
    assert offsets.max() > 0.05  # at 8 Hz the scan spreads the neurons over 125 ms
    n_visible = stream.values.shape[1]
    assert 0 < n_visible < offsets.numel()
    # the visible columns' offsets, in column order; the targets are the other units
    (target,) = [o for o in out.targets if o.stream == "calcium"]
    visible = np.setdiff1d(np.arange(offsets.numel()), target.units.numpy())
    torch.testing.assert_close(stream.unit_time_offset_s, offsets[visible])
    tokens = tokenize(
        stream, model.readout.unit_embeddings(batch[0].session_id, torch.from_numpy(visible))
    )
    plain = tokenize(
        dataclasses.replace(stream, unit_time_offset_s=None),
        model.readout.unit_embeddings(batch[0].session_id, torch.from_numpy(visible)),
    )
    shift = tokens.times - plain.times
    assert float(shift.max()) == pytest.approx(float(offsets[visible].max()), abs=1e-6)


@pytest.mark.parametrize("task", ["responses_from_stimulus", "forecast_with_stimulus_behaviour"])
def test_absent_zero_or_ignored_offsets_give_the_loss_of_a_model_without_them(
    offset_data: Path, task: str
) -> None:
    sessions = open_dataset(offset_data)
    torch.manual_seed(0)
    model = build_model(_config(), sessions).eval()
    ignoring = build_model(_config(unit_time_offsets=False), sessions).eval()
    ignoring.load_state_dict(model.state_dict())
    batch = _batch(sessions, model)
    absent = [dataclasses.replace(s, unit_time_offset_s=None) for s in batch]
    zero = [dataclasses.replace(s, unit_time_offset_s=torch.zeros_like(s.unit_time_offset_s))
            for s in batch]  # fmt: skip
    reference = _loss(model, absent, task)
    torch.testing.assert_close(_loss(model, zero, task), reference, rtol=0, atol=1e-6)
    torch.testing.assert_close(_loss(ignoring, batch, task), reference, rtol=0, atol=1e-6)
    used = _loss(model, batch, task)
    assert abs(float(used - reference)) > 1e-6  # the offsets do move the reads and tokens


def test_a_model_trains_with_offsets(offset_data: Path) -> None:
    sessions = open_dataset(offset_data)
    torch.manual_seed(0)
    model = build_model(_config(), sessions)
    assert model.unit_time_offsets
    training = TrainingConfig(
        steps=6, batch_size=4, lr=3e-3, warmup_steps=0, eval_every=10**6, device="cpu",
        tasks={"responses_from_stimulus": 1.0, "forecast": 1.0},
    )  # fmt: skip
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = Trainer(model, sessions, training, window_s=2.0, progress=False).fit()
    assert len(result.train_loss) == 6 and np.isfinite(result.train_loss).all()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any("readout" in k for k in changed) and any("encoders.calcium" in k for k in changed)
