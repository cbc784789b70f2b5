"""Configuration and assembly of simulated sessions (see docs/simulator.md).

A session is one continuous recording: a gray lead-in, then trials in shuffled order, each a
stimulus (movie clip, flashed images or drifting gratings; ``stimulus``) followed by a gray gap.
Train and validation trials are unique to the session; test trials are shared by every session of
the dataset and shown ``test_repeats`` times each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field

from neurofm.core.config import StrictModel
from neurofm.core.data.simulation.behaviour import BehaviourStyle, simulate_behaviour
from neurofm.core.data.simulation.gratings import direction_gain, sample_direction_tuning
from neurofm.core.data.simulation.neurons import (
    behavioural_gain,
    expected_calcium,
    firing_rate,
    sample_calcium,
    sample_population,
    sample_retinotopy,
    spatial_responses,
    stimulus_drive,
    temporal_filter,
    temporal_kernels,
)
from neurofm.core.data.simulation.stimulus_streams import stimulus_streams
from neurofm.core.data.simulation.trials import (
    SimulatedStream,
    TrialContent,
    render_schedule,
    screen_of,
    shared_test_clips,
    shared_test_trials,
)
from neurofm.core.data.simulation.trials import rng_for as _rng

__all__ = [
    "SimulatedSession",
    "SimulatedStream",
    "SimulationConfig",
    "shared_test_clips",
    "simulate_dataset",
    "simulate_session",
]

# first entries of the seed sequences, one per random stream, so streams never share draws
_ANIMAL, _NEURONS, _BEHAVIOUR, _NOISE = range(4)  # 4-6: trial content (trials.py)
_TUNING = 7
# config fields passed to ``sample_population`` under the same name
_POPULATION_KNOBS = {"fov_size_um", "rf_scatter_deg", "fraction_complex", "rate_gain_hz",
                     "running_gain", "pupil_gain", "calcium_tau_s", "noise_shape"}  # fmt: skip
# ground-truth key -> NeuronPopulation attribute
_POPULATION_TRUTH = {
    "rf_center_deg": "rf_center_deg", "rf_orientation": "orientation",
    "rf_spatial_frequency_cpd": "spatial_frequency_cpd", "rf_phase": "phase",
    "rf_sigma_deg": "sigma_deg", "is_complex": "is_complex", "behaviour_gain": "behaviour_gain",
    "threshold": "threshold", "base_rate_hz": "base_rate_hz", "rate_gain_hz": "rate_gain_hz",
    "calcium_tau_s": "calcium_tau_s", "calcium_amplitude": "calcium_amplitude",
    "calcium_baseline": "calcium_baseline", "noise_shape": "noise_shape",
    "scan_offset_s": "scan_offset_s",
}  # fmt: skip


class SimulationConfig(StrictModel):
    """Everything that determines a simulated dataset; the same config gives identical arrays."""

    seed: int = Field(0, ge=0)
    n_animals: int = Field(2, ge=1)
    sessions_per_animal: int = Field(2, ge=1)
    neurons_per_session: int = Field(64, ge=1)
    n_train_trials: int = Field(40, ge=1, description="per session, each a different clip")
    n_validation_trials: int = Field(6, ge=0)
    n_test_clips: int = Field(4, ge=0, description="shared by all sessions of the dataset")
    test_repeats: int = Field(5, ge=5, description="presentations of each test clip per session")
    trial_duration_s: float = Field(8.0, gt=0)
    gap_duration_s: float = Field(1.0, gt=0, description="gray screen before/after each trial")
    movie_rate_hz: float = Field(30.0, gt=0)
    neural_rate_hz: float = Field(30.0, gt=0)
    behaviour_rate_hz: float = Field(20.0, gt=0)
    height: int = Field(36, ge=4)
    width: int = Field(64, ge=4)
    # screen and movies
    screen_width_deg: float = Field(120.0, gt=0, description="horizontal extent; square pixels")
    spectral_exponent: float = Field(2.0, description="power spectrum 1/f^alpha of the scenes")
    scene_duration_s: tuple[float, float] = (1.0, 2.0)
    max_scene_speed_deg_s: float = Field(20.0, ge=0)
    rms_contrast: tuple[float, float] = (0.25, 0.5)
    # clocks: first sample of each stream relative to the session start
    neural_clock_offset_s: float = Field(0.011, ge=0)
    behaviour_clock_offset_s: float = Field(0.004, ge=0)
    # neurons
    fov_size_um: float = Field(500.0, gt=0)
    retinotopy_deg_per_um: float = Field(0.035, gt=0)
    rf_scatter_deg: float = Field(2.0, ge=0)
    fraction_complex: float = Field(0.4, ge=0, le=1)
    rate_gain_hz: float = Field(6.0, gt=0, description="median slope of rate vs drive")
    running_gain: float = Field(0.5, description="mean log-gain of running (saturating)")
    pupil_gain: float = Field(0.1, description="mean log-gain per 0.3 mm of pupil dilation")
    calcium_tau_s: tuple[float, float] = (0.5, 1.0)
    noise_shape: tuple[float, float] = Field((15.0, 50.0), description="Gamma shape k range")
    # stimulus kinds (movie only by default) and extra streams
    stimulus: Literal["movie", "image", "grating", "mixed"] = "movie"
    include_spikes: bool = Field(False, description="also write spike counts per neural frame")
    apply_scan_offsets: bool = Field(
        False,
        description="sample each neuron at its own time within a frame (frame time + scan offset) "
        "and write the offsets to units/time_offset_s",
    )
    image_duration_s: float = Field(0.5, gt=0, description="each flashed image, then gray")
    image_gray_s: float = Field(0.5, gt=0)
    grating_duration_s: float = Field(1.0, gt=0, description="per grating within a trial")
    grating_spatial_frequency_cpd: tuple[float, float] = (0.03, 0.06)
    grating_temporal_frequency_hz: tuple[float, float] = (1.0, 3.0)
    grating_contrast: tuple[float, float] = (0.5, 1.0)
    direction_selectivity: tuple[float, float] = (0.0, 0.6)

    @classmethod
    def tiny(cls) -> SimulationConfig:
        """1 animal x 2 sessions of 16 neurons, 2 s trials on an 18x32 screen (for unit tests)."""
        return cls(
            n_animals=1, neurons_per_session=16, n_train_trials=4, n_validation_trials=2,
            n_test_clips=2, test_repeats=5, trial_duration_s=2.0, height=18, width=32,
        )  # fmt: skip


@dataclass(frozen=True)
class SimulatedSession:
    """One simulated recording with its ground truth (see docs/simulator.md for every key)."""

    session_id: str
    animal_id: str
    species: str
    streams: dict[str, SimulatedStream]
    unit_position_um: np.ndarray  # [N, 3] float32
    unit_area: np.ndarray  # [N] '<U8'
    unit_ids: np.ndarray  # [N] int64
    intervals: list[dict]
    ground_truth: dict[str, np.ndarray]


def _single(values: np.ndarray) -> np.ndarray:
    """Float arrays as float32 (the stored precision); others copied unchanged."""
    return values.astype(np.float32) if values.dtype.kind == "f" else values.copy()


def _simulate_session(
    config: SimulationConfig, animal: int, session: int, shared: list[TrialContent]
) -> SimulatedSession:
    t0 = 1000.0 + 250.0 * animal + 50.0 * session
    screen = render_schedule(config, animal, session, shared, t0)
    movie, movie_t, intervals = screen.frames, screen.timestamps, screen.intervals
    duration = movie.shape[0] / config.movie_rate_hz

    def clock(rate: float, offset: float) -> np.ndarray:
        return t0 + offset + np.arange(int(np.floor((duration - offset) * rate))) / rate

    behaviour_t = clock(config.behaviour_rate_hz, config.behaviour_clock_offset_s)
    calcium_t = clock(config.neural_rate_hz, config.neural_clock_offset_s)
    rng = _rng(config, _BEHAVIOUR, animal, session)
    beh = simulate_behaviour(rng, behaviour_t.size, config.behaviour_rate_hz, BehaviourStyle())

    retinotopy = sample_retinotopy(_rng(config, _ANIMAL, animal), config.retinotopy_deg_per_um)
    rng = _rng(config, _NEURONS, animal, session)
    knobs = config.model_dump(include=_POPULATION_KNOBS)
    pop = sample_population(
        rng, config.neurons_per_session, retinotopy, rng.uniform(-300.0, 300.0, 2),
        frame_period_s=1.0 / config.neural_rate_hz, **knobs,
    )  # fmt: skip

    # stimulus -> filtered responses on movie frames -> linear interpolation to calcium frames
    gaze_at_frames = np.stack([np.interp(movie_t, behaviour_t, g) for g in beh.gaze.T], axis=1)
    kernels = temporal_kernels(pop, config.movie_rate_hz)
    filtered = temporal_filter(
        spatial_responses(movie, gaze_at_frames, pop, screen_of(config)), kernels
    )
    # each neuron's sample times: the frame times, or with a raster scan frame time + its offset
    offsets = pop.scan_offset_s if config.apply_scan_offsets else np.zeros(pop.scan_offset_s.size)
    sample_t = calcium_t[:, None] + offsets[None, :]  # [T, N]
    position = (sample_t - t0) * config.movie_rate_hz  # fractional movie frame index
    lo = np.clip(np.floor(position).astype(np.int64), 0, movie.shape[0] - 1)
    hi = np.minimum(lo + 1, movie.shape[0] - 1)
    frac = (position - lo)[:, None, :].astype(np.float32)  # [T, 1, N]
    cols = np.arange(lo.shape[1])[None, None, :]
    channels = np.arange(filtered.shape[1])[None, :, None]
    at = (1 - frac) * filtered[lo[:, None, :], channels, cols]
    at += frac * filtered[hi[:, None, :], channels, cols]
    on = np.zeros(calcium_t.size, dtype=bool)
    for iv in intervals:
        on |= (calcium_t >= iv["start"]) & (calcium_t < iv["end"])
    drive = stimulus_drive(at, pop, on)
    speed, pupil = (
        np.interp(sample_t.ravel(), behaviour_t, x).reshape(sample_t.shape)
        for x in (beh.speed, beh.pupil)
    )
    gain = behavioural_gain(speed, pupil, pop)
    tuning_truth = {}
    if config.stimulus in ("grating", "mixed"):
        tuning = sample_direction_tuning(
            _rng(config, _TUNING, animal, session), pop.orientation, config.direction_selectivity
        )
        frame = np.clip(np.floor((calcium_t - t0) * config.movie_rate_hz), 0, movie.shape[0] - 1)
        direction = screen.parameters[frame.astype(np.int64), 1].astype(np.float64)
        gain = gain * direction_gain(direction, tuning)
        tuning_truth = {
            "preferred_orientation_deg": np.rad2deg(pop.orientation),
            "preferred_direction_deg": tuning.preferred_direction_deg,
            "direction_selectivity": tuning.selectivity,
        }
    rate = firing_rate(drive, gain, pop)
    dt = 1.0 / config.neural_rate_hz
    calcium, spikes = sample_calcium(rate, dt, pop, _rng(config, _NOISE, animal, session))

    f32 = np.float32
    pupil_data = np.stack([beh.pupil, beh.pupil_derivative], axis=1).astype(f32)
    stimulus, stimulus_truth = stimulus_streams(config, screen)
    streams = {
        **stimulus,
        "calcium": SimulatedStream("calcium", calcium.astype(f32), calcium_t, None),
        "running": SimulatedStream("running", _single(beh.speed[:, None]), behaviour_t, ("speed",)),
        "pupil": SimulatedStream("pupil", pupil_data, behaviour_t, ("size", "size_derivative")),
        "gaze": SimulatedStream("gaze", beh.gaze.astype(f32), behaviour_t, ("x", "y")),
    }
    if config.include_spikes:
        streams["spikes"] = SimulatedStream("spikes", spikes.astype(f32), calcium_t, None)
    ground_truth = {
        "expected_calcium": expected_calcium(rate, dt, pop).astype(f32),
        "rate": rate.astype(f32),
        "spikes": spikes.astype(f32),
        "stimulus_drive": drive.astype(f32),
        "behaviour_gain_t": gain.astype(f32),
        **{key: _single(getattr(pop, name)) for key, name in _POPULATION_TRUTH.items()},
        "temporal_kernel": kernels.astype(f32),
        "running_state": beh.running.copy(),
        "retinotopy_matrix": retinotopy.matrix.astype(f32),
        "retinotopy_offset_deg": retinotopy.offset_deg.astype(f32),
        **{k: _single(v) for k, v in {**tuning_truth, **stimulus_truth}.items()},
    }
    n = config.neurons_per_session
    return SimulatedSession(
        session_id=f"sim-a{animal}-s{session}",
        animal_id=f"sim-a{animal}",
        species="mus_musculus",
        streams=streams,
        unit_position_um=pop.position_um.astype(f32),
        unit_area=np.full(n, "V1", dtype="<U8"),
        unit_ids=(animal * 1_000_000 + session * 10_000 + np.arange(n)).astype(np.int64),
        intervals=intervals,
        ground_truth=ground_truth,
    )


def simulate_session(config: SimulationConfig, animal: int, session: int) -> SimulatedSession:
    """Simulate session ``session`` of animal ``animal``; a deterministic function of its inputs."""
    if not (0 <= animal < config.n_animals and 0 <= session < config.sessions_per_animal):
        raise ValueError(
            f"animal {animal} / session {session} out of range: the config has "
            f"{config.n_animals} animals x {config.sessions_per_animal} sessions (0-based)"
        )
    return _simulate_session(config, animal, session, shared_test_trials(config))


def simulate_dataset(config: SimulationConfig) -> list[SimulatedSession]:
    """All sessions, animal-major; test clips are generated once and shared."""
    shared = shared_test_trials(config)
    return [
        _simulate_session(config, a, s, shared)
        for a in range(config.n_animals)
        for s in range(config.sessions_per_animal)
    ]
