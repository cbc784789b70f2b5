"""Every modality inside a model: as input and as target, subsets of modalities, NaN gaps, and
normalisation with the stored train-tier statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.core.data import StreamInput, UnitTable, open_dataset, write_session
from neurofm.core.data.simulation import SimulationConfig, simulate_session
from neurofm.core.data.windows import load_window
from neurofm.core.data.writer import compute_statistics
from neurofm.core.evaluation.evaluate import evaluate
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.tokens.tasks import StreamRule, TaskSpec, get_task
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.trainer import Trainer

SIM = SimulationConfig.tiny().model_copy(update={"stimulus": "mixed", "include_spikes": True})
MISSING = {"running", "gaze"}  # the second session has no treadmill and no eye tracking


@pytest.fixture(scope="module")
def mixed_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    for index in range(2):
        sim = simulate_session(SIM, 0, index)
        names = [n for n in sim.streams if not (index == 1 and n in MISSING)]
        write_session(
            root,
            session_id=sim.session_id,
            animal_id=sim.animal_id,
            species=sim.species,
            streams={
                n: StreamInput(
                    sim.streams[n].modality,
                    sim.streams[n].data,
                    sim.streams[n].timestamps,
                    per_unit=n in ("calcium", "spikes"),
                )
                for n in names
            },
            intervals=sim.intervals,
            units=UnitTable(sim.unit_ids, sim.unit_position_um, sim.unit_area),
            ground_truth={"expected_calcium": sim.ground_truth["expected_calcium"]},
        )
    return root


def _config() -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "modalities": {
                "movie": {"type": "movie", "height": 18, "width": 32, "patch_height": 6,
                          "patch_width": 8, "pool_height": 3},
                "image": {"type": "image", "height": 18, "width": 32, "patch_height": 6,
                          "patch_width": 8},
                "parametric": {"type": "parametric"},
                "pupil": {"type": "pupil"},
                "running": {"type": "running"},
                "gaze": {"type": "gaze"},
                "calcium": {"type": "calcium"},
                "spikes": {"type": "spikes"},
            },
            "readout": {"type": "neuron_embedding"},
            "heads": {
                "calcium": {"type": "poisson"},
                "spikes": {"type": "poisson"},
                "gaze": {"type": "regression"},
                "pupil": {"type": "regression"},
                "running": {"type": "regression"},
            },
        }
    )  # fmt: skip


def test_every_modality_as_input_and_target(mixed_data: Path) -> None:
    sessions = open_dataset(mixed_data)
    model = build_model(_config(), sessions)
    norm = model.normalization()
    assert norm["parametric"] == "none" and norm["spikes"] == "none" and norm["gaze"] == "zscore"
    everything = TaskSpec(
        name="all", rules={"*": StreamRule(visible=(0.0, 0.5), target=(0.5, 1.0))}
    )
    batch = []
    for session in sessions:
        for iv in session.intervals("train") + session.intervals("test")[:3]:
            batch.append(load_window(session, iv.start, 2.0, norm))
    out = model(batch, [everything] * len(batch))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    targets = {o.stream for o in out.targets}
    assert targets == {"calcium", "spikes", "gaze", "pupil", "running"}
    for name in ("movie", "image", "parametric", "pupil", "running", "gaze", "calcium", "spikes"):
        grads = [p.grad for p in model.encoder(name).parameters() if p.grad is not None]
        assert grads and any(bool(g.abs().sum() > 0) for g in grads), f"{name} got no gradient"


def test_session_without_running_and_gaze_trains_and_evaluates(mixed_data: Path) -> None:
    sessions = open_dataset(mixed_data)
    assert MISSING.isdisjoint(sessions[1].stream_names)
    model = build_model(_config(), sessions)
    config = TrainingConfig(
        steps=2, batch_size=4, eval_every=2, warmup_steps=0,
        tasks={"responses_from_stimulus_behaviour": 1.0, "behaviour_from_responses": 1.0},
    )  # fmt: skip
    result = Trainer(model, sessions, config, window_s=2.0, progress=False).fit()
    assert np.isfinite(result.train_loss).all() and np.isfinite(result.validation_loss[0][1])
    report = evaluate(
        model, sessions, tasks=["behaviour_from_responses"], window_s=2.0, progress=False
    )
    assert {"gaze", "running", "pupil"} <= set(report.tasks["behaviour_from_responses"])


def _blink_session(root: Path) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(400) / 20.0
    pupil = rng.normal(1.0, 0.1, (400, 2))
    gaze = rng.normal(0.0, 5.0, (400, 2))
    pupil[30:45] = np.nan  # blinks
    gaze[30:45] = np.nan
    gaze[100:104, 0] = np.nan  # x lost, y tracked
    calcium = rng.gamma(2.0, 1.0, (400, 4))
    return write_session(
        root, session_id="blinks", animal_id="m", species="mus_musculus",
        streams={"pupil": StreamInput("pupil", pupil, t), "gaze": StreamInput("gaze", gaze, t),
                 "calcium": StreamInput("calcium", calcium, t, per_unit=True)},
        intervals=[{"start": 0.0, "end": 14.0, "tier": "train"},
                   {"start": 14.0, "end": 20.0, "tier": "test"}],
        units=UnitTable(np.arange(4), np.zeros((4, 3)), np.array(["V1"] * 4)),
    )  # fmt: skip


def test_nan_gaps_are_masked_out_of_tokens_and_losses(tmp_path: Path) -> None:
    sessions = open_dataset(_blink_session(tmp_path))
    config = ModelConfig.model_validate(
        {
            "modalities": {"pupil": {"type": "pupil"}, "gaze": {"type": "gaze"},
                           "calcium": {"type": "calcium"}},
            "heads": {"pupil": {"type": "regression"}, "gaze": {"type": "regression"}},
        }
    )  # fmt: skip
    model = build_model(config, sessions)
    window = load_window(sessions[0], 0.0, 6.0, model.normalization())
    for name in ("pupil", "gaze"):
        stream = window.streams[name]
        assert not stream.valid[30:45].any() and torch.all(stream.values[30:45] == 0)
        tokens = model.encoder(name).tokenize(stream)
        assert torch.isfinite(tokens.features).all() and len(tokens) < 30  # blink token dropped
    assert window.streams["gaze"].valid[100:104].tolist() == [[False, True]] * 4
    out = model([window], [get_task("behaviour_from_responses")])
    assert torch.isfinite(out.loss)
    for target in out.targets:
        raw = target.raw.detach().requires_grad_(True)
        total, count = model.head(target.stream).loss(raw, target.target, target.valid)
        total.backward()
        assert int(count) == int(target.valid.sum()) < target.valid.numel()
        assert torch.all(raw.grad[~target.valid] == 0)  # masked entries get no loss


def test_normalisation_uses_stored_train_statistics(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(400) / 20.0
    gaze = rng.normal(0.0, 2.0, (400, 2))
    gaze[280:] += 50.0  # the test tier is shifted: recomputing there would hide the shift
    gaze[10:20] = np.nan
    intervals = [{"start": 0.0, "end": 14.0, "tier": "train"},
                 {"start": 14.0, "end": 20.0, "tier": "test"}]  # fmt: skip
    path = write_session(
        tmp_path, session_id="s", animal_id="m", species="mus_musculus",
        streams={"gaze": StreamInput("gaze", gaze, t)}, intervals=intervals,
    )  # fmt: skip
    session = open_dataset(path)[0]
    stats = session.stream_spec("gaze").statistics
    train = gaze[:280]
    assert stats.tier == "train"
    np.testing.assert_allclose(stats.mean, np.nanmean(train, 0), atol=1e-4)
    np.testing.assert_allclose(stats.std, np.nanstd(train, 0), rtol=1e-4)
    window = load_window(session, 15.0, 2.0, {"gaze": "zscore"})
    expected = (gaze[300:340] - np.nanmean(train, 0)) / np.nanstd(train, 0)
    np.testing.assert_allclose(window.streams["gaze"].values.numpy(), expected, rtol=1e-4)
    assert (
        float(window.streams["gaze"].values.mean()) > 10
    )  # the shift is kept, not normalised away
    recomputed = compute_statistics(gaze, t, session.intervals(), tier="test")
    assert recomputed.mean != stats.mean  # a different answer exists, and was not used
