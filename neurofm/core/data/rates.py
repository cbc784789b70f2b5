"""Sampling rates of streams whose source states none: estimated within presentations, never across gaps.

A stream's ``sampling_rate_hz`` is its nominal rate. When the source states it (a ``sampling_rate``
in experanto's ``meta.yml``, an NWB series' ``rate`` or ``imaging_rate``), importers keep it
exactly. Otherwise :func:`estimate_rate` measures the time between consecutive samples that lie inside the
same interval (presentation), so blank gaps between trials do not lower it.
Event-like streams (one sample per presentation, such as flashed images) have no regular clock:
their rate is one over the median duration of the presentations that hold a sample, so a sample
spans its presentation.

Example:
    >>> import numpy as np
    >>> ts = np.r_[np.arange(30) / 30, 5 + np.arange(30) / 30]   # two clips, a 4 s gap
    >>> ivs = [Interval(start=0, end=1, tier="train"), Interval(start=5, end=6, tier="train")]
    >>> round(estimate_rate(ts, ivs), 6)
    30.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from neurofm.core.data.manifest import Interval

__all__ = ["estimate_rate", "presentation_rate", "stream_rate"]


def _interval_index(ts: np.ndarray, intervals: Sequence[Interval]) -> np.ndarray:
    """For each timestamp the index of the interval holding it (-1 outside every interval)."""
    index = np.full(ts.shape[0], -1, dtype=np.int64)
    for k, iv in enumerate(sorted(intervals, key=lambda i: i.start)):
        i0, i1 = np.searchsorted(ts, [iv.start, iv.end], side="left")
        index[i0:i1] = np.where(index[i0:i1] < 0, k, index[i0:i1])
    return index


def estimate_rate(timestamps: np.ndarray, intervals: Sequence[Interval]) -> float | None:
    """Rate (Hz) from the median step between samples within the same presentation.

    The rate is one over the mean of the steps within 1.5 times that median (so gaps and dropped
    samples are left out while the clock's precision is kept); None for fewer than two samples.

    Falls back to the median over all consecutive samples when no interval holds two samples
    (e.g. a recording without presentations). Returns None for fewer than two samples.

    Shape: timestamps ``[T]`` seconds, strictly increasing.
    """
    ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    if ts.size < 2:
        return None
    diffs = np.diff(ts)
    index = _interval_index(ts, intervals)
    same = (index[1:] == index[:-1]) & (index[1:] >= 0)
    chosen = same if same.any() else np.ones_like(same)
    median = float(np.median(diffs[chosen]))
    # mean of the regular steps (a dropped sample or a gap is not one): within a run of samples it
    # telescopes to (last - first) / steps, exact even on epoch clocks where one step is imprecise
    regular = chosen & (diffs <= 1.5 * median)
    period = float(diffs[regular].sum() / regular.sum())
    return 1.0 / period if period > 0 else None


def presentation_rate(timestamps: np.ndarray, intervals: Sequence[Interval]) -> float | None:
    """One over the median duration of the presentations holding a sample of an event-like stream.

    Returns None when no interval holds a sample.
    """
    ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    index = _interval_index(ts, intervals)
    ordered = sorted(intervals, key=lambda i: i.start)
    durations = [ordered[k].end - ordered[k].start for k in np.unique(index[index >= 0])]
    return 1.0 / float(np.median(durations)) if durations else None


def stream_rate(
    timestamps: np.ndarray, intervals: Sequence[Interval], *, event_like: bool
) -> float:
    """The rate written for a stream whose source states none (1 Hz when nothing can be measured)."""
    rate = (presentation_rate if event_like else estimate_rate)(timestamps, intervals)
    return rate if rate is not None else 1.0
