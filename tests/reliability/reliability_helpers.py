"""Helpers of the reliability tests: a small valid session, copies to damage, subprocess runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from neurofm.core.data import Interval, StreamInput, UnitTable, write_session

N_UNITS = 3
RATE_HZ = 20.0
DURATION_S = 4.0
INTERVALS = [
    Interval(start=0.0, end=2.0, tier="train", trial=0),
    Interval(start=2.0, end=3.0, tier="validation", trial=1),
    Interval(start=3.0, end=4.0, tier="test", stimulus_id="clip-0", trial=2),
]


def clock(rate: float = RATE_HZ, duration: float = DURATION_S) -> np.ndarray:
    return np.arange(round(rate * duration)) / rate


def units(n: int = N_UNITS) -> UnitTable:
    return UnitTable(
        ids=np.arange(n),
        position_um=np.zeros((n, 3)),
        area=np.array(["V1"] * n),
    )


def write_small_session(root: Path, session_id: str = "s0", **overrides: Any) -> Path:
    """A 4 s session: ``calcium`` [80, 3] per unit, ``running`` [40, 1], train/validation/test."""
    ts = clock()
    rng = np.random.default_rng(0)
    args: dict[str, Any] = {
        "session_id": session_id,
        "animal_id": "m0",
        "species": "mouse",
        "streams": {
            "calcium": StreamInput(
                "calcium", rng.gamma(2.0, 1.0, (ts.size, N_UNITS)), ts, per_unit=True
            ),
            "running": StreamInput("running", rng.normal(size=(ts.size // 2, 1)), ts[::2]),
        },
        "intervals": INTERVALS,
        "units": units(),
    }
    args.update(overrides)
    return write_session(root, **args)


def copy_folder(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


def python_env() -> dict[str, str]:
    """Environment of a child Python: one thread, unbuffered output."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start_python(code: str, *args: str) -> subprocess.Popen[str]:
    """Run ``code`` in a child Python (stdout piped, text) with ``args`` as ``sys.argv[1:]``."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=python_env(),
    )
