"""A checkpoint given as data, data given as a checkpoint, or the folder above both: one line
that names what was found and the folder to pass."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import pytest
import torch

from neurofm.core.cli import main
from neurofm.core.data import open_dataset
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config


@pytest.fixture(scope="module")
def run_folder(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo-like folder: data/ (sessions) and checkpoint/."""
    root = tmp_path_factory.mktemp("wrong") / "run"
    shutil.copytree(tiny_data, root / "data")
    torch.manual_seed(0)
    model = build_model(default_model_config("tiny", frame_size=(18, 32)), open_dataset(tiny_data))
    model.save_pretrained(root / "checkpoint")
    return root


def _evaluate(checkpoint: Path, data: Path, out: Path) -> tuple[int, str]:
    err = io.StringIO()
    argv = ["evaluate", str(checkpoint), "--data", str(data), "--out", str(out), "--quiet"]
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([*argv, "--tasks", "forecast"])
    return code, err.getvalue()


@pytest.mark.parametrize(
    ("checkpoint", "data", "message"),
    [
        ("data", "data", "is a folder of 2 session(s), not a checkpoint; pass it as --data"),
        (
            "checkpoint",
            "checkpoint",
            "is a checkpoint folder, not a folder of sessions; pass it as CHECKPOINT",
        ),
        (
            "checkpoint",
            ".",
            "a checkpoint folder (checkpoint/) and a folder of sessions (data/); "
            "pass --data {root}/data",
        ),
        (".", "data", "not a checkpoint; pass {root}/checkpoint"),
        ("data/sim-a0-s0", "data", "is a session folder, not a checkpoint"),
    ],
)
def test_wrong_folders_get_one_line_naming_the_right_one(
    run_folder: Path, tmp_path: Path, checkpoint: str, data: str, message: str
) -> None:
    code, err = _evaluate(run_folder / checkpoint, run_folder / data, tmp_path / "report")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("neurofm evaluate: error:"), err
    assert message.format(root=run_folder) in lines[0], err
    assert not (tmp_path / "report").exists()


def test_a_checkpoint_kept_among_the_sessions_is_not_a_session(
    run_folder: Path, tmp_path: Path
) -> None:
    data = shutil.copytree(run_folder / "data", tmp_path / "data")
    shutil.copytree(run_folder / "checkpoint", data / "model")
    assert [s.session_id for s in open_dataset(data)] == ["sim-a0-s0", "sim-a0-s1"]
