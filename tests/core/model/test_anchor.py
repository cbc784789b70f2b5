"""Forecast targets start from the last visible value (``NeuroFM(anchor_targets=True)``).

Behaviour, not formulas: a head's anchor makes a zero raw output predict the last value; in the
model the anchor's pull fades, as time passes since that value, from the head's anchored output
towards the model's free one, and a learned time constant sets how fast.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurofm.core.data import open_dataset
from neurofm.core.data.windows import load_window
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config
from neurofm.core.tokens.tasks import get_task
from neurofm.plugins.heads.poisson import PoissonConfig, PoissonHead
from neurofm.plugins.heads.regression import RegressionConfig, RegressionHead

# -- heads -----------------------------------------------------------------------------------


def test_poisson_anchor_predicts_the_last_value_from_zero_raw_output() -> None:
    head = PoissonHead(PoissonConfig(), d_model=8, channels=None)
    last = torch.tensor([0.5, 2.0, 7.0, 50.0, 3.0])
    known = torch.tensor([True, True, True, True, False])
    zero = torch.zeros(5, 5, 1)
    rate = head.predict(head.anchor(zero, last, known))
    torch.testing.assert_close(rate[:, :4], last[:4].expand(5, 4), atol=2 * head.config.eps, rtol=0)
    # a column without a visible value is predicted as without the anchor
    torch.testing.assert_close(rate[:, 4], head.predict(zero)[:, 4])


def test_poisson_anchor_keeps_raw_output_as_a_change_from_the_last_value() -> None:
    head = PoissonHead(PoissonConfig(), d_model=8, channels=None)
    last, known = torch.tensor([0.5, 4.0]), torch.tensor([True, True])
    raw = torch.linspace(-3.0, 3.0, 13)[:, None, None].expand(13, 2, 1)
    rate = head.predict(head.anchor(raw, last, known))
    assert (rate[1:] > rate[:-1]).all()  # strictly increasing in the raw output
    assert (rate[raw[:, 0, 0] > 0] > last).all() and (rate[raw[:, 0, 0] < 0] < last).all()


def test_poisson_anchor_of_a_silent_or_negative_value_is_finite_and_near_zero() -> None:
    head = PoissonHead(PoissonConfig(), d_model=8, channels=None)
    last, known = torch.tensor([0.0, -1.0]), torch.tensor([True, True])
    anchored = head.anchor(torch.zeros(3, 2, 1), last, known)
    assert torch.isfinite(anchored).all()
    rate = head.predict(anchored)
    assert (rate > 0).all() and (rate < 0.01).all()


def test_regression_anchor_shifts_the_mean_only() -> None:
    head = RegressionHead(RegressionConfig(likelihood="gaussian"), d_model=8, channels=2)
    last, known = torch.tensor([1.5, -2.0]), torch.tensor([True, False])
    raw = torch.randn(3, 2, 2)
    anchored = head.anchor(raw, last, known)
    zero = torch.zeros(3, 2, 2)
    # from a zero raw output: the last value where it is known, the free prediction elsewhere
    torch.testing.assert_close(
        head.predict(head.anchor(zero, last, known)), torch.tensor([1.5, 0.0]).expand(3, 2)
    )
    # a change of the raw mean moves the anchored mean by as much; the variance is untouched
    torch.testing.assert_close(
        head.predict(anchored) - head.predict(head.anchor(zero, last, known)), head.predict(raw)
    )
    torch.testing.assert_close(head.predict_variance(anchored), head.predict_variance(raw))


# -- the model -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_and_window(tiny_data):
    """A tiny model (seed 0, eval mode) and the first 1 s of the first session's first train
    interval."""
    sessions = open_dataset(tiny_data)
    torch.manual_seed(0)
    model = build_model(default_model_config("tiny", frame_size=(18, 32)), sessions)
    model.eval()
    iv = sessions[0].intervals("train")[0]
    return model, load_window(sessions[0], iv.start, 1.0, model.normalization())


def _calcium(model, window, task: str, *, anchor: bool, tau_s: float | None = None):
    """The calcium target output of one forward pass, with the anchor on or off and, if given,
    every stream's anchor time constant set to ``tau_s`` seconds (restored afterwards)."""
    saved = {k: v.detach().clone() for k, v in model.anchor_log_tau.items()}
    model.anchor_targets = anchor
    try:
        with torch.no_grad():
            if tau_s is not None:
                for p in model.anchor_log_tau.values():
                    p.fill_(math.log(tau_s))
            out = model([window], [get_task(task)], np.random.default_rng(0))
    finally:
        model.anchor_targets = True
        with torch.no_grad():
            for k, v in saved.items():
                model.anchor_log_tau[k].copy_(v)
    return {o.stream: o for o in out.targets}["calcium"]


def _last_visible(window):
    """Index and values of the calcium sample just before the forecast (its first half shown)."""
    calcium = window.streams["calcium"]
    at = int(np.flatnonzero(calcium.times.numpy() < 0.5).max())
    return at, calcium.values[at]


def test_with_a_long_time_constant_the_forecast_starts_from_the_last_visible_value(
    model_and_window,
) -> None:
    model, window = model_and_window
    free = _calcium(model, window, "forecast", anchor=False)
    held = _calcium(model, window, "forecast", anchor=True, tau_s=1e9)
    _, last = _last_visible(window)
    known = torch.ones_like(last, dtype=torch.bool)
    # the model hands its head the last visible value, at full weight when no time has passed
    head = model.head("calcium")
    torch.testing.assert_close(held.raw, head.anchor(free.raw, last, known))
    # so a model whose free output is zero predicts persistence: the last value at every time
    rate = head.predict(head.anchor(torch.zeros_like(free.raw), last, known))
    nonzero = last > 0.01
    torch.testing.assert_close(
        rate[:, nonzero], last[nonzero].expand(rate.shape[0], -1), atol=1e-3, rtol=1e-4
    )


def test_the_anchor_fades_towards_the_free_prediction_as_time_passes(model_and_window) -> None:
    model, window = model_and_window
    free = _calcium(model, window, "forecast", anchor=False).raw[..., 0]
    held = _calcium(model, window, "forecast", anchor=True, tau_s=1e9).raw[..., 0]
    anchored = _calcium(model, window, "forecast", anchor=True)
    at, _ = _last_visible(window)
    assert (anchored.times > window.streams["calcium"].times[at]).all()
    pull = held - free
    columns = pull.abs().min(0).values > 1e-3
    assert columns.sum() >= 2
    # the share of the anchor's pull kept at each target time, per column
    kept = ((anchored.raw[..., 0] - free) / pull)[:, columns]
    assert ((kept > 0) & (kept < 1)).all()  # between the free and the fully anchored output
    assert (kept[1:] < kept[:-1]).all()  # fading monotonically with time since the last value
    # the fade depends on time alone, not on the column or its value
    torch.testing.assert_close(kept, kept[:, :1].expand_as(kept), atol=1e-4, rtol=1e-4)
    # a longer time constant keeps more of the anchor at every time; a vanishing one none
    slower = _calcium(model, window, "forecast", anchor=True, tau_s=100.0).raw[..., 0]
    assert (((slower - free) / pull)[:, columns] > kept).all()
    gone = _calcium(model, window, "forecast", anchor=True, tau_s=1e-9)
    torch.testing.assert_close(gone.raw[..., 0], free)


def test_targets_without_a_visible_past_are_not_anchored(model_and_window) -> None:
    model, window = model_and_window
    task = "responses_from_stimulus_behaviour"
    free = _calcium(model, window, task, anchor=False)
    anchored = _calcium(model, window, task, anchor=True, tau_s=1e9)
    torch.testing.assert_close(anchored.raw, free.raw)


def test_the_anchor_time_constant_is_learned(model_and_window) -> None:
    model, window = model_and_window
    model.zero_grad()
    model([window], [get_task("forecast")], np.random.default_rng(0)).loss.backward()
    assert float(model.anchor_log_tau["calcium"].grad.abs()) > 0
    model.zero_grad()
    model([window], [get_task("responses_from_stimulus")], np.random.default_rng(0)).loss.backward()
    assert (
        model.anchor_log_tau["calcium"].grad is None
        or not model.anchor_log_tau["calcium"].grad.any()
    )
    model.zero_grad()
