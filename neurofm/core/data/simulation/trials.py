"""What is on the screen during a session: trial content and its schedule (see docs/simulator.md).

A session is a gray lead-in, then trials in shuffled order, each followed by a gray gap. A trial
shows one kind of stimulus: a natural-like ``movie`` clip, flashed ``image`` presentations or
drifting ``grating`` segments (``stimulus="mixed"`` cycles through the three by trial index).
Test trials are shared by every session of the dataset and shown ``test_repeats`` times each.

The screen is always rendered frame by frame at the movie rate (the neurons see frames); which
streams describe it is decided in :mod:`~neurofm.core.data.simulation.stimulus_streams`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from neurofm.core.data.simulation.gratings import (
    GRATING_CHANNELS,
    flashed_image,
    grating_segments,
)
from neurofm.core.data.simulation.stimulus import (
    MEAN_LUMINANCE,
    MovieStyle,
    ScreenGeometry,
    natural_movie_clip,
)

if TYPE_CHECKING:
    from neurofm.core.data.simulation.dataset import SimulationConfig

__all__ = [
    "KINDS",
    "ScreenSchedule",
    "SimulatedStream",
    "TrialContent",
    "render_schedule",
    "rng_for",
    "screen_of",
    "shared_test_clips",
    "shared_test_trials",
]

KINDS = ("movie", "image", "grating")
# first entries of the seed sequences of trial content (kept from the original movie-only layout)
SESSION_CLIP, TEST_CLIP, SCHEDULE = 5, 6, 4


@dataclass(frozen=True)
class SimulatedStream:
    """One time series. Shapes: data ``[T, ...]`` float32; timestamps ``[T]`` float64 seconds."""

    modality: str
    data: np.ndarray
    timestamps: np.ndarray
    channel_names: tuple[str, ...] | None


@dataclass(frozen=True)
class TrialContent:
    """One trial's screen. Shapes: frames ``[F, H, W]`` luminance; parameters ``[F, 6]`` grating
    parameters per frame (grating trials, else None); onsets ``[K]`` frame offsets of the image
    presentations with their ``image_ids [K]`` (image trials; a gray presentation follows each)."""

    kind: str
    frames: np.ndarray
    parameters: np.ndarray | None = None
    onsets: np.ndarray | None = None
    image_ids: np.ndarray | None = None


@dataclass(frozen=True)
class ScreenSchedule:
    """A session's screen at the movie rate and what was shown when.

    Shapes: frames ``[T, H, W]``; timestamps ``[T]``; kind ``[T]`` index into ``KINDS`` of the
    trial a frame belongs to (a trial owns its following gap; -1 for the lead-in);
    parameters ``[T, 6]`` grating parameters (contrast 0 on gray, NaN where undefined);
    presentation onsets ``[K]`` frame indices with ``image_ids [K]`` (-1: gray).
    """

    frames: np.ndarray
    timestamps: np.ndarray
    intervals: list[dict]
    kind: np.ndarray
    parameters: np.ndarray
    onsets: np.ndarray
    image_ids: np.ndarray


def rng_for(config: SimulationConfig, *key: int) -> np.random.Generator:
    """The random stream of ``(seed, *key)``."""
    return np.random.default_rng(np.random.SeedSequence([config.seed, *key]))


def screen_of(config: SimulationConfig) -> ScreenGeometry:
    return ScreenGeometry(config.height, config.width, config.screen_width_deg)


def _trial_kind(config: SimulationConfig, index: int) -> str:
    return KINDS[index % 3] if config.stimulus == "mixed" else config.stimulus


def _content(
    config: SimulationConfig, kind: str, rng: np.random.Generator, id0: int
) -> TrialContent:
    n_frames = round(config.trial_duration_s * config.movie_rate_hz)
    screen, rate = screen_of(config), config.movie_rate_hz
    if kind == "movie":
        style = MovieStyle(
            spectral_exponent=config.spectral_exponent,
            scene_duration_s=config.scene_duration_s,
            max_speed_deg_s=config.max_scene_speed_deg_s,
            rms_contrast=config.rms_contrast,
        )
        return TrialContent(kind, natural_movie_clip(rng, n_frames, screen, rate, style))
    if kind == "grating":
        frames, params = grating_segments(
            rng, n_frames, screen, rate, config.grating_duration_s,
            sf_cpd=config.grating_spatial_frequency_cpd,
            tf_hz=config.grating_temporal_frequency_hz, contrast=config.grating_contrast,
        )  # fmt: skip
        return TrialContent(kind, frames, parameters=params)
    on = max(1, round(config.image_duration_s * rate))
    period = on + max(1, round(config.image_gray_s * rate))
    onsets = np.arange(0, n_frames, period)
    frames = np.full((n_frames, config.height, config.width), MEAN_LUMINANCE, dtype=np.float32)
    for k in onsets:
        image = flashed_image(rng, screen, config.spectral_exponent, config.rms_contrast)
        frames[k : k + on] = image
    ids = id0 + np.arange(onsets.size, dtype=np.int64)
    return TrialContent(kind, frames, onsets=onsets, image_ids=ids)


def shared_test_trials(config: SimulationConfig) -> list[TrialContent]:
    """The shared test trials of the dataset (same content in every session)."""
    return [
        _content(config, _trial_kind(config, i), rng_for(config, TEST_CLIP, i), 1000 * i)
        for i in range(config.n_test_clips)
    ]


def shared_test_clips(config: SimulationConfig) -> list[np.ndarray]:
    """The shared test clips (screen frames) of the dataset, each ``[T_trial, H, W]`` float32."""
    return [t.frames for t in shared_test_trials(config)]


def _schedule(config: SimulationConfig, animal: int, session: int) -> list[tuple[str, str, int]]:
    """Presentation order: (tier, stimulus_id, index within its tier), shuffled."""
    tag = f"a{animal}-s{session}"
    trials = [("train", f"train-{tag}-{i:03d}", i) for i in range(config.n_train_trials)]
    trials += [
        ("validation", f"validation-{tag}-{i:03d}", i) for i in range(config.n_validation_trials)
    ]
    trials += [
        ("test", f"test-{i:03d}", i)
        for i in range(config.n_test_clips)
        for _ in range(config.test_repeats)
    ]
    order = rng_for(config, SCHEDULE, animal, session).permutation(len(trials))
    return [trials[k] for k in order]


def render_schedule(
    config: SimulationConfig, animal: int, session: int, shared: list[TrialContent], t0: float
) -> ScreenSchedule:
    """The screen of one session, frame by frame, with its trial intervals."""
    rate = config.movie_rate_hz
    n_gap, n_trial = round(config.gap_duration_s * rate), round(config.trial_duration_s * rate)
    schedule = _schedule(config, animal, session)
    n_movie = n_gap + len(schedule) * (n_trial + n_gap)
    movie = np.empty((n_movie, config.height, config.width), dtype=np.float32)
    movie[:n_gap] = MEAN_LUMINANCE  # gray lead-in; each trial's gap is filled below
    movie_t = t0 + np.arange(n_movie) / rate
    kind = np.full(n_movie, -1, dtype=np.int64)
    params = np.full((n_movie, len(GRATING_CHANNELS)), np.nan, dtype=np.float32)
    contrast = GRATING_CHANNELS.index("contrast")
    params[:n_gap, contrast] = 0.0
    onsets, ids, intervals = [0], [-1], []
    for k, (tier, stimulus_id, index) in enumerate(schedule):
        first = n_gap + k * (n_trial + n_gap)
        if tier == "test":
            content = shared[index]
        else:
            key = (SESSION_CLIP, animal, session, int(tier == "validation"), index)
            id0 = 10**7 * (1 + int(tier == "validation")) + 10**5 * (animal * 10 + session)
            trial_kind = _trial_kind(config, index)
            content = _content(config, trial_kind, rng_for(config, *key), id0 + 100 * index)
        own = slice(first, first + n_trial + n_gap)
        movie[first : first + n_trial] = content.frames
        movie[first + n_trial : own.stop] = MEAN_LUMINANCE
        kind[own] = KINDS.index(content.kind)
        if content.parameters is not None:
            params[own, contrast] = 0.0
            params[first : first + n_trial] = content.parameters
        if content.onsets is not None:
            on = max(1, round(config.image_duration_s * rate))
            for onset, image_id in zip(content.onsets, content.image_ids, strict=True):
                onsets += [first + onset, first + min(onset + on, n_trial)]
                ids += [int(image_id), -1]
        start = float(movie_t[first])
        end = start + n_trial / rate
        intervals.append(dict(start=start, end=end, tier=tier, stimulus_id=stimulus_id, trial=k))
    onset_array = np.asarray(onsets, dtype=np.int64)
    order = np.unique(onset_array, return_index=True)[1]  # first of duplicates (gray lead-in)
    return ScreenSchedule(
        movie, movie_t, intervals, kind, params, onset_array[order], np.asarray(ids)[order]
    )
