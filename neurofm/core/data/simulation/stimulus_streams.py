"""Which streams describe the screen of a simulated session (see docs/simulator.md).

- ``movie`` (movie trials): every frame ``[T, H, W]``; with ``stimulus="mixed"`` frames of other
  trials are NaN (absent), never a made-up value.
- ``image`` (image trials): one frame per presentation ``[K, H, W]`` at its onset, gray
  presentations included; ground truth ``image_id [K]`` (-1 gray, -2 a NaN marker that ends the
  last gray presentation where another kind of trial begins, ``mixed`` only).
- ``parametric`` (grating trials): grating parameters ``[T, 6]`` at the movie rate; contrast 0
  and the other parameters NaN on a gray screen; all NaN during other trials (``mixed``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from neurofm.core.data.simulation.gratings import GRATING_CHANNELS
from neurofm.core.data.simulation.trials import KINDS, ScreenSchedule, SimulatedStream

if TYPE_CHECKING:
    from neurofm.core.data.simulation.dataset import SimulationConfig

__all__ = ["stimulus_streams"]


def _trial_starts(schedule: ScreenSchedule) -> np.ndarray:
    starts = [iv["start"] for iv in schedule.intervals]
    return np.searchsorted(schedule.timestamps, np.asarray(starts) - 1e-9)


def stimulus_streams(
    config: SimulationConfig, schedule: ScreenSchedule
) -> tuple[dict[str, SimulatedStream], dict[str, np.ndarray]]:
    """The stimulus streams of a session and their ground truth (``image_id``)."""
    mixed = config.stimulus == "mixed"
    used = set(KINDS) if mixed else {config.stimulus}
    t, kind = schedule.timestamps, schedule.kind
    streams: dict[str, SimulatedStream] = {}
    truth: dict[str, np.ndarray] = {}
    if "movie" in used:
        movie = schedule.frames
        if mixed:
            movie = movie.copy()
            movie[(kind >= 0) & (kind != KINDS.index("movie"))] = np.nan
        streams["movie"] = SimulatedStream("movie", movie, t, None)
    if "image" in used:
        onsets, ids = schedule.onsets, schedule.image_ids
        frames = schedule.frames[onsets]
        if mixed:
            starts = _trial_starts(schedule)
            ends = starts[kind[starts] != KINDS.index("image")]
            onsets = np.concatenate([onsets, ends])
            ids = np.concatenate([ids, np.full(ends.size, -2, dtype=ids.dtype)])
            nan = np.full((ends.size, *frames.shape[1:]), np.nan, dtype=np.float32)
            frames = np.concatenate([frames, nan])
            order = np.argsort(onsets, kind="stable")
            onsets, ids, frames = onsets[order], ids[order], frames[order]
        streams["image"] = SimulatedStream("image", frames, t[onsets], None)
        truth["image_id"] = ids.astype(np.int64)
    if "grating" in used:
        streams["parametric"] = SimulatedStream(
            "parametric", schedule.parameters, t, GRATING_CHANNELS
        )
    return streams, truth
