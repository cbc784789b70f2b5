"""One normalisation, used by the data loader's windows and by the baselines alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurofm.core.baselines import ln
from neurofm.core.data import open_dataset
from neurofm.core.data.windows import load_window, normalise_stream


def _train_rows(session, name: str) -> np.ndarray:
    ts = session.stream_timestamps(name)
    inside = np.zeros(ts.shape[0], dtype=bool)
    for iv in session.intervals("train"):
        inside |= (ts >= iv.start) & (ts < iv.end)
    return np.asarray(session.stream_data(name)[inside], np.float64)


def test_zscore_gives_train_tier_mean_0_and_std_1(tiny_data: Path) -> None:
    session = open_dataset(tiny_data)[0]
    z = normalise_stream(session, "running", _train_rows(session, "running"), "zscore")
    np.testing.assert_allclose(np.nanmean(z, 0), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.nanstd(z, 0), 1.0, atol=1e-6)


def test_scale_keeps_sign_and_none_keeps_values(tiny_data: Path) -> None:
    session = open_dataset(tiny_data)[0]
    raw = _train_rows(session, "calcium")
    scaled = normalise_stream(session, "calcium", raw, "scale")
    assert np.array_equal(np.sign(scaled), np.sign(raw))
    np.testing.assert_allclose(np.nanstd(scaled, 0), 1.0, atol=1e-6)
    assert normalise_stream(session, "calcium", raw, "none") is raw


def test_float32_statistics_keep_float32_data_float32(tiny_data: Path) -> None:
    session = open_dataset(tiny_data)[0]
    raw = _train_rows(session, "pupil").astype(np.float32)
    assert normalise_stream(session, "pupil", raw, "zscore").dtype == np.float64
    assert normalise_stream(session, "pupil", raw, "zscore", dtype=np.float32).dtype == np.float32


def test_windows_are_normalised_as_the_baselines_normalise(tiny_data: Path) -> None:
    session = open_dataset(tiny_data)[0]
    norm = {"running": "zscore", "calcium": "scale"}
    t0 = float(session.intervals("train")[0].start)
    window = load_window(session, t0, 2.0, norm)
    for name, mode in norm.items():
        ts = session.stream_timestamps(name)
        rows = np.flatnonzero((ts >= t0) & (ts < t0 + 2.0))
        raw = np.asarray(session.stream_data(name)[rows], np.float32)
        expected = np.nan_to_num(normalise_stream(session, name, raw, mode, dtype=np.float32))
        assert np.array_equal(window.streams[name].values.numpy(), expected)


def test_the_baselines_former_name_is_the_same_function() -> None:
    assert ln.normalise_stream is normalise_stream
    assert "normalise_stream" in ln.__all__
