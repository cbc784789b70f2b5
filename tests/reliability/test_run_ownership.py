"""A run's state belongs to that run: an existing output is never silently replaced, a state is
resumed only by the run that wrote it, one process writes an output folder at a time, and every
failure is one line on stderr with exit status 2."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from reliability_helpers import python_env, start_python

sys.path.insert(0, str(Path(__file__).parents[1] / "core" / "training"))
from training_helpers import experiment

from neurofm.core.cli import main
from neurofm.core.storage.sealing import seal
from neurofm.core.training.state import FORMAT as STATE_FORMAT

STEPS = 4


def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def _one_line_error(code: int, err: str, command: str = "train") -> str:
    """The error line of a failed command: exit 2, exactly one line on stderr."""
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {err!r}"
    assert lines[0].startswith(f"neurofm {command}: error: "), lines[0]
    return lines[0]


def _config(path: Path, data: Path, **training) -> Path:
    settings = {"steps": STEPS, "checkpoint_every": 2, "eval_every": STEPS, **training}
    path.write_text(json.dumps(experiment(data, **settings)))
    return path


def _weights(checkpoint: Path) -> bytes:
    return (checkpoint / "weights.safetensors").read_bytes()


@pytest.fixture
def finished(tiny_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A finished run: (its config, its checkpoint folder); its state is ``OUT.state``."""
    config = _config(tmp_path / "a.json", tiny_data)
    out = tmp_path / "run" / "model"
    code, _, err = _run("train", str(config), "--out", str(out), "--no-progress")
    assert code == 0, err
    return config, out


# -- 1. another run into the same folder -----------------------------------------------------


def test_a_second_run_into_an_existing_out_is_refused(
    finished: tuple[Path, Path], tiny_data: Path, tmp_path: Path
) -> None:
    _, out = finished
    before = _weights(out)
    other = _config(tmp_path / "b.json", tiny_data, seed=1)
    code, _, err = _run("train", str(other), "--out", str(out), "--no-progress")
    line = _one_line_error(code, err)
    assert f"{out} and {out}.state already exist" in line
    assert "--resume" in line and "--overwrite" in line
    assert _weights(out) == before  # nothing replaced


def test_overwrite_clears_the_old_state_first(
    finished: tuple[Path, Path], tiny_data: Path, tmp_path: Path
) -> None:
    _, out = finished
    state = Path(f"{out}.state")
    (state / "step-00000120").mkdir()  # a later step of the old run: must not outlive it
    other = _config(tmp_path / "b.json", tiny_data, seed=1)
    code, _, err = _run("train", str(other), "--out", str(out), "--no-progress", "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in state.glob("step-*")) == ["step-00000002", "step-00000004"]
    assert json.loads((state / "run.json").read_text())["settings"]["training"]["seed"] == 1
    assert (state / "latest").read_text().strip() == "step-00000004"


def test_cleanup_follows_the_runs_history_and_keeps_the_state_just_written(
    tmp_path: Path,
) -> None:
    """Folders of higher step numbers that are not in this run's history never win over the
    state just written (before, keep-two by step number deleted the new state at once)."""
    import torch
    from reliability_helpers import write_small_session

    from neurofm.core.data import Session
    from neurofm.core.model.builder import build_model
    from neurofm.core.model.config import ModelConfig
    from neurofm.core.training import Trainer
    from neurofm.core.training.config import TrainingConfig
    from neurofm.core.training.state import latest_state

    sessions = [Session.open(write_small_session(tmp_path / "data"))]
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(_SMALL_MODEL), sessions)
    state = tmp_path / "state"
    for old in ("step-00000119", "step-00000120"):
        (state / old).mkdir(parents=True)
    (state / "latest").write_text("step-00000120\n")
    training = TrainingConfig(steps=3, batch_size=2, device="cpu", num_workers=1,
                              checkpoint_every=1, eval_every=10, warmup_steps=1)  # fmt: skip
    Trainer(model, sessions, training, window_s=1.0, progress=False, state_dir=state).fit()
    assert sorted(p.name for p in state.glob("step-*")) == ["step-00000002", "step-00000003"]
    assert latest_state(state) == state / "step-00000003"


def test_stale_temporaries_of_killed_writers_are_removed_at_start(
    finished: tuple[Path, Path],
) -> None:
    config, out = finished
    state = Path(f"{out}.state")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)  # a process that has exited
    stale = [
        state / f".step-00000006.partial-{pid}-x1",
        out.parent / f".{out.name}.partial-{pid}-x2",
        state / f".latest.{pid}-x3.tmp",
    ]
    live = state / f".step-00000008.partial-{os.getpid()}-x4"  # a writer still running
    for folder in (*stale[:2], live):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    stale[2].write_text("step-0000")
    code, _, err = _run("train", str(config), "--out", str(out), "--no-progress", "--resume")
    assert code == 0, err
    assert not any(p.exists() for p in stale), err
    assert live.exists()
    assert "left by killed writers" in err


# -- 2. one writer per folder ------------------------------------------------------------------

_HOLD_LOCK = """
import sys, time
from neurofm.core.storage.lock import FolderLock
lock = FolderLock(sys.argv[1], command="holder")
lock.acquire()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_lock_held_by_a_live_process_refuses_a_second_writer(tmp_path: Path) -> None:
    from neurofm.core.storage.lock import FolderLock, LockedError

    holder = start_python(_HOLD_LOCK, str(tmp_path / "out"))
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError, match=rf"in use by process {holder.pid} on host"):
            FolderLock(tmp_path / "out").acquire()
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_killed_process_is_reported_then_taken_over(tmp_path: Path) -> None:
    from neurofm.core.storage.lock import FolderLock, lock_path

    holder = start_python(_HOLD_LOCK, str(tmp_path / "out"))
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_path(tmp_path / "out").exists()  # a kill leaves the file behind
    reports: list[str] = []
    with FolderLock(tmp_path / "out", on_stale=reports.append):
        info = json.loads(lock_path(tmp_path / "out").read_text())
        assert info["pid"] == os.getpid()
    assert len(reports) == 1 and f"process {holder.pid} " in reports[0]
    assert "no longer runs" in reports[0]
    assert not lock_path(tmp_path / "out").exists()  # released


def test_two_concurrent_runs_on_one_out_the_second_exits_2_naming_the_first(
    tiny_data: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path / "long.json", tiny_data, steps=100_000, checkpoint_every=1000)
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "neurofm", "train", str(config), "--out", str(out),
           "--no-progress"]  # fmt: skip
    first = subprocess.Popen(cmd, env=python_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not Path(f"{out}.lock").exists() and time.monotonic() < deadline:
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.05)
        second = subprocess.run([*cmd, "--resume"], env=python_env(), capture_output=True,
                                text=True, timeout=120)  # fmt: skip
        line = _one_line_error(second.returncode, second.stderr)
        assert f"in use by process {first.pid} on host" in line
        assert first.poll() is None  # the first run goes on undisturbed
    finally:
        first.kill()
        first.wait()


# -- 3. resume checks the run's fingerprint ---------------------------------------------------


def test_resume_with_a_changed_config_lists_the_differences(
    finished: tuple[Path, Path], tiny_data: Path, tmp_path: Path
) -> None:
    _, out = finished
    changed = experiment(tiny_data, steps=STEPS, checkpoint_every=2, eval_every=STEPS, lr=0.5)
    changed["model"]["backbone"]["d_model"] = 48
    del changed["model"]["modalities"]["gaze"]  # a removed modality
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(changed))
    code, _, err = _run("train", str(path), "--out", str(out), "--no-progress", "--resume")
    line = _one_line_error(code, err)
    assert "belongs to another run" in line
    assert "settings.training.lr: saved 0.001, now 0.5" in line
    assert "settings.model.backbone.d_model: saved 32, now 48" in line
    assert "settings.model.modalities.gaze.type: saved 'gaze', now absent" in line
    assert "training.steps" in line  # what may change is said


def test_resume_with_another_seed_or_data_is_refused(
    finished: tuple[Path, Path], tiny_data: Path, tmp_path: Path
) -> None:
    _, out = finished
    before = _weights(out)
    other = _config(tmp_path / "b.json", tiny_data, seed=7)
    code, _, err = _run("train", str(other), "--out", str(out), "--no-progress", "--resume")
    assert "settings.training.seed: saved 0, now 7" in _one_line_error(code, err)
    one = experiment(tiny_data, steps=STEPS, checkpoint_every=2, eval_every=STEPS)
    one["data"]["sessions"] = ["sim-a0-s0"]
    (tmp_path / "one.json").write_text(json.dumps(one))
    code, _, err = _run("train", str(tmp_path / "one.json"), "--out", str(out), "--resume")
    assert "data.session_ids" in _one_line_error(code, err)
    assert _weights(out) == before


def test_fewer_steps_than_the_saved_state_are_refused_more_are_allowed(
    finished: tuple[Path, Path], tiny_data: Path, tmp_path: Path
) -> None:
    _, out = finished
    fewer = _config(tmp_path / "fewer.json", tiny_data, steps=2)
    code, _, err = _run("train", str(fewer), "--out", str(out), "--no-progress", "--resume")
    assert "is already at step 4; set steps >= 4" in _one_line_error(code, err)
    more = _config(tmp_path / "more.json", tiny_data, steps=6)
    code, stdout, err = _run("train", str(more), "--out", str(out), "--no-progress", "--resume")
    assert code == 0, err
    assert "resuming from step 4" in stdout
    assert "settings.training.steps: saved 4, now 6" in err  # said, not silent
    assert json.loads((out / "meta.json").read_text())["steps"] == 6


def test_resume_of_a_state_without_a_fingerprint_is_refused(
    finished: tuple[Path, Path],
) -> None:
    config, out = finished
    (Path(f"{out}.state") / "run.json").unlink()
    code, _, err = _run("train", str(config), "--out", str(out), "--no-progress", "--resume")
    assert "has no run.json" in _one_line_error(code, err)


# -- 4. latest stays inside the state folder ------------------------------------------------------


@pytest.mark.parametrize("pointer", ["../elsewhere/step-00000004", "ABSOLUTE", "step-00000009"])
def test_latest_must_name_a_folder_inside_the_state_folder(
    finished: tuple[Path, Path], tmp_path: Path, pointer: str
) -> None:
    config, out = finished
    state = Path(f"{out}.state")
    elsewhere = tmp_path / "run" / "elsewhere"
    shutil.copytree(state, elsewhere)  # another (intact) state a pointer could lead to
    if pointer == "ABSOLUTE":
        pointer = str(elsewhere / "step-00000004")
    (state / "latest").write_text(pointer + "\n")
    code, _, err = _run("train", str(config), "--out", str(out), "--no-progress", "--resume")
    line = _one_line_error(code, err)
    assert "is not a state folder inside" in line
    assert f"the newest intact state is {state / 'step-00000004'}" in line
    assert "--resume-from step-00000004" in line
    code, stdout, err = _run("train", str(config), "--out", str(out), "--no-progress",
                             "--resume-from", "step-00000004")  # fmt: skip
    assert code == 0, err
    assert "resuming from step 4" in stdout


def test_a_corrupt_latest_state_names_the_intact_older_one(finished: tuple[Path, Path]) -> None:
    config, out = finished
    state = Path(f"{out}.state")
    weights = state / "step-00000004" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, _, err = _run("train", str(config), "--out", str(out), "--no-progress", "--resume")
    line = _one_line_error(code, err)
    assert "step-00000004 is damaged" in line
    assert "--resume-from step-00000002" in line
    code, stdout, err = _run("train", str(config), "--out", str(out), "--no-progress",
                             "--resume-from", "step-00000002")  # fmt: skip
    assert code == 0, err
    assert "resuming from step 2" in stdout


# -- 5. streams that match nothing in the data ----------------------------------------------------

_SMALL_MODEL = {
    "backbone": {"d_model": 16, "n_heads": 2, "n_layers": 1, "n_latents": 4},
    "modalities": {"calcium": {"type": "calcium"}, "running": {"type": "running"}},
    "readout": {"type": "neuron_embedding"},
    "heads": {"calcium": {"type": "poisson"}},
}


def test_a_config_whose_streams_match_no_data_stream_is_refused(
    tiny_data: Path, tmp_path: Path
) -> None:
    config = experiment(tiny_data, steps=STEPS)
    model = config["model"]
    model["modalities"] = {f"{k}x": v for k, v in model["modalities"].items()}  # typos everywhere
    model["heads"] = {f"{k}x": v for k, v in model["heads"].items()}
    path = tmp_path / "typos.json"
    path.write_text(json.dumps(config))
    out = tmp_path / "model"
    code, _, err = _run("train", str(path), "--out", str(out), "--no-progress")
    line = _one_line_error(code, err)
    assert "are in none of the 2 session(s)" in line
    assert "'calciumx' -> 'calcium'?" in line
    assert "the data holds the streams ['calcium', 'gaze', 'movie', 'pupil', 'running']" in line
    assert not out.exists() and not Path(f"{out}.state").exists()


def test_a_stream_in_some_sessions_only_is_reported_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import torch
    from reliability_helpers import write_small_session

    from neurofm.core.data import open_dataset
    from neurofm.core.model.builder import build_model
    from neurofm.core.model.config import ModelConfig
    from neurofm.core.training import Trainer
    from neurofm.core.training.config import TrainingConfig

    write_small_session(tmp_path, "s0")
    session = write_small_session(tmp_path, "s1")
    shutil.rmtree(session)
    full = write_small_session(tmp_path / "tmp", "s1")
    manifest = json.loads((full / "manifest.json").read_text())
    del manifest["streams"]["running"]  # s1 without the running stream
    shutil.rmtree(full / "streams" / "running")
    (full / "manifest.json").write_text(json.dumps(manifest))
    shutil.move(full, session)
    sessions = open_dataset(tmp_path, ["s0", "s1"])
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(_SMALL_MODEL), sessions)
    training = TrainingConfig(steps=2, batch_size=2, device="cpu", num_workers=1, eval_every=10)
    with caplog.at_level("WARNING", logger="neurofm.training"):
        Trainer(model, sessions, training, window_s=1.0, progress=False).fit()
    notes = [r.getMessage() for r in caplog.records if "'running'" in r.getMessage()]
    assert notes == [
        "stream 'running' is in 1 of 2 sessions; the windows of ['s1'] train without it"
    ]


# -- 6. every command reads checkpoints through the recovering loader ------------------------


def test_evaluate_and_finetune_read_a_checkpoint_whose_overwrite_was_interrupted(
    finished: tuple[Path, Path], tiny_data: Path, tmp_path: Path
) -> None:
    _, out = finished
    left = out.parent / f".{out.name}.old-4242"
    out.rename(left)  # killed between the two renames of an overwrite
    code, _, err = _run("evaluate", str(out), "--data", str(tiny_data), "--tasks", "forecast",
                             "--no-baselines", "--quiet", "--out", str(tmp_path / "report"))  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "report" / "metrics.json").is_file()
    code, _, err = _run("finetune", str(out), "--data", str(tiny_data), "--out",
                             str(tmp_path / "tuned"), "--steps", "2", "--unfreeze-after", "0",
                             "--device", "cpu", "--batch-size", "2", "--no-progress")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "tuned" / "weights.safetensors").is_file()


def test_an_interrupted_dataset_overwrite_is_reported_by_name(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, _, err = _run("simulate", str(data), "--tiny")
    assert code == 0, err
    left = tmp_path / ".data.old-4242"
    data.rename(left)  # killed between the two renames of `simulate --overwrite`
    config = _config(tmp_path / "exp.json", data)
    code, _, err = _run("train", str(config), "--out", str(tmp_path / "model"), "--no-progress")
    line = _one_line_error(code, err)
    assert f"{left} holds its previous copy" in line and f"mv {left} {data}" in line
    code, _, err = _run("simulate", str(data), "--tiny", "--overwrite")
    assert code == 0, err
    assert not left.exists()  # replaced by the new dataset, not kept forever


# -- 7. tracebacks that are now errors ----------------------------------------------------------


def test_a_manifest_entry_that_is_not_a_mapping_is_an_error(finished: tuple[Path, Path]) -> None:
    from neurofm.core.model.checkpoint import load_pretrained
    from neurofm.errors import NeurofmError

    config, out = finished
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"]["meta.json"] = ["not", "a", "mapping"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(NeurofmError, match=r"entry of 'meta.json' is list, expected a mapping"):
        load_pretrained(out)
    manifest["files"] = "nothing"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(NeurofmError, match=r"'files' is str, expected a mapping"):
        load_pretrained(out)
    step = Path(f"{out}.state") / "step-00000004"
    manifest = json.loads((step / "manifest.json").read_text())
    manifest["files"]["state.json"] = 7
    (step / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = _run("train", str(config), "--out", str(out), "--no-progress", "--resume")
    line = _one_line_error(code, err)
    assert "entry of 'state.json' is int" in line and "--resume-from step-00000002" in line


@pytest.mark.parametrize("step", ["four", 4.5, None, True])
def test_a_resealed_state_with_a_non_integer_step_is_an_error(
    finished: tuple[Path, Path], step: object
) -> None:
    config, out = finished
    folder = Path(f"{out}.state") / "step-00000004"
    state = json.loads((folder / "state.json").read_text())
    state["step"] = step
    (folder / "state.json").write_text(json.dumps(state))
    seal(folder, STATE_FORMAT)  # the hashes match again
    code, _, err = _run("train", str(config), "--out", str(out), "--no-progress", "--resume")
    line = _one_line_error(code, err)
    assert f"'step' is {step!r}, expected a non-negative integer" in line
    assert "--resume-from step-00000002" in line


_FILE_SIZE_LIMITED = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
from neurofm.core.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _limited(limit: int, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _FILE_SIZE_LIMITED, str(limit), *argv],
                          capture_output=True, text=True, env=python_env(), timeout=120)  # fmt: skip


def test_disk_full_during_training_is_one_line_naming_path_and_size(
    tiny_data: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path / "exp.json", tiny_data)
    out = tmp_path / "model"
    done = _limited(64_000, "train", str(config), "--out", str(out), "--no-progress")
    line = _one_line_error(done.returncode, done.stderr)
    assert f"no space left writing {out}.state" in line
    assert "it needed about" in line and "KB" in line
    assert not out.exists()


def test_disk_full_during_simulation_is_one_line_naming_path_and_size(tmp_path: Path) -> None:
    out = tmp_path / "data"
    done = _limited(20_000, "simulate", str(out), "--tiny")
    line = _one_line_error(done.returncode, done.stderr, "simulate")
    assert f"no space left writing {out}" in line and "it needed about" in line
    assert not out.exists()
