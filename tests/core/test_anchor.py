"""Forecast targets start from the last visible value (``NeuroFM(anchor_targets=True)``)."""

from __future__ import annotations

import numpy as np
import torch

from neurofm.core.builder import build_model, default_model_config
from neurofm.core.data import open_dataset
from neurofm.core.data.windows import load_window
from neurofm.core.tasks import get_task
from neurofm.plugins.heads.poisson import PoissonConfig, PoissonHead
from neurofm.plugins.heads.regression import RegressionConfig, RegressionHead


def test_poisson_anchor_predicts_the_last_value_from_zero_raw_output() -> None:
    head = PoissonHead(PoissonConfig(), d_model=8, channels=None)
    last = torch.tensor([0.5, 2.0, 7.0, 3.0])
    known = torch.tensor([True, True, True, False])
    rate = head.predict(head.anchor(torch.zeros(5, 4, 1), last, known))
    torch.testing.assert_close(rate[:, :3], last[:3].expand(5, 3) + head.config.eps)
    torch.testing.assert_close(rate[:, 3], torch.nn.functional.softplus(torch.zeros(5)) + 1e-4)


def test_regression_anchor_shifts_the_mean_only() -> None:
    head = RegressionHead(RegressionConfig(likelihood="gaussian"), d_model=8, channels=2)
    raw = torch.randn(3, 2, 2)
    last, known = torch.tensor([1.5, -2.0]), torch.tensor([True, False])
    out = head.anchor(raw, last, known)
    torch.testing.assert_close(out[..., 0], raw[..., 0] + torch.tensor([1.5, 0.0]))
    torch.testing.assert_close(out[..., 1], raw[..., 1])


def _model_and_window(tiny_data):
    """A tiny model (seed 0) and the first 1 s of the first session's first train interval."""
    sessions = open_dataset(tiny_data)
    torch.manual_seed(0)
    model = build_model(default_model_config("tiny", frame_size=(18, 32)), sessions)
    iv = sessions[0].intervals("train")[0]
    return model, load_window(sessions[0], iv.start, 1.0, model.normalization())


def _outputs(tiny_data, task: str, anchor: bool):
    model, window = _model_and_window(tiny_data)
    model.anchor_targets = anchor
    model.eval()
    with torch.no_grad():
        out = model([window], [get_task(task)], np.random.default_rng(0))
    return window, {o.stream: o for o in out.targets}, model


def test_forecast_targets_are_anchored_at_the_last_visible_sample(tiny_data) -> None:
    window, plain, _ = _outputs(tiny_data, "forecast", anchor=False)
    _, anchored, model = _outputs(tiny_data, "forecast", anchor=True)
    calcium = window.streams["calcium"]
    last_visible = int(np.flatnonzero(calcium.times.numpy() < 0.5).max())
    last = calcium.values[last_visible].clamp(min=1e-3)
    # the anchor's weight decays with the time since the last visible sample
    elapsed = anchored["calcium"].times - calcium.times[last_visible]
    weight = torch.exp(-elapsed / model.anchor_log_tau["calcium"].exp())
    assert (elapsed > 0).all() and (weight < 1).all() and (weight[1:] < weight[:-1]).all()
    offset = last + torch.log(-torch.expm1(-last))
    expected = plain["calcium"].raw[..., 0] + weight[:, None] * offset
    torch.testing.assert_close(anchored["calcium"].raw[..., 0], expected)


def test_targets_without_a_visible_past_are_not_anchored(tiny_data) -> None:
    _, plain, _ = _outputs(tiny_data, "responses_from_stimulus_behaviour", anchor=False)
    _, anchored, _ = _outputs(tiny_data, "responses_from_stimulus_behaviour", anchor=True)
    torch.testing.assert_close(anchored["calcium"].raw, plain["calcium"].raw)


def test_the_anchor_time_constant_is_learned(tiny_data) -> None:
    model, window = _model_and_window(tiny_data)
    model([window], [get_task("forecast")], np.random.default_rng(0)).loss.backward()
    assert float(model.anchor_log_tau["calcium"].grad.abs()) > 0
    model.zero_grad()
    model([window], [get_task("responses_from_stimulus")], np.random.default_rng(0)).loss.backward()
    assert (
        model.anchor_log_tau["calcium"].grad is None
        or not model.anchor_log_tau["calcium"].grad.any()
    )
