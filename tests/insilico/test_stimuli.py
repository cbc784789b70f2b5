"""The built-in stimulus families: conditions, rendering conventions, parameters, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from neurofm import registry
from neurofm.insilico.stimuli import (
    Gratings,
    GratingsConfig,
    Screen,
    SparseNoise,
    SparseNoiseConfig,
    StimulusFitError,
)

SCREEN = Screen(36, 64, 120.0)


def test_both_families_are_registered_plugins() -> None:
    assert {"gratings", "sparse_noise"} <= set(registry.stimuli.list())
    assert registry.stimuli.get("gratings") is Gratings


def test_gratings_cover_the_grid_and_drift_along_their_direction() -> None:
    config = GratingsConfig(directions=4, spatial_frequencies_cpd=[0.05], contrasts=[0.5],
                            temporal_frequencies_hz=[2.0])  # fmt: skip
    gratings = Gratings(config)
    table = gratings.conditions(SCREEN)
    assert [c["direction"] for c in table] == [0.0, 90.0, 180.0, 270.0]
    assert [c["orientation"] for c in table] == [0.0, 90.0, 0.0, 90.0]
    # direction 0: luminance varies along x only; 90: along y only (y up)
    frames = gratings.frames(SCREEN, [0, 1], np.array([0.0]))
    assert np.ptp(frames[0, 0], axis=0).max() < 1e-6 and np.ptp(frames[0, 0], axis=1).min() > 0.5
    assert np.ptp(frames[1, 0], axis=1).max() < 1e-6
    assert np.abs(frames).max() == pytest.approx(0.5, abs=0.01)
    # over 1/8 of a temporal period the pattern moves 1/8 of a spatial period along +x
    period_px = 1 / (0.05 * SCREEN.deg_per_px)
    moved = gratings.frames(SCREEN, [0], np.array([0.0, 1 / 16]))[0, :, 0]  # tf 2 Hz
    shifts = np.arange(-5, 6)
    error = [np.abs(np.roll(moved[0], s)[10:-10] - moved[1][10:-10]).max() for s in shifts]
    assert shifts[int(np.argmin(error))] == round(period_px / 8)
    # the other way round: direction 180 moves towards -x
    back = gratings.frames(SCREEN, [2], np.array([0.0, 1 / 16]))[0, :, 0]
    error = [np.abs(np.roll(back[0], s)[10:-10] - back[1][10:-10]).max() for s in shifts]
    assert shifts[int(np.argmin(error))] == -round(period_px / 8)


def test_static_gratings_are_shown_at_every_phase() -> None:
    sf = 1 / (16 * SCREEN.deg_per_px)  # a period of 16 pixels
    config = GratingsConfig(directions=4, spatial_frequencies_cpd=[sf], contrasts=[1.0],
                            temporal_frequencies_hz=[0.0, 2.0], phases=4, phase_deg=10.0)  # fmt: skip
    table = Gratings(config).conditions(SCREEN)
    static = [c for c in table if c["temporal_frequency_hz"] == 0]
    drifting = [c for c in table if c["temporal_frequency_hz"] > 0]
    assert len(static) == 16 and len(drifting) == 4
    assert sorted({c["phase_deg"] for c in static}) == [10.0, 100.0, 190.0, 280.0]
    assert {c["phase_deg"] for c in drifting} == {10.0}
    # a quarter of a cycle of phase moves the bars a quarter of a spatial period along +x
    frames = Gratings(config).frames(SCREEN, [0, 4], np.zeros(1))[:, 0]  # direction 0, 10 / 100 deg
    shifts = np.arange(-6, 7)
    error = [np.abs(np.roll(frames[0], s, axis=1)[:, 10:-10] - frames[1][:, 10:-10]).max()
             for s in shifts]  # fmt: skip
    assert shifts[int(np.argmin(error))] == 4 and min(error) < 1e-5


def test_grating_parameters_by_channel_name() -> None:
    gratings = Gratings(GratingsConfig(directions=4, temporal_frequencies_hz=[1.0]))
    names = ["contrast", "direction", "phase"]
    values = gratings.parameters(names, SCREEN, [1], np.array([0.0, 0.25]))
    assert values.shape == (1, 2, 3)
    np.testing.assert_allclose(values[0, :, 1], 90.0)
    np.testing.assert_allclose(values[0, :, 2], [0.0, 90.0])  # 360 deg/s at 1 Hz
    with pytest.raises(StimulusFitError, match="not \\['speed'\\]"):
        gratings.parameters(["speed"], SCREEN, [0], np.zeros(1))


def test_sparse_noise_squares_tile_the_screen() -> None:
    noise = SparseNoise(SparseNoiseConfig(rows=3, columns=4))
    table = noise.conditions(SCREEN)
    assert len(table) == 24 and {c["polarity"] for c in table} == {1.0, -1.0}
    frames = noise.frames(SCREEN, range(12), np.zeros(2))  # the light squares
    assert frames.shape == (12, 2, 36, 64)
    np.testing.assert_allclose(frames.sum(0)[0], 1.0)  # together they cover every pixel once
    first = table[0]
    assert (first["x_px"], first["y_px"]) == (7.5, 5.5)  # the centre of pixels 0-15 x 0-11
    with pytest.raises(StimulusFitError, match="finer than the screen"):
        SparseNoise(SparseNoiseConfig(rows=40)).conditions(SCREEN)


def test_gratings_need_the_screen_in_degrees() -> None:
    with pytest.raises(StimulusFitError, match="--screen-width-deg"):
        Gratings().frames(Screen(36, 64), [0], np.zeros(1))
