"""The report's files agree with each other: one fraction of the noise ceiling, as in the table."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from neurofm.core.evaluation.accumulate import PredictorState, StreamMetrics, finish, pool
from neurofm.core.evaluation.evaluate import EvaluationResult
from neurofm.core.evaluation.report import BASELINES, write_report

TASK, STREAM = "responses_from_stimulus", "calcium"


def _stream_metrics(seed: int = 0) -> StreamMetrics:
    """Model and ``ln`` metrics of 8 neurons (noise growing across them, so the per-neuron ratios
    differ) over 3 stimuli of 4 repeats, pooled and finished as ``evaluate`` does."""
    rng = np.random.default_rng(seed)
    n_time, n_neurons, n_repeats = 40, 8, 4
    noise = np.linspace(0.3, 3.0, n_neurons)
    states = {"model": PredictorState(per_unit=True), "ln": PredictorState(per_unit=True)}
    for stimulus in range(3):
        expected = rng.normal(size=(n_time, n_neurons))
        for repeat in range(n_repeats):
            recorded = expected + noise * rng.normal(size=(n_time, n_neurons))
            predictions = {
                "model": expected + 0.5 * rng.normal(size=(n_time, n_neurons)),
                "ln": 0.3 * expected + rng.normal(size=(n_time, n_neurons)),
            }
            for name, state in states.items():
                state.add_interval(predictions[name], recorded, expected, f"s{stimulus}",
                                   last_repeat=repeat == n_repeats - 1)  # fmt: skip
    metrics = StreamMetrics()
    for name, state in states.items():
        pooled: dict = defaultdict(list)
        channel_r: dict = defaultdict(list)
        pool(state, None, pooled, channel_r)
        summary, per_unit, _ = finish(pooled, channel_r)
        if name == "model":
            metrics.summary, metrics.per_unit = summary, per_unit
        else:
            metrics.baselines[name] = summary
    return metrics


def _fraction_keys(summary: dict) -> list[str]:
    return [k for k in summary if "fraction" in k.lower() and "ceiling" in k.lower()]


def test_metrics_json_holds_one_fraction_of_ceiling_equal_to_the_table(tmp_path: Path) -> None:
    result = EvaluationResult(tasks={TASK: {STREAM: _stream_metrics()}})
    write_report(result, tmp_path)
    stream = json.loads((tmp_path / "metrics.json").read_text())["tasks"][TASK][STREAM]
    per_neuron = json.loads((tmp_path / "per_neuron.json").read_text())[TASK][STREAM]
    rows = [re.split(r"\s{2,}", line) for line in (tmp_path / "table.txt").read_text().splitlines()]
    (row,) = [r for r in rows if len(r) > 2 and r[2] == "r / ceiling"]
    table = dict(zip(("model", *BASELINES), row[3:], strict=False))

    for name, summary in [("model", stream["summary"]), ("ln", stream["baselines"]["ln"])]:
        assert _fraction_keys(summary) == ["fraction_of_mean_ceiling"], name
        assert f"{summary['fraction_of_mean_ceiling']:.3f}" == table[name]

    # the model's figure is mean r over mean ceiling, which here is not the mean of the ratios
    r, ceiling = np.array(per_neuron["single_trial_r"]), np.array(per_neuron["ceiling_r"])
    fraction = stream["summary"]["fraction_of_mean_ceiling"]
    assert fraction == pytest.approx(r.mean() / ceiling.mean())
    assert abs(fraction - np.mean(per_neuron["fraction_of_ceiling"])) > 1e-3
    # the per-neuron ratio stays available per neuron only
    np.testing.assert_allclose(per_neuron["fraction_of_ceiling"], r / ceiling)
