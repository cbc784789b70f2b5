"""Helpers of the training tests: a tiny stimulus-path model, a tiny experiment config and running
the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.model.neurofm import NeuroFM
from neurofm.core.model.presets import default_model_config


def stimulus_model(sessions, readout: dict | None = None, core: dict | None = None) -> NeuroFM:
    """The tiny default model with the stimulus path for ``sessions`` (seed 0); ``readout`` and
    ``core`` update its readout's and its movie core's settings."""
    data = default_model_config("tiny", frame_size=(18, 32), stimulus_path=True).model_dump()
    data["readout"].update(readout or {})
    data["modalities"]["movie"]["core"].update(core or {})
    torch.manual_seed(0)
    return build_model(ModelConfig.model_validate(data), sessions)


def experiment(
    data: Path, *, core_norm: str | None = None, readout: dict | None = None, **training
) -> dict:
    """A tiny ExperimentConfig (as a dict) training on ``data`` with CPU settings (the default
    model; ``core_norm`` sets its movie core's normalisation, ``readout`` updates its readout's
    settings)."""
    settings = {"steps": 12, "batch_size": 2, "warmup_steps": 2, "eval_every": 6,
                "device": "cpu", "checkpoint_every": 3, "num_workers": 1, "prefetch": 2}  # fmt: skip
    settings.update(training)
    model = default_model_config("tiny", frame_size=(18, 32)).model_dump(mode="json")
    if core_norm is not None:
        model["modalities"]["movie"]["core"]["norm"] = core_norm
    model["readout"].update(readout or {})
    return {
        "model": model,
        "data": {"path": str(data), "window_s": 1.0},
        "training": settings,
    }


def write_experiment(path: Path, data: Path, **options) -> Path:
    path.write_text(json.dumps(experiment(data, **options)))
    return path


def cli_env() -> dict[str, str]:
    """One intra-op thread in every process, so runs are bitwise comparable."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_cli(*args: str, torchrun: int = 0, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run ``neurofm ARGS`` (under torchrun with ``torchrun`` processes when > 0)."""
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(torchrun),
               "--standalone", "-m", "neurofm", *args]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "neurofm", *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
        start_new_session=True,
    )  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun's workers too
        proc.communicate()
        raise
    done = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done
