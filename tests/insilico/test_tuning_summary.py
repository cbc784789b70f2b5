"""How tuning curves are read from responses: static gratings at their best phase, orientation
from the best condition, direction from the best drifting one."""

from __future__ import annotations

import numpy as np

from neurofm.insilico.stimuli import Gratings, GratingsConfig, Screen
from neurofm.insilico.tuning import _summarise, best_over_phases

SCREEN = Screen(36, 64, 120.0)


def test_phases_merge_into_one_condition_at_the_largest_response() -> None:
    table = [{"direction": 0.0, "phase_deg": p} for p in (0.0, 90.0, 180.0)]
    table += [{"direction": 90.0, "phase_deg": p} for p in (0.0, 90.0, 180.0)]
    a = np.array([[1.0], [5.0], [2.0], [0.0], [-1.0], [3.0]])
    merged, (best,) = best_over_phases(table, a)
    assert merged == [{"direction": 0.0}, {"direction": 90.0}]
    np.testing.assert_array_equal(best, [[5.0], [3.0]])
    no_phase = [{"direction": 0.0}]
    assert best_over_phases(no_phase, a[:1]) == (no_phase, [a[:1]])


def test_orientation_from_the_best_phase_and_direction_from_motion() -> None:
    """A simple cell of orientation 60 deg: static gratings drive it only at one phase (the mean
    over phases would blur it), the drifting ones weakly and more in one direction of motion."""
    config = GratingsConfig(directions=12, spatial_frequencies_cpd=[0.05], contrasts=[1.0],
                            temporal_frequencies_hz=[0.0, 2.0], phases=4)  # fmt: skip
    table = Gratings(config).conditions(SCREEN)
    responses = np.zeros((len(table), 1))
    for i, c in enumerate(table):
        tuned = np.cos(np.deg2rad(2 * (c["orientation"] - 60.0))) + 1  # peak at 60 and 240 deg
        if c["temporal_frequency_hz"] == 0:
            responses[i] = 3 * tuned * (c["phase_deg"] == 90.0)
        else:
            responses[i] = tuned * (1.5 if c["direction"] == 240.0 else 1.0)
    result = _summarise(table, responses, np.array([0]))
    assert len(result.conditions) == 24 and "phase_deg" not in result.conditions[0]
    assert abs(result.preferred_orientation_deg[0] - 60.0) < 1.0
    assert result.orientation_curves[0].max() == 6.0  # the static grating at its best phase
    assert result.direction_curves[0].max() == 3.0  # the drifting grating moving at 240 deg
    assert abs(result.preferred_direction_deg[0] - 240.0) < 20.0 and result.dsi[0] > 0.15
