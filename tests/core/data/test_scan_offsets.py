"""Scan-phase offsets: the simulator can sample each neuron at its own time; windows expose them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurofm.core.data import open_dataset
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig, simulate_session
from neurofm.core.data.windows import load_window


def _config(**update) -> SimulationConfig:
    small = dict(sessions_per_animal=1, n_train_trials=2, n_validation_trials=1, n_test_clips=1)
    return SimulationConfig.tiny().model_copy(update=small | update)


def test_applied_offsets_move_each_neurons_samples_and_default_is_unchanged() -> None:
    plain = simulate_session(_config(), 0, 0)
    shifted = simulate_session(_config(apply_scan_offsets=True), 0, 0)
    offsets = plain.ground_truth["scan_offset_s"]
    assert offsets.max() > 0.01  # a raster scan spreads the neurons over the frame
    drive_plain, drive_shifted = (
        plain.ground_truth["stimulus_drive"],
        shifted.ground_truth["stimulus_drive"],
    )
    late = offsets > 0.5 / 30
    assert not np.allclose(drive_plain[:, late], drive_shifted[:, late])
    # a neuron sampled later within the frame is closer to the next frame's drive than the plain one
    nxt = drive_plain[1:, late]
    err_shifted = np.abs(drive_shifted[:-1, late] - nxt).mean()
    err_plain = np.abs(drive_plain[:-1, late] - nxt).mean()
    assert err_shifted < err_plain
    np.testing.assert_array_equal(plain.streams["movie"].data, shifted.streams["movie"].data)


def test_written_offsets_reach_the_window(tmp_path: Path) -> None:
    simulate_to_disk(tmp_path / "d", _config(apply_scan_offsets=True), progress=False)
    (session,) = open_dataset(tmp_path / "d")
    truth = session.ground_truth("scan_offset_s")
    np.testing.assert_allclose(session.units.time_offset_s, truth, rtol=1e-6)
    iv = session.intervals("train")[0]
    sample = load_window(session, iv.start, 1.0, {"calcium": "scale"})
    np.testing.assert_allclose(sample.unit_time_offset_s.numpy(), truth, rtol=1e-6)
    simulate_to_disk(tmp_path / "plain", _config(), progress=False)
    (plain,) = open_dataset(tmp_path / "plain")
    assert plain.units.time_offset_s is None
    assert load_window(plain, iv.start, 1.0, {"calcium": "scale"}).unit_time_offset_s is None
