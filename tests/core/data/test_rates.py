"""Estimated sampling rates: within presentations, never across gaps; event-like streams."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurofm.core.data import Interval, Session, StreamInput, write_session
from neurofm.core.data.rates import estimate_rate, presentation_rate


def _clips(rate: float, t0: float = 0.0) -> tuple[np.ndarray, list[Interval]]:
    """Three 2 s clips separated by 3 s blanks (no samples in the blanks)."""
    starts = t0 + np.array([0.0, 5.0, 10.0])
    ts = np.concatenate([s + np.arange(int(2 * rate)) / rate for s in starts])
    return ts, [Interval(start=s, end=s + 2.0, tier="train") for s in starts]


def test_gaps_between_presentations_do_not_lower_the_rate() -> None:
    ts, ivs = _clips(30.0)
    assert (ts.size - 1) / (ts[-1] - ts[0]) < 16  # what a rate over the whole span would say
    assert estimate_rate(ts, ivs) == pytest.approx(30.0, rel=1e-12)


def test_epoch_clocks_keep_a_non_integer_rate_precise() -> None:
    ts, ivs = _clips(8.1088, t0=1.5e9)
    assert estimate_rate(ts, ivs) == pytest.approx(8.1088, rel=1e-6)


def test_a_dropped_sample_is_not_a_step() -> None:
    ts = np.delete(np.arange(100) / 20.0, 50)
    assert estimate_rate(ts, [Interval(start=0, end=5, tier="train")]) == pytest.approx(20.0)


def test_event_like_streams_take_the_presentation_duration(tmp_path: Path) -> None:
    onsets = np.array([0.0, 5.0, 10.0])
    ivs = [Interval(start=s, end=s + 2.0, tier="train") for s in onsets]
    assert presentation_rate(onsets, ivs) == pytest.approx(0.5)
    frames = np.zeros((3, 4, 4), np.float32)
    calcium_t = np.arange(0, 12.0, 0.1)
    path = write_session(
        tmp_path, session_id="s", animal_id="a", species="mouse", intervals=ivs,
        streams={
            "image": StreamInput("image", frames, onsets, event_like=True),
            "running": StreamInput("running", np.zeros((calcium_t.size, 1)), calcium_t),
        },
    )  # fmt: skip
    session = Session.open(path)
    spec = session.stream_spec("image")
    assert spec.event_like and spec.sampling_rate_hz == pytest.approx(0.5)
    assert session.stream_spec("running").sampling_rate_hz == pytest.approx(10.0)
    assert session.time_range[1] == pytest.approx(12.0)  # not 10 s + a 2 s period of images
