"""Overlapping evaluation windows: tiling, and each time scored from the window it is central in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.core.data import open_dataset
from neurofm.core.data.windows import tile_intervals
from neurofm.core.evaluation.evaluate import evaluate, whole_window_task
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config
from neurofm.core.tokens.tasks import PRESETS

WINDOW_S = 1.0


@pytest.mark.parametrize("context", [0.0, 0.25, 0.5, 0.9])
def test_tiling_covers_each_interval_with_the_requested_overlap(tiny_data: Path, context) -> None:
    session = open_dataset(tiny_data)[0]
    tiles = tile_intervals(session, "test", WINDOW_S, context=context)
    for index, iv in enumerate(session.intervals("test")):
        starts = [t0 for t0, i in tiles if i == index]
        assert starts[0] == pytest.approx(iv.start)
        assert starts[-1] + WINDOW_S == pytest.approx(iv.end)  # the last window ends at the end
        gaps = np.diff(starts)
        assert np.all(gaps <= WINDOW_S - context + 1e-9)  # no gap larger than the stride
        assert np.allclose(gaps[:-1], WINDOW_S - context)  # only the last one may be shorter
        assert len(starts) == len(set(starts))


def test_tiling_refuses_a_context_as_long_as_the_window(tiny_data: Path) -> None:
    session = open_dataset(tiny_data)[0]
    for context in (-0.1, WINDOW_S, 2 * WINDOW_S):
        with pytest.raises(ValueError, match="shorter than the window"):
            tile_intervals(session, "test", WINDOW_S, context=context)


def test_whole_window_tasks() -> None:
    whole = {name for name, task in PRESETS.items() if whole_window_task(task)}
    assert "responses_from_stimulus_behaviour" in whole
    assert "behaviour_from_responses" in whole and "population_8" in whole
    assert not any(name.startswith(("forecast", "causal")) for name in whole)


class _Replayed:
    """A model whose neural predictions are the recorded responses themselves where ``good``
    (times since the window start ``[Q]`` -> bool) holds and the time-reversed recording
    elsewhere: a stand-in for a model that is right only away from a window's edges."""

    def __init__(self, model, good) -> None:
        self.model, self.good = model, good

    def __call__(self, batch, tasks, rng):
        out = self.model(batch, tasks, rng)
        for target in out.targets:
            if target.units is None:
                continue
            y = target.target.clamp(min=1e-2)
            value = torch.where(self.good(target.times)[:, None], y, y.flip(0))
            target.raw = torch.log(torch.expm1(value))[..., None]  # softplus^-1
        return out

    def __getattr__(self, name):
        return getattr(self.model, name)


def _single_trial_r(model, sessions, context_s: float) -> float:
    result = evaluate(model, sessions, ["responses_from_stimulus_behaviour"], window_s=WINDOW_S,
                      context_s=context_s, progress=False, baselines=False)  # fmt: skip
    return result.tasks["responses_from_stimulus_behaviour"]["calcium"].summary["single_trial_r"]


def test_each_time_is_scored_from_the_window_it_is_central_in(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    torch.manual_seed(0)
    base = build_model(default_model_config("tiny", frame_size=(18, 32)), sessions)
    quarter = WINDOW_S / 4 - 1e-3

    def central(times):
        return (times >= quarter) & (times < WINDOW_S - quarter)

    def everywhere(times):
        return torch.ones_like(times, dtype=torch.bool)

    exact = _Replayed(base, everywhere)
    assert _single_trial_r(exact, sessions, 0.5) == pytest.approx(1.0, abs=1e-3)
    assert _single_trial_r(exact, sessions, 0.0) == pytest.approx(1.0, abs=1e-3)
    centred = _Replayed(base, central)
    overlapping, side_by_side = (_single_trial_r(centred, sessions, c) for c in (0.5, 0.0))
    # side by side, half of every window is its edges; overlapping by half a window, only the
    # first and last quarter window of each interval is scored from an edge
    assert overlapping > side_by_side + 0.15
    assert overlapping > 0.8


def test_evaluate_refuses_a_context_as_long_as_the_window(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    model = build_model(default_model_config("tiny", frame_size=(18, 32)), sessions)
    with pytest.raises(ValueError, match="shorter than the window"):
        evaluate(model, sessions, ["forecast"], window_s=WINDOW_S, context_s=WINDOW_S,
                 progress=False)  # fmt: skip
