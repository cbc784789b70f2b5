"""Heads own their metrics: evaluation reports, for each target stream, what its head asks for."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
import torch
from numpy.testing import assert_array_equal
from pydantic import Field
from torch import Tensor

from neurofm import registry
from neurofm.core.config import PluginConfig
from neurofm.core.data import open_dataset
from neurofm.core.evaluation.evaluate import evaluate
from neurofm.core.evaluation.metric_names import known_metric_names
from neurofm.core.evaluation.report import write_report
from neurofm.core.interfaces import Head
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.model.presets import default_model_config
from neurofm.errors import InvalidPluginError

WINDOW_S = 1.0
TASKS = ["responses_from_stimulus", "forecast", "behaviour_from_responses"]


class StudentTConfig(PluginConfig):
    """``unit_metrics`` / ``channel_metrics``: what the head asks evaluation to report."""

    type: Literal["tests.student_t"] = "tests.student_t"
    df: float = Field(4.0, gt=0)
    unit_metrics: tuple[str, ...] = ("single_trial_r", "fev", "r_to_expected")
    channel_metrics: tuple[str, ...] = ()


class StudentTHead(Head):
    """A third-party head: Student-t likelihood (location, log-scale), reporting its own metrics.

    Shape: raw ``[Q, C, 2]`` -> prediction ``[Q, C]``.
    """

    Config = StudentTConfig
    params_per_channel = 2

    def predict(self, raw: Tensor) -> Tensor:
        return raw[..., 0]

    def loss(self, raw: Tensor, target: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        target = torch.where(valid, target, 0.0)
        log_scale = raw[..., 1].clamp(-5.0, 5.0)
        z = (target - raw[..., 0]) / log_scale.exp()
        nll = 0.5 * (self.config.df + 1) * torch.log1p(z**2 / self.config.df) + log_scale
        return (nll * valid).sum(), valid.sum()

    def metric_names(self, per_unit: bool) -> tuple[str, ...]:
        return self.config.unit_metrics if per_unit else self.config.channel_metrics


@pytest.fixture
def student_t() -> Iterator[type[StudentTHead]]:
    registry.heads.register(StudentTHead)
    try:
        yield StudentTHead
    finally:
        registry.heads.unregister("tests.student_t")


def _model(sessions, **heads: dict):
    data = default_model_config("tiny", frame_size=(18, 32)).model_dump()
    data["heads"].update(heads)
    torch.manual_seed(0)
    return build_model(ModelConfig.model_validate(data), sessions)


def test_builtin_heads_ask_for_every_known_metric() -> None:
    for name in ("poisson", "regression"):
        cls = registry.heads.get(name)
        for per_unit in (True, False):
            head = cls(cls.Config(), d_model=8, channels=None if per_unit else 2)
            assert head.metric_names(per_unit=per_unit) == known_metric_names(per_unit)
    assert known_metric_names(per_unit=False) == ("r",)
    assert "r_to_expected" in known_metric_names(per_unit=True)


def test_a_head_gets_exactly_the_metrics_it_asks_for(
    tiny_data: Path, tmp_path: Path, student_t
) -> None:
    sessions = open_dataset(tiny_data)
    model = _model(
        sessions,
        calcium={"type": "tests.student_t"},  # single_trial_r, fev, r_to_expected
        pupil={"type": "tests.student_t"},  # nothing for a channel stream
    )
    result = evaluate(model, sessions, TASKS, window_s=WINDOW_S, progress=False)

    # repeats and ground truth: every asked metric, for the model and the LN baseline
    calcium = result.tasks["responses_from_stimulus"]["calcium"]
    asked = {"single_trial_r", "fev", "r_to_expected"}
    assert set(calcium.per_unit) == asked
    assert set(calcium.summary) == asked | {"n_neurons"}
    assert set(calcium.baselines) == {"ln"}
    assert set(calcium.baselines["ln"]) == set(calcium.summary)
    assert all(math.isfinite(calcium.summary[k]) for k in asked)
    # forecasting predicts no interval in full: only what needs no repeats
    forecast = result.tasks["forecast"]["calcium"]
    assert set(forecast.summary) == {"single_trial_r", "n_neurons"}
    assert set(forecast.baselines) == {"persistence", "mean"}
    assert all(set(b) == {"single_trial_r", "n_neurons"} for b in forecast.baselines.values())
    # the head of pupil asks for nothing; running keeps the regression head's per-channel r
    behaviour = result.tasks["behaviour_from_responses"]
    assert not behaviour["pupil"].summary and not behaviour["pupil"].per_channel
    assert not any(behaviour["pupil"].baselines.values())
    assert not behaviour["pupil"].baseline_per_channel
    assert set(behaviour["running"].summary) == {"r"} and behaviour["running"].per_channel

    write_report(result, tmp_path)
    per_neuron = json.loads((tmp_path / "per_neuron.json").read_text())
    assert set(per_neuron["responses_from_stimulus"]["calcium"]) == asked
    summary = json.loads((tmp_path / "metrics.json").read_text())["tasks"]
    assert set(summary["responses_from_stimulus"]["calcium"]["summary"]) == asked | {"n_neurons"}
    rows = (tmp_path / "table.txt").read_text().splitlines()
    assert any(r.split()[:2] == ["behaviour_from_responses", "pupil"] and "n/a" in r for r in rows)
    assert not any("FEVE" in r or "oracle" in r for r in rows)


def test_fewer_metrics_keep_the_values_and_hold_no_repeats(
    tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = open_dataset(tiny_data)
    model = _model(sessions)
    tasks = ["responses_from_stimulus"]
    kwargs = {"window_s": WINDOW_S, "progress": False, "baselines": False}  # baselines: above
    full = evaluate(model, sessions, tasks, **kwargs)
    full_calcium = full.tasks[tasks[0]]["calcium"]
    assert full.max_held_repeats > 0

    # the same model, its Poisson head asking for a subset
    subset = ("fraction_of_ceiling", "feve")
    head = model.head("calcium")
    monkeypatch.setattr(head, "metric_names", lambda per_unit: subset)
    part = evaluate(model, sessions, tasks, **kwargs)
    calcium = part.tasks[tasks[0]]["calcium"]
    assert set(calcium.per_unit) == set(subset)
    expected = {"fraction_of_mean_ceiling", "feve", "feve_all", "n_neurons_feve", "n_neurons"}
    assert set(calcium.summary) == expected
    for key in expected:  # the values of the full report (NaN where it has NaN)
        assert_array_equal(calcium.summary[key], full_calcium.summary[key], err_msg=key)
    for key in subset:
        assert_array_equal(calcium.per_unit[key], full_calcium.per_unit[key], err_msg=key)

    # no repeat metric asked: repeats are never held
    monkeypatch.setattr(head, "metric_names", lambda per_unit: ("single_trial_r",))
    plain = evaluate(model, sessions, tasks, **kwargs)
    assert plain.max_held_repeats == 0
    calcium = plain.tasks[tasks[0]]["calcium"]
    assert set(calcium.summary) == {"single_trial_r", "n_neurons"}
    assert calcium.summary["single_trial_r"] == full_calcium.summary["single_trial_r"]


@pytest.mark.parametrize(
    ("stream", "heads", "metric", "known"),
    [
        ("calcium", {"calcium": {"type": "tests.student_t", "unit_metrics": ("mae",)}}, "'mae'",
         "known for per-unit streams: single_trial_r, r_to_average, oracle_r, fev, feve, "
         "ceiling_r, fraction_of_ceiling, r_to_expected"),
        ("pupil", {"pupil": {"type": "tests.student_t", "channel_metrics": ("r", "fev")}},
         "'fev'", "known for channel streams: r."),
    ],
)  # fmt: skip
def test_an_unknown_metric_is_refused_naming_head_metric_and_known_ones(
    tiny_data: Path, student_t, stream: str, heads: dict, metric: str, known: str
) -> None:
    sessions = open_dataset(tiny_data)
    model = _model(sessions, **heads)
    with pytest.raises(InvalidPluginError) as info:
        evaluate(model, sessions, ["forecast"], window_s=WINDOW_S, progress=False)
    message = str(info.value)
    assert "head plugin 'tests.student_t'" in message
    assert f"(stream {stream!r}) asks for metric {metric}" in message
    assert known in message


def test_a_head_with_the_old_metric_names_signature_is_refused(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    model = _model(sessions)
    head = model.head("running")
    object.__setattr__(head, "metric_names", lambda: ("r",))  # metric_names(self): no per_unit
    with pytest.raises(InvalidPluginError, match=r"metric_names\(per_unit=False\) failed"):
        evaluate(model, sessions, ["forecast"], window_s=WINDOW_S, progress=False)
