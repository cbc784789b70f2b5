"""The parametric path carries signal: trained from grating parameters alone, the model's predicted
responses recover each neuron's preferred orientation (the full simulator version, with calcium
dynamics and behaviour, is in benchmarks/modalities.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neurofm.core.data import StreamInput, UnitTable, open_dataset, write_session
from neurofm.core.data.windows import WindowSample
from neurofm.core.interfaces import StreamTensor
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.tokens.tasks import get_task
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.trainer import Trainer
from neurofm.insilico import ModelProbe, tuning_curves
from neurofm.insilico.stimuli import Gratings, GratingsConfig

N, RATE = 12, 30.0
CHANNELS = ("orientation", "direction", "spatial_frequency_cpd", "temporal_frequency_hz",
            "contrast", "phase")  # fmt: skip


def _grating_session(root: Path, preferred: np.ndarray) -> Path:
    """1 s gratings of random direction; responses tuned to orientation, Poisson noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(160 * RATE)) / RATE
    direction = np.repeat(rng.uniform(0, 360, t.size // int(RATE) + 1), int(RATE))[: t.size]
    phase = (720.0 * t) % 360
    params = np.stack([direction % 180, direction, 0.04 + 0 * t, 2 + 0 * t, 1 + 0 * t, phase], 1)
    tuning = np.cos(2 * np.deg2rad(direction[:, None] % 180 - preferred))
    calcium = rng.poisson(2.0 * np.exp(0.8 * tuning)).astype(np.float32)
    return write_session(
        root, session_id="gratings", animal_id="m", species="mus_musculus",
        streams={"parametric": StreamInput("parametric", params, t, channel_names=CHANNELS),
                 "calcium": StreamInput("calcium", calcium, t, per_unit=True)},
        intervals=[{"start": 0.0, "end": 150.0, "tier": "train"}],
        units=UnitTable(np.arange(N), np.zeros((N, 3)), np.array(["V1"] * N)),
    )  # fmt: skip


def preferred_orientation(model, session_id: str, n_units: int) -> np.ndarray:
    """Preferred orientation (degrees) of every unit from the model's predicted responses to
    probe gratings at 12 orientations (both drift directions): the doubled-angle vector mean."""
    task, steps = get_task("responses_from_stimulus"), int(2 * RATE)
    times = torch.arange(steps, dtype=torch.float32) / RATE
    thetas = np.arange(0.0, 180.0, 15.0)
    mean = np.zeros((thetas.size, n_units))
    for k, theta in enumerate(thetas):
        for direction in (theta, theta + 180.0):
            p = np.zeros((steps, 6), np.float32)
            p[:] = [theta, direction, 0.04, 2.0, 1.0, 0.0]
            p[:, 5] = (720.0 * times.numpy()) % 360
            streams = {
                "parametric": StreamTensor(
                    torch.from_numpy(p), torch.ones(steps, 6, dtype=torch.bool), times, 1 / RATE
                ),
                "calcium": StreamTensor(
                    torch.zeros(steps, n_units),
                    torch.ones(steps, n_units, dtype=torch.bool),
                    times,
                    1 / RATE,
                ),
            }
            with torch.no_grad():
                out = model([WindowSample(session_id, 0.0, 2.0, streams)], [task]).targets[0]
            mean[k] += model.head("calcium").predict(out.raw)[steps // 2 :].mean(0).numpy()
    vector = (mean * np.exp(2j * np.deg2rad(thetas))[:, None]).sum(0)
    return np.rad2deg(np.angle(vector)) / 2 % 180


def test_parametric_model_recovers_preferred_orientation(tmp_path: Path) -> None:
    torch.manual_seed(0)
    preferred = np.random.default_rng(1).uniform(0, 180, N)
    sessions = open_dataset(_grating_session(tmp_path, preferred))
    config = ModelConfig.model_validate(
        {
            "modalities": {"parametric": {"type": "parametric"}, "calcium": {"type": "calcium"}},
            "readout": {"type": "neuron_embedding"},
            "heads": {"calcium": {"type": "poisson"}},
        }
    )
    model = build_model(config, sessions)
    training = TrainingConfig(
        steps=200, batch_size=8, lr=3e-3, warmup_steps=20, eval_every=10**6,
        tasks={"responses_from_stimulus": 1.0},
    )  # fmt: skip
    Trainer(model, sessions, training, window_s=2.0, progress=False).fit()
    model.eval()
    estimate = preferred_orientation(model, "gratings", N)
    error = np.abs((estimate - preferred + 90) % 180 - 90)
    assert (error < 22.5).mean() >= 0.6, error  # chance: 25 %
    # the in-silico tuning experiment drives the parametric encoder with grating parameters
    probe = ModelProbe(model, sessions[0])
    assert probe.parametric and probe.channel_names[:2] == ["orientation", "direction"]
    gratings = Gratings(GratingsConfig(spatial_frequencies_cpd=[0.04], contrasts=[1.0]))
    tuning = tuning_curves(probe, gratings)
    error = np.abs((tuning.preferred_orientation_deg - preferred + 90) % 180 - 90)
    assert (error < 22.5).mean() >= 0.6, error
