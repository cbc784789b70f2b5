"""A run killed with SIGKILL at a random step and resumed ends with bitwise the same weights."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_helpers import cli_env, run_cli, write_experiment

STEPS = 40


def _saved_step(state_dir: Path) -> int:
    try:
        return int((state_dir / "latest").read_text().strip().removeprefix("step-"))
    except (FileNotFoundError, ValueError):
        return 0


@pytest.mark.slow
def test_kill_at_random_step_and_resume_equals_uninterrupted(
    tiny_data: Path, tmp_path: Path
) -> None:
    config = write_experiment(
        tmp_path / "exp.json", tiny_data, steps=STEPS, checkpoint_every=2, eval_every=10
    )
    run_cli("train", str(config), "--out", str(tmp_path / "straight"), "--no-progress")

    rng = random.Random()
    kill_after = rng.randrange(2, STEPS - 10)
    out = tmp_path / "killed"
    state = Path(f"{out}.state")
    cmd = [
        sys.executable,
        "-m",
        "neurofm",
        "train",
        str(config),
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _saved_step(state) < kill_after and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(rng.uniform(0.0, 0.05))  # anywhere inside the following step (or save)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, (
        f"the run ended before it was killed (after step {kill_after}): {proc.stderr.read()!r}"
    )
    assert not out.exists()
    killed_at = _saved_step(state)
    assert 0 < killed_at < STEPS, killed_at

    done = run_cli("train", str(config), "--out", str(out), "--resume", "--no-progress")
    assert f"resuming from step {killed_at}" in done.stdout

    a = load_file(str(tmp_path / "straight" / "weights.safetensors"))
    b = load_file(str(out / "weights.safetensors"))
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"killed after step {kill_after}: {different[:5]} differ"
