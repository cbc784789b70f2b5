"""The simulated V1 dataset: structure, determinism and the physiology it claims to simulate."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pydantic
import pytest

from neurofm.core.data.simulation import (
    SimulatedSession,
    SimulationConfig,
    simulate_dataset,
    simulate_session,
)
from neurofm.core.data.simulation.neurons import (
    NeuronPopulation,
    expected_calcium,
    gabor_pair,
    sample_calcium,
    sample_population,
    sample_retinotopy,
    spatial_responses,
    temporal_filter,
)
from neurofm.core.data.simulation.stimulus import MEAN_LUMINANCE, ScreenGeometry

STREAMS = {"movie": 30.0, "calcium": 30.0, "running": 20.0, "pupil": 20.0, "gaze": 20.0}


@pytest.fixture(scope="module")
def tiny() -> list[SimulatedSession]:
    return simulate_dataset(SimulationConfig.tiny())


@pytest.fixture(scope="module")
def medium() -> SimulatedSession:
    """One session long enough for correlation statistics (~1 s to simulate)."""
    config = SimulationConfig(
        n_animals=1,
        sessions_per_animal=1,
        neurons_per_session=32,
        n_train_trials=16,
        n_validation_trials=0,
        n_test_clips=2,
        test_repeats=5,
        trial_duration_s=6.0,
    )
    return simulate_session(config, 0, 0)


def _mask(session: SimulatedSession, t: np.ndarray, tier: str) -> np.ndarray:
    inside = np.zeros(t.size, dtype=bool)
    for iv in session.intervals:
        if iv["tier"] == tier:
            inside |= (t >= iv["start"]) & (t < iv["end"])
    return inside


def _columnwise_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = (a - a.mean(0)) / a.std(0)
    b = (b - b.mean(0)) / b.std(0)
    return (a * b).mean(0)


def test_same_config_gives_bitwise_identical_sessions(tiny):
    again = simulate_session(SimulationConfig.tiny(), 0, 1)
    first = tiny[1]
    assert again.intervals == first.intervals
    for name, stream in first.streams.items():
        assert np.array_equal(stream.data, again.streams[name].data)
        assert np.array_equal(stream.timestamps, again.streams[name].timestamps)
    for key, value in first.ground_truth.items():
        assert np.array_equal(value, again.ground_truth[key]), key
    other = simulate_session(SimulationConfig.tiny().model_copy(update={"seed": 1}), 0, 1)
    assert not np.array_equal(other.streams["calcium"].data, first.streams["calcium"].data)
    assert not np.array_equal(other.streams["movie"].data, first.streams["movie"].data)


def test_shapes_dtypes_rates_and_clocks(tiny):
    config = SimulationConfig.tiny()
    n = config.neurons_per_session
    assert [s.session_id for s in tiny] == ["sim-a0-s0", "sim-a0-s1"]
    for session in tiny:
        assert session.species == "mus_musculus" and set(session.streams) == set(STREAMS)
        for name, rate in STREAMS.items():
            stream = session.streams[name]
            assert stream.modality == name
            assert stream.data.dtype == np.float32 and stream.timestamps.dtype == np.float64
            assert stream.data.shape[0] == stream.timestamps.shape[0]
            steps = np.diff(stream.timestamps)
            assert np.all(steps > 0) and np.allclose(steps, 1.0 / rate)
            assert stream.timestamps[0] >= 1000.0
        assert session.streams["movie"].data.shape[1:] == (config.height, config.width)
        assert session.streams["calcium"].data.shape[1] == n
        assert session.streams["running"].channel_names == ("speed",)
        assert session.streams["pupil"].channel_names == ("size", "size_derivative")
        assert session.streams["gaze"].channel_names == ("x", "y")
        assert session.unit_position_um.shape == (n, 3) and session.unit_ids.dtype == np.int64
        assert session.unit_area.dtype == np.dtype("<U8") and set(session.unit_area) == {"V1"}
        truth = session.ground_truth
        assert truth["expected_calcium"].shape == session.streams["calcium"].data.shape
        assert truth["rate"].shape == session.streams["calcium"].data.shape
        assert truth["rf_center_deg"].shape == (n, 2) and truth["behaviour_gain"].shape == (n, 2)
        assert truth["is_complex"].dtype == bool and truth["scan_offset_s"].shape == (n,)
        assert np.all((truth["scan_offset_s"] >= 0) & (truth["scan_offset_s"] <= 1 / 30))
    assert len(np.unique(np.concatenate([s.unit_ids for s in tiny]))) == 2 * n


def test_intervals_cover_trials_and_gaps_are_gray(tiny):
    config = SimulationConfig.tiny()
    for session in tiny:
        tiers = [iv["tier"] for iv in session.intervals]
        assert tiers.count("train") == config.n_train_trials
        assert tiers.count("validation") == config.n_validation_trials
        assert tiers.count("test") == config.n_test_clips * config.test_repeats
        assert [iv["trial"] for iv in session.intervals] == list(range(len(tiers)))
        starts = np.array([iv["start"] for iv in session.intervals])
        ends = np.array([iv["end"] for iv in session.intervals])
        assert np.allclose(ends - starts, config.trial_duration_s)
        assert np.all(starts[1:] - ends[:-1] >= config.gap_duration_s - 1e-9)
        movie = session.streams["movie"]
        on = _mask(session, movie.timestamps, "train") | _mask(session, movie.timestamps, "test")
        on |= _mask(session, movie.timestamps, "validation")
        assert np.all(movie.data[~on] == MEAN_LUMINANCE)
        assert movie.data.min() >= 0 and movie.data.max() <= 255
        assert abs(movie.data[on].mean() - MEAN_LUMINANCE) < 20 and movie.data[on].std() > 20


def test_test_clips_shared_while_behaviour_differs(tiny):
    clips: dict[str, list[np.ndarray]] = {}
    pupils: dict[str, list[np.ndarray]] = {}
    for session in tiny:
        movie, pupil = session.streams["movie"], session.streams["pupil"]
        for iv in session.intervals:
            if iv["tier"] != "test":
                continue
            i0 = np.searchsorted(movie.timestamps, iv["start"])
            clips.setdefault(iv["stimulus_id"], []).append(movie.data[i0 : i0 + 60])
            j0 = np.searchsorted(pupil.timestamps, iv["start"])
            pupils.setdefault(iv["stimulus_id"], []).append(pupil.data[j0 : j0 + 40, 0])
    assert len(clips) == SimulationConfig.tiny().n_test_clips
    for stimulus_id, shown in clips.items():
        assert len(shown) == 2 * 5
        assert all(np.array_equal(shown[0], other) for other in shown[1:]), stimulus_id
        assert not all(np.allclose(pupils[stimulus_id][0], p) for p in pupils[stimulus_id][1:])
    train_ids = [{iv["stimulus_id"] for iv in s.intervals if iv["tier"] == "train"} for s in tiny]
    assert not train_ids[0] & train_ids[1]


def test_behaviour_ranges_and_running_dilates_pupil(medium):
    speed = medium.streams["running"].data[:, 0].astype(np.float64)
    pupil = medium.streams["pupil"].data.astype(np.float64)
    gaze = medium.streams["gaze"].data
    assert speed.min() >= 0 and speed.max() > 5
    assert pupil[:, 0].min() >= 0.2 and pupil[:, 0].max() < 4
    assert np.allclose(pupil[:, 1], np.gradient(pupil[:, 0], 1 / 20), atol=1e-3)
    assert np.abs(gaze).max() < 40 and np.abs(np.diff(gaze, axis=0)).max() > 1.0  # saccades
    lag = 40  # 2 s at 20 Hz
    follows = np.corrcoef(speed[:-lag], pupil[lag:, 0])[0, 1]
    precedes = np.corrcoef(speed[lag:], pupil[:-lag, 0])[0, 1]
    print(f"speed->pupil correlation at +2 s {follows:.2f}, at -2 s {precedes:.2f}")
    assert follows > 0.3 and follows > precedes


def _population_from_truth(truth: dict[str, np.ndarray]) -> NeuronPopulation:
    """A population carrying the ground-truth RF and calcium parameters of a session."""
    n = truth["rf_orientation"].shape[0]
    template = sample_population(
        np.random.default_rng(0),
        n,
        sample_retinotopy(np.random.default_rng(0)),
        np.zeros(2),
        frame_period_s=1 / 30,
    )
    as64 = {key: truth[key].astype(np.float64) for key in truth}
    return replace(
        template,
        rf_center_deg=as64["rf_center_deg"],
        orientation=as64["rf_orientation"],
        spatial_frequency_cpd=as64["rf_spatial_frequency_cpd"],
        phase=as64["rf_phase"],
        sigma_deg=as64["rf_sigma_deg"],
        calcium_tau_s=as64["calcium_tau_s"],
        calcium_amplitude=np.ones(n),
        calcium_baseline=np.zeros(n),
    )


def test_calcium_is_nonnegative_and_follows_the_receptive_field_drive(medium):
    calcium, movie, truth = medium.streams["calcium"], medium.streams["movie"], medium.ground_truth
    assert calcium.data.min() >= 0
    # an experimenter's linear-nonlinear prediction from the true RFs, ignoring eye movements
    pop = _population_from_truth(truth)
    n = pop.orientation.shape[0]
    screen = ScreenGeometry(movie.data.shape[1], movie.data.shape[2], 120.0)
    filters = gabor_pair(pop, *screen.pixel_centres_deg()).reshape(-1, 2 * n)
    pair = (movie.data.reshape(movie.data.shape[0], -1) - MEAN_LUMINANCE) @ filters
    pair = temporal_filter(pair.reshape(-1, 2, n), truth["temporal_kernel"])
    rectified = np.where(
        truth["is_complex"], np.hypot(pair[:, 0], pair[:, 1]), np.maximum(pair[:, 0], 0)
    )
    frame = np.clip(np.searchsorted(movie.timestamps, calcium.timestamps), 0, len(pair) - 1)
    predicted = expected_calcium(rectified[frame], 1 / 30, pop)
    on = _mask(medium, calcium.timestamps, "train")
    actual = _columnwise_corr(calcium.data[on], predicted[on])
    control = _columnwise_corr(calcium.data[on], np.roll(predicted, 900, axis=0)[on])
    print(
        f"median corr(calcium, RF drive) {np.median(actual):.2f}; shifted {np.median(control):.2f}"
    )
    print(f"fraction of neurons with corr > 0.15: {np.mean(actual > 0.15):.2f}")
    assert np.mean(actual > 0.15) > 0.75
    assert np.median(actual) > np.median(np.abs(control)) + 0.2


def test_receptive_fields_move_with_the_eye():
    screen = ScreenGeometry(18, 32, 120.0)
    rng = np.random.default_rng(3)
    pop = sample_population(rng, 5, sample_retinotopy(rng), np.zeros(2), frame_period_s=1 / 30)
    movie = rng.uniform(0, 255, size=(3, 18, 32)).astype(np.float32)
    gaze_px = np.array([[0, 0], [2, -1], [-3, 2]])
    responses = spatial_responses(movie, gaze_px * screen.deg_per_px, pop, screen)
    for frame, shift in enumerate(gaze_px):
        moved = replace(pop, rf_center_deg=pop.rf_center_deg + shift * screen.deg_per_px)
        filters = gabor_pair(moved, *screen.pixel_centres_deg()).reshape(18 * 32, -1)
        direct = (movie[frame].reshape(-1) / MEAN_LUMINANCE - 1) @ filters
        assert np.allclose(responses[frame].reshape(-1), direct, rtol=1e-4, atol=1e-2)


def test_empirical_mean_of_calcium_converges_to_the_expectation():
    rng = np.random.default_rng(0)
    pop = sample_population(rng, 4, sample_retinotopy(rng), np.zeros(2), frame_period_s=1 / 30)
    rate = np.abs(np.sin(np.arange(90)[:, None] / 7.0 + np.arange(4))) * 20.0  # [T, N] Hz
    draws = np.stack([sample_calcium(rate, 1 / 30, pop, rng)[0] for _ in range(4000)])
    expected = expected_calcium(rate, 1 / 30, pop)
    standard_error = draws.std(0) / np.sqrt(draws.shape[0])
    assert draws.min() >= 0
    assert np.all(np.abs(draws.mean(0) - expected) < 5 * standard_error)
    assert np.abs((draws.mean(0) - expected) / standard_error).mean() < 1.2


def test_noise_ceiling_and_speed_of_a_default_session():
    config = SimulationConfig()
    start = time.perf_counter()
    session = simulate_session(config, 0, 0)
    elapsed = time.perf_counter() - start
    calcium = session.streams["calcium"]
    expected = session.ground_truth["expected_calcium"]
    test = _mask(session, calcium.timestamps, "test")
    ceiling = _columnwise_corr(calcium.data[test].astype(np.float64), expected[test])
    residual = (calcium.data - expected) / expected
    n_sessions = config.n_animals * config.sessions_per_animal
    print(
        f"default session simulated in {elapsed:.2f} s ({n_sessions} in the default dataset); "
        f"noise ceiling median {np.median(ceiling):.2f} "
        f"(10-90%: {np.percentile(ceiling, 10):.2f}-{np.percentile(ceiling, 90):.2f})"
    )
    assert 0.4 <= np.median(ceiling) <= 0.95
    assert abs(residual.mean()) < 0.01
    rate = session.ground_truth["rate"]
    assert 1.0 < rate.mean() < 10.0 and rate.min() > 0


def test_retinotopy_is_linear_in_cortical_position(medium):
    truth = medium.ground_truth
    predicted = medium.unit_position_um[:, :2] @ truth["retinotopy_matrix"].T
    residual = truth["rf_center_deg"] - predicted - truth["retinotopy_offset_deg"]
    assert np.sqrt((residual**2).mean()) < 3 * SimulationConfig().rf_scatter_deg
    half_width = 60.0
    assert np.all(np.abs(truth["rf_center_deg"][:, 0]) < half_width)


def test_config_rejects_unknown_fields_and_too_few_repeats():
    with pytest.raises(pydantic.ValidationError):
        SimulationConfig(n_neurons=3)
    with pytest.raises(pydantic.ValidationError):
        SimulationConfig(test_repeats=4)
    with pytest.raises(ValueError, match="out of range"):
        simulate_session(SimulationConfig.tiny(), 1, 0)
    assert SimulationConfig.model_validate_json(SimulationConfig.tiny().model_dump_json()) == (
        SimulationConfig.tiny()
    )
