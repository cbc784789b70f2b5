"""``neurofm insilico``: outputs, the comparison with the simulator's truth, and bad input."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.core.cli import main
from neurofm.core.data import open_dataset
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.model.presets import default_model_config


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def checkpoint(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = build_model(default_model_config("tiny", frame_size=(18, 32)), open_dataset(tiny_data))
    return model.save_pretrained(tmp_path_factory.mktemp("insilico") / "checkpoint",
                                 extra={"window_s": 2.0})  # fmt: skip


FAST = ["--neurons", "0-3", "--mei-steps", "2", "--natural-frames", "20", "--quiet",
        "--spots-config", '{"rows": 6, "columns": 8}', "--gratings-config", '{"directions": 8, "phases": 2}']  # fmt: skip


def test_all_experiments_write_arrays_figures_and_a_summary(
    checkpoint: Path, tiny_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "insilico"
    argv = ["insilico", "all", str(checkpoint), "--data", str(tiny_data), "--out", str(out),
            "--hold", "gaze=0,0", "--gain", "running=0:20", *FAST]  # fmt: skip
    code, stdout, stderr = _run(argv)
    assert code == 0, stderr
    assert "preferred orientation within 22.5 deg of the truth" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["screen_width_deg"] == 120.0  # from the data's simulation.json
    assert set(summary["sessions"]) == {s.session_id for s in open_dataset(tiny_data)}
    record = summary["sessions"]["sim-a0-s0"]
    assert record["units"] == [0, 1, 2, 3]
    assert record["hold"]["gaze"] == pytest.approx([0.0, 0.0], abs=1e-6)
    tuning = record["tuning"]
    assert len(tuning["per_neuron"]["preferred_orientation_deg"]) == 4
    errors = tuning["truth"]["orientation_error_deg"]
    assert len(errors) == 4 and all(0 <= e <= 90 for e in errors)
    assert tuning["truth"]["fraction_within_22_5_deg"] == np.mean(np.asarray(errors) <= 22.5)
    assert tuning["gain"] == {"stream": "running", "low": [0.0], "high": [20.0]}
    assert "log_gain_r" in tuning["truth"]
    for method in ("sparse_noise", "gradient"):
        assert set(record["rf"][method]["truth"]) == {"centre_r_x", "centre_r_y"}
    mei = record["mei"]
    assert mei["natural_frames"] == 20 and len(mei["ratio_to_best_natural"]) == 4
    assert len(mei["truth"]["gabor_r_phase_invariant"]) == 4
    folder = out / "sim-a0-s0"
    arrays = np.load(folder / "tuning.npz")
    assert arrays["responses"].shape == (tuning["conditions"], 4)
    assert arrays["responses_low"].shape == arrays["responses"].shape
    assert np.load(folder / "mei.npz")["images"].shape == (4, 18, 32)
    assert np.load(folder / "rf_gradient.npz")["maps"].shape == (4, 18, 32)
    for figure in ("tuning.png", "orientation.png", "rf_sparse_noise.png", "rf_gradient.png",
                   "rf_gradient_centres.png", "mei.png"):  # fmt: skip
        assert (folder / figure).stat().st_size > 1000, figure


def test_an_existing_folder_is_kept_unless_overwrite(
    checkpoint: Path, tiny_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "insilico"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    argv = ["insilico", "tuning", str(checkpoint), "--data", str(tiny_data), "--out", str(out)]
    code, _, stderr = _run([*argv, *FAST])
    assert code == 2 and "already exists" in stderr and "--overwrite" in stderr
    assert (out / "mine.txt").read_text() == "keep"
    code, _, stderr = _run([*argv, *FAST, "--overwrite", "--session", "sim-a0-s1"])
    assert code == 0, stderr
    assert not (out / "mine.txt").exists()
    assert list(json.loads((out / "summary.json").read_text())["sessions"]) == ["sim-a0-s1"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--neurons", "0-99"], "do not exist"),
        (["--neurons", "a-b"], "expected indices and increasing ranges"),
        (["--neurons", "5-2"], "expected indices and increasing ranges"),
        (["--hold", "gaze"], "expected STREAM=V"),
        (["--hold", "whiskers=1"], "not behaviour streams"),
        (["--gain", "running=0"], "expected STREAM=LOW:HIGH"),
        (["--session", "sim-a9-s9"], "not both in the data and in the checkpoint"),
        (["--gratings", "nope"], "no stimulus plugin named 'nope'"),
        (["--mei-steps", "0"], "--mei-steps must be at least 1"),
        (["--spots-config", '{"rowz": 3}'], "rowz"),
        (["--gratings-config", "[1]"], "expected a JSON object"),
        (["--screen-width-deg", "-5"], "must be positive"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    checkpoint: Path, tiny_data: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    out = tmp_path / "insilico"
    argv = ["insilico", "all", str(checkpoint), "--data", str(tiny_data), "--out", str(out)]
    code, _, stderr = _run([*argv, "--quiet", *extra])
    assert code == 2, stderr
    assert "neurofm insilico: error:" in stderr and message in stderr
    assert not out.exists() and not list(tmp_path.glob(".insilico*"))


def test_a_failure_midway_leaves_no_output(
    checkpoint: Path, tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neurofm.insilico import run

    def broken(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(run, "_rf", broken)  # after the tuning experiment has run
    out = tmp_path / "insilico"
    argv = ["insilico", "all", str(checkpoint), "--data", str(tiny_data), "--out", str(out)]
    code, _, stderr = _run([*argv, *FAST])
    assert code == 2 and "error: RuntimeError: interrupted" in stderr
    assert not out.exists() and not list(tmp_path.glob(".insilico*"))


def test_a_model_without_a_stimulus_encoder_is_refused(tiny_data: Path, tmp_path: Path) -> None:
    data = default_model_config("tiny", frame_size=(18, 32), stimulus_path=False).model_dump()
    data["modalities"] = {k: v for k, v in data["modalities"].items() if k != "movie"}
    model = build_model(ModelConfig.model_validate(data), open_dataset(tiny_data))
    path = model.save_pretrained(tmp_path / "blind")
    argv = ["insilico", "rf", str(path), "--data", str(tiny_data), "--out", str(tmp_path / "o")]
    code, _, stderr = _run([*argv, "--quiet"])
    assert code == 2 and "no stimulus encoder" in stderr
    assert not (tmp_path / "o").exists()
