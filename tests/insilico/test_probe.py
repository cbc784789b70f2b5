"""ModelProbe on a real (untrained) model: shapes, gradients, held behaviour and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.core.data import open_dataset
from neurofm.core.data.windows import load_window
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.model.presets import default_model_config
from neurofm.insilico import InsilicoError, ModelProbe
from neurofm.insilico.stimuli import Gratings, GratingsConfig, SparseNoise, StimulusFitError
from neurofm.insilico.tuning import condition_responses, tuning_curves


@pytest.fixture(scope="module")
def sessions(tiny_data: Path):
    return open_dataset(tiny_data)


@pytest.fixture(scope="module")
def model(sessions):
    torch.manual_seed(0)
    return build_model(default_model_config("tiny", frame_size=(18, 32)), sessions).eval()


def test_responses_have_the_session_shape(model, sessions) -> None:
    probe = ModelProbe(model, sessions[0], screen_width_deg=120.0, hold={"gaze": [0.0, 0.0]})
    assert probe.stimulus_stream == "movie" and probe.response_stream == "calcium"
    assert probe.stimulus_shape == (18, 32) and probe.n_frames == 45  # 1.5 s at 30 Hz
    frames = torch.zeros(3, probe.n_frames, 18, 32)
    with torch.no_grad():
        responses = probe.responses(frames)
    assert responses.shape == (3, probe.response_times.size, probe.n_units)
    assert torch.isfinite(responses).all()
    # different gratings evoke different responses, the same one the same
    r = condition_responses(probe, Gratings(), [0, 0, 5])
    assert np.allclose(r[0], r[1]) and not np.allclose(r[0], r[2])


def test_stimuli_are_normalised_as_recorded_frames_are(model, sessions) -> None:
    session = sessions[0]
    probe = ModelProbe(model, session)
    start = float(session.intervals("train")[0].start)
    window = load_window(session, start, 2.0, model.normalization())
    recorded = window.streams["movie"]
    # the same frames as contrast around the stream's mean, through the probe
    gray = float(np.mean(session.stream_spec("movie").statistics.mean))
    raw = np.asarray(session.stream_data("movie"), np.float64)
    ts = session.stream_timestamps("movie")
    first = int(np.searchsorted(ts, start))
    contrast = torch.from_numpy(raw[first : first + recorded.n_samples] / gray - 1.0).float()
    torch.testing.assert_close(probe.to_stimulus(contrast), recorded.values, atol=1e-4, rtol=0)
    # the probe's clock is the stream's
    period = np.median(np.diff(recorded.times.numpy()))
    assert probe.stimulus_period_s == pytest.approx(period, rel=1e-3)
    assert probe.stimulus_times.size == recorded.n_samples


def test_gradients_reach_the_frames_and_not_the_weights(model, sessions) -> None:
    probe = ModelProbe(model, sessions[0], screen_width_deg=120.0)
    frames = (torch.randn(2, probe.n_frames, 18, 32) * 0.2).requires_grad_(True)
    model.train()
    try:
        with probe.frozen():
            assert not model.training
            probe.evoked(frames)[:, 3].sum().backward()
        assert model.training  # restored
        probe.responses(frames.detach())  # runs in eval mode, and gives the mode back
        assert model.training
    finally:
        model.eval()
    assert frames.grad is not None and frames.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())  # restored


def test_held_behaviour_changes_the_prediction(model, sessions) -> None:
    probe = ModelProbe(model, sessions[0], screen_width_deg=120.0)
    hold = probe.describe_hold()
    assert set(hold) == {"pupil", "running", "gaze"}
    mean = sessions[0].stream_spec("running").statistics.mean
    np.testing.assert_allclose(hold["running"], mean, rtol=1e-6)
    fast = probe.held({"running": [30.0]})
    assert fast.describe_hold()["running"] == pytest.approx([30.0])
    assert fast.describe_hold()["pupil"] == pytest.approx(hold["pupil"])
    frames = torch.zeros(1, probe.n_frames, 18, 32)
    with probe.frozen(), torch.no_grad():
        assert not torch.allclose(probe.responses(frames), fast.responses(frames))
    result = tuning_curves(probe, Gratings(GratingsConfig(phases=2)), [0, 1],
                           gain_stream="running", gain_values=([0.0], [20.0]))  # fmt: skip
    assert result.log_gain.shape == (2,) and np.isfinite(result.log_gain).all()


def test_bad_input_is_named(model, sessions, tiny_data: Path) -> None:
    session = sessions[0]
    with pytest.raises(InsilicoError, match="not behaviour streams"):
        ModelProbe(model, session, hold={"whiskers": [1.0]})
    with pytest.raises(InsilicoError, match="expected 2 value"):
        ModelProbe(model, session, hold={"gaze": [0.0]})
    probe = ModelProbe(model, session)
    with pytest.raises(InsilicoError, match=r"neurons \[16\] do not exist.*16 neurons"):
        probe.check_units([0, 16])
    with pytest.raises(InsilicoError, match="stimulus of shape"):
        probe.responses(torch.zeros(1, 3, 18, 32))
    with pytest.raises(StimulusFitError, match="--screen-width-deg"):
        condition_responses(probe, Gratings())  # the screen's size in degrees is unknown
    with pytest.raises(StimulusFitError, match="finer than the screen"):
        from neurofm.insilico.stimuli import SparseNoiseConfig

        condition_responses(probe, SparseNoise(SparseNoiseConfig(rows=40)))
    with pytest.raises(InsilicoError, match="onset_s"):
        ModelProbe(model, session, onset_s=3.0)


def test_a_model_that_sees_no_stimulus_is_refused(sessions) -> None:
    data = default_model_config("tiny", frame_size=(18, 32), stimulus_path=False).model_dump()
    data["modalities"] = {k: v for k, v in data["modalities"].items() if k != "movie"}
    model = build_model(ModelConfig.model_validate(data), sessions)
    with pytest.raises(InsilicoError, match="no stimulus encoder"):
        ModelProbe(model, sessions[0])


def test_the_tubelet_model_works_too(sessions) -> None:
    torch.manual_seed(0)
    config = default_model_config("tiny", frame_size=(18, 32), stimulus_path=False)
    model = build_model(config, sessions).eval()
    probe = ModelProbe(model, sessions[1], screen_width_deg=120.0)
    r = condition_responses(probe, Gratings(), [0, 3])
    assert r.shape == (2, probe.n_units) and np.isfinite(r).all()


def test_image_streams_regular_and_event_like(tmp_path: Path) -> None:
    from neurofm.core.data import StreamInput, write_session
    from neurofm.core.data.simulate_to_disk import simulate_to_disk
    from neurofm.core.data.simulation import SimulationConfig

    data = simulate_to_disk(tmp_path / "images", SimulationConfig.tiny().model_copy(
        update={"stimulus": "image"}), progress=False)  # fmt: skip
    simulated = open_dataset(data)[0]
    # the same presentations as an event-like stream (one sample per presentation)
    streams = {
        "image": StreamInput("image", np.asarray(simulated.stream_data("image")),
                             simulated.stream_timestamps("image"), event_like=True),
        "calcium": StreamInput("calcium", np.asarray(simulated.stream_data("calcium")),
                               simulated.stream_timestamps("calcium"), per_unit=True),
    }  # fmt: skip
    units = simulated.units
    events = open_dataset(write_session(
        tmp_path / "events" / "s", session_id="events", animal_id="m", species="mus_musculus",
        streams=streams, units=units,
        intervals=[iv.model_dump() for iv in simulated.intervals()],
    ))[0]  # fmt: skip
    config = default_model_config("tiny", frame_size=(18, 32)).model_dump()
    movie = config["modalities"].pop("movie")
    movie.pop("frame_pool")
    config["modalities"] = {"image": {**movie, "type": "image_core", "step_s": 1 / 15},
                            "calcium": config["modalities"]["calcium"]}  # fmt: skip
    config["heads"] = {"calcium": config["heads"]["calcium"]}
    config["readout"]["eye_stream"] = None
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(config), [simulated, events]).eval()
    images = torch.from_numpy(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 18, 32))).float()
    for session, frames in ((simulated, 3), (events, 1)):
        probe = ModelProbe(model, session, screen_width_deg=120.0)
        assert probe.event_like == (session is events) and probe.n_frames == frames
        with torch.no_grad():
            evoked = probe.evoked(images[:, None].expand(-1, frames, -1, -1))
        assert evoked.abs().max() > 1e-4  # the image reaches the model
        assert not torch.allclose(evoked[0], evoked[1])
    assert ModelProbe(model, events).stimulus_times.tolist() == [0.0, 0.5]
    with pytest.raises(InsilicoError, match="event-like"):
        ModelProbe(model, events, onset_s=0.0)
