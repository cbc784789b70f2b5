"""The command line: demo, simulate, train and evaluate, run in-process through ``main``."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from neurofm.core.cli import main

TASKS = (
    "responses_from_stimulus_behaviour",
    "behaviour_from_responses",
    "forecast",
)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``neurofm demo --quick`` run once for the module: (output folder, what it printed)."""
    out = tmp_path_factory.mktemp("demo") / "run"
    code, stdout, stderr = _run(["demo", "--quick", "--out", str(out)])
    assert code == 0, stderr
    return out, stdout


@pytest.mark.slow
def test_demo_trains_the_model_before_the_stimulus_path_to_a_time_budget(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["demo", "--quick", "--no-stimulus-path", "--minutes", "1e-5", "--out", str(out)]
    code, stdout, stderr = _run(argv)
    assert code == 0, stderr
    # a time budget: the step count is sized by timing steps, within its bounds (20 at least)
    assert "training (20 steps, sized to 1e-05 min at " in stdout
    assert ", no stimulus path)" in stdout
    config = json.loads((out / "checkpoint" / "config.json").read_text())
    model = config.get("model", config)
    assert model["readout"]["type"] == "neuron_embedding"
    assert model["modalities"]["movie"]["type"] == "movie"
    assert "gaze" not in model["modalities"]
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert set(TASKS) <= set(metrics["tasks"])


def test_demo_writes_report_and_checkpoint(demo: tuple[Path, str]) -> None:
    out, stdout = demo
    for rel in (
        "report/metrics.json",
        "report/traces.png",
        "report/r_histogram.png",
        "checkpoint/weights.safetensors",
        "checkpoint/config.json",
        "checkpoint/meta.json",
        "data/simulation.json",
    ):
        assert (out / rel).is_file(), f"demo did not write {rel}"
    for png in ("traces.png", "r_histogram.png"):
        assert (out / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert set(TASKS) <= set(metrics["tasks"])
    assert "simulation" in metrics
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["plugins"]["modalities:movie_core"]["package"] == "neurofm"
    # the default model is the stimulus-path model
    assert ", stimulus path)" in stdout
    config = json.loads((out / "checkpoint" / "config.json").read_text())
    model = config.get("model", config)
    assert model["readout"]["type"] == "retinotopic"
    assert model["modalities"]["movie"]["type"] == "movie_core"
    assert model["anchor_tau_s"] == 1.0
    # the table and the headline line
    assert "task" in stdout and "target" in stdout and "metric" in stdout
    for task in TASKS:
        assert task in stdout
    assert "single-trial r =" in stdout
    assert f"report written to {out / 'report'}" in stdout


def test_evaluate_the_demo_checkpoint(demo: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = demo
    argv = ["evaluate", str(out / "checkpoint"), "--data", str(out / "data")]
    argv += ["--tasks", "responses_from_stimulus,forecast", "--out", str(tmp_path / "report")]
    code, stdout, stderr = _run(argv)
    assert code == 0, stderr
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"responses_from_stimulus", "forecast"}
    assert "responses_from_stimulus" in stdout and "calcium" in stdout


def test_demo_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    code, _, stderr = _run(["demo", "--quick", "--out", str(out)])
    assert code == 2
    assert "neurofm demo: error:" in stderr and "which the demo did not write" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_demo_claims_only_its_own_folder(tmp_path: Path) -> None:
    from neurofm.core.commands.demo import MARKER, claim_demo_folder
    from neurofm.errors import NeurofmError

    out = tmp_path / "demo"
    assert claim_demo_folder(out) is False  # a new folder
    assert json.loads((out / MARKER).read_text())["written_by"].endswith(" demo")
    (out / "report").mkdir()
    assert claim_demo_folder(out) is True  # a previous demo: replaced, and said so
    (out / "extra.txt").write_text("x")
    with pytest.raises(NeurofmError, match=r"extra\.txt"):
        claim_demo_folder(out)  # the marker does not cover what the demo never writes
    # a folder from before the marker: simulated data (simulation.json) is the demo's ...
    legacy = tmp_path / "legacy"
    (legacy / "data").mkdir(parents=True)
    (legacy / "data" / "simulation.json").write_text("{}")
    assert claim_demo_folder(legacy) is True
    # ... real data without it is not
    real = tmp_path / "real"
    (real / "data").mkdir(parents=True)
    with pytest.raises(NeurofmError, match="did not write"):
        claim_demo_folder(real)
    assert not (real / MARKER).exists()


def test_evaluate_writes_its_report_beside_the_checkpoint_by_default(
    demo: tuple[Path, str], tmp_path: Path
) -> None:
    import shutil

    out, _ = demo
    checkpoint = shutil.copytree(out / "checkpoint", tmp_path / "run" / "checkpoint")
    argv = ["evaluate", str(checkpoint), "--data", str(out / "data"), "--tasks", "forecast"]
    code, stdout, stderr = _run([*argv, "--quiet", "--no-baselines"])
    assert code == 0, stderr
    report = tmp_path / "run" / "checkpoint-report"
    assert (report / "metrics.json").is_file()
    assert f"report written to {report}" in stdout


def test_every_option_of_every_command_has_help_text() -> None:
    import argparse

    from neurofm.core.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {action.option_strings or action.dest}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if not isinstance(action, argparse._HelpAction) and not action.help
    ]
    assert len(commands.choices) >= 9 and not missing, missing


def test_evaluate_missing_data_is_a_clear_error(demo: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = demo
    argv = ["evaluate", str(out / "checkpoint"), "--data", str(tmp_path / "nope")]
    code, _, stderr = _run([*argv, "--out", str(tmp_path / "report")])
    assert code == 2
    assert "neurofm evaluate: error:" in stderr and "does not exist" in stderr
    assert not (tmp_path / "report").exists()


def test_simulate_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "data"
    code, stdout, stderr = _run(["simulate", str(target), "--tiny"])
    assert code == 0, stderr
    assert "wrote 2 simulated sessions" in stdout
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert Path("simulation.json") in before

    code, stdout, stderr = _run(["simulate", str(target), "--tiny", "--seed", "1"])
    assert code == 2
    assert "neurofm simulate: error:" in stderr and "already exists" in stderr
    assert "--overwrite" in stderr
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no partial folder left

    code, _, stderr = _run(["simulate", str(target), "--tiny", "--seed", "1", "--overwrite"])
    assert code == 0, stderr
    assert json.loads((target / "simulation.json").read_text())["seed"] == 1


def test_train_from_a_yaml_experiment(tiny_data: Path, tmp_path: Path) -> None:
    from neurofm.core.backbone import get_preset
    from neurofm.core.model.presets import default_model_config

    model = default_model_config("tiny", frame_size=(18, 32)).model_dump(mode="json")
    assert model["backbone"] == get_preset("tiny").model_dump(mode="json")
    experiment = {
        "model": model,
        "data": {"path": str(tiny_data), "window_s": 1.0},
        "training": {
            "steps": 3,
            "batch_size": 2,
            "eval_every": 2,
            "warmup_steps": 1,
            "device": "cpu",
        },
    }
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump(experiment, sort_keys=False))
    checkpoint = tmp_path / "ckpt"
    code, stdout, stderr = _run(["train", str(config), "--out", str(checkpoint)])
    assert code == 0, stderr
    assert f"checkpoint written to {checkpoint}" in stdout
    for name in ("config.json", "meta.json", "sessions.json", "weights.safetensors"):
        assert (checkpoint / name).is_file()
    meta = json.loads((checkpoint / "meta.json").read_text())
    assert meta["steps"] == 3 and meta["window_s"] == 1.0
    saved = json.loads((checkpoint / "config.json").read_text())
    assert saved["modalities"]["movie"]["height"] == 18


def test_train_reports_config_problems(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump({"model": {"modalities": {"movie": {"type": "moive"}}}, "data": {}})
    )
    code, _, stderr = _run(["train", str(config), "--out", str(tmp_path / "ckpt")])
    assert code == 2
    assert "Did you mean 'movie' or 'movie_core'?" in stderr and "data.path" in stderr
    assert not (tmp_path / "ckpt").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--minutes", "0"], "expected a number of minutes > 0, found '0'"),
        (["--steps", "0"], "expected a number of steps >= 1, found '0'"),
        (["--steps", "5", "--minutes", "1"], "not allowed with argument --steps"),
    ],
)
def test_demo_refuses_a_training_length_it_cannot_use(
    argv: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_a_plugin_error_is_one_line_with_exit_2(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neurofm.plugins.modalities.pupil import PupilEncoder

    def broken(self, streams, unit_embeddings=None):
        raise ValueError("pupil encoder expects data [T, 2],\nfound [60, 3]")

    monkeypatch.setattr(PupilEncoder, "tokenize_batch", broken)
    from neurofm.core.model.presets import default_model_config

    model = default_model_config("tiny", frame_size=(18, 32)).model_dump(mode="json")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "model": model, "data": {"path": str(tiny_data), "window_s": 1.0},
        "training": {"steps": 2, "batch_size": 4, "device": "cpu", "tasks": {
            "responses_from_stimulus_behaviour": 1.0}}}))  # fmt: skip
    argv = ["train", str(config), "--out", str(tmp_path / "ckpt")]
    code, _, stderr = _run(argv)
    assert code == 2
    lines = [line for line in stderr.splitlines() if "error" in line]
    assert lines == [
        "neurofm train: error: ValueError: pupil encoder expects data [T, 2], found [60, 3] "
        "(set NEUROFM_TRACEBACK=1 for the traceback)"
    ]
    assert "Traceback" not in stderr
    monkeypatch.setenv("NEUROFM_TRACEBACK", "1")
    code, _, stderr = _run([*argv[:-1], str(tmp_path / "ckpt2")])
    assert code == 2 and "Traceback (most recent call last)" in stderr
