"""``neurofm evaluate`` on a trained tiny checkpoint: every preset, model beside its baselines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.core.cli import main
from neurofm.core.commands.train import train_and_save
from neurofm.core.data import open_dataset
from neurofm.core.data.manifest import Interval
from neurofm.core.evaluation.evaluate import stimulus_order
from neurofm.core.model.presets import default_model_config
from neurofm.core.tokens.tasks import PRESETS
from neurofm.core.training.config import TrainingConfig


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_evaluate_cli_runs_every_preset_with_baselines(tiny_data: Path, tmp_path: Path,
                                                       one_thread, capsys) -> None:  # fmt: skip
    sessions = open_dataset(tiny_data)
    config = default_model_config("tiny", frame_size=(18, 32))
    training = TrainingConfig(steps=10, batch_size=4, warmup_steps=2, eval_every=10, device="cpu")
    train_and_save(config, sessions, training, 1.0, tmp_path / "ckpt", progress=False)
    out = tmp_path / "report"
    code = main(["evaluate", str(tmp_path / "ckpt"), "--data", str(tiny_data),
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    table = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())["tasks"]
    assert set(metrics) == set(PRESETS)
    for name in ("traces.png", "r_histogram.png", "model_vs_baselines.png", "table.txt"):
        assert (out / name).stat().st_size > 0
    stim = metrics["responses_from_stimulus_behaviour"]["calcium"]
    for key in ("single_trial_r", "r_to_average", "oracle_r", "feve", "ceiling_r"):
        assert np.isfinite(stim["summary"][key]), key
    assert np.isfinite(stim["baselines"]["ln"]["single_trial_r"])
    assert stim["summary"]["ceiling_r"] > 0.3  # ground truth from the simulator
    forecast = metrics["causal_50_stimulus_behaviour"]["calcium"]
    assert {"persistence", "mean"} <= set(forecast["baselines"])
    decode = metrics["behaviour_from_responses"]["running"]
    assert "speed" in decode["per_channel"] and "speed" in decode["baseline_per_channel"]["ln"]
    assert "persistence" in table and "ln" in table and "causal_50" in table


def test_windows_are_visited_stimulus_by_stimulus() -> None:
    """Repeats interleaved in the schedule are regrouped, so at most one stimulus is held."""
    ivs = [Interval(start=10 * k, end=10 * k + 4, tier="test", stimulus_id=f"s{k % 3}")
           for k in range(9)]  # fmt: skip
    windows = [(iv.start + j, k) for k, iv in enumerate(ivs) for j in range(2)]
    ordered = stimulus_order(windows, ivs)
    stimuli = [ivs[k].stimulus_id for _, k in ordered]
    assert stimuli == ["s0"] * 6 + ["s1"] * 6 + ["s2"] * 6
    assert sorted(ordered) == sorted(windows)
