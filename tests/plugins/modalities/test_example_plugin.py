"""The example plugin package (examples/neurofm-zebrafish-tail) installs with pip and trains inside
a model with no change to neurofm."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from neurofm import registry
from neurofm.core.data import StreamInput, UnitTable, open_dataset, write_session
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.trainer import Trainer
from neurofm.testing import check_plugin

EXAMPLE = Path(__file__).parents[3] / "examples" / "neurofm-zebrafish-tail"


def _reload() -> None:
    for reg in registry.REGISTRIES.values():
        reg.reload()


@pytest.fixture(scope="module")
def zebrafish_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    work = tmp_path_factory.mktemp("zebrafish")
    source = shutil.copytree(EXAMPLE, work / EXAMPLE.name)
    site = work / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    cmd += ["--no-input", "--disable-pip-version-check", "--target", str(site), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"installing the example failed:\n{done.stdout}\n{done.stderr}"
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        mp.delenv(registry.AUTOLOAD_ENV, raising=False)
        _reload()
        try:
            yield site
        finally:
            for name in [m for m in sys.modules if m.split(".")[0] == "neurofm_zebrafish"]:
                del sys.modules[name]
    _reload()


def _fish_session(root: Path) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(600) / 50.0  # 12 s at 50 Hz
    bends = (
        np.sin(2 * np.pi * 8 * t[:, None] - np.arange(6) * 0.6) * (rng.random(600) < 0.3)[:, None]
    )
    tail = np.cumsum(0.2 * bends, axis=1)
    tail[100:110] = np.nan  # tracking lost
    calcium = rng.gamma(2.0, 1.0, (600, 5))
    return write_session(
        root, session_id="fish1-s0", animal_id="fish1", species="danio_rerio",
        streams={"tail": StreamInput("zebrafish.tail", tail, t),
                 "calcium": StreamInput("calcium", calcium, t, per_unit=True)},
        intervals=[{"start": 0.0, "end": 8.0, "tier": "train"},
                   {"start": 8.0, "end": 12.0, "tier": "validation"}],
        units=UnitTable(np.arange(5), np.zeros((5, 3)), np.array(["OT"] * 5)),
    )  # fmt: skip


def test_example_plugin_trains_inside_a_model(zebrafish_plugin: Path, tmp_path: Path) -> None:
    assert "zebrafish.tail" in registry.modalities.list()
    check_plugin("modalities", "zebrafish.tail")
    sessions = open_dataset(_fish_session(tmp_path))
    config = ModelConfig.model_validate(
        {
            "modalities": {"tail": {"type": "zebrafish.tail", "channels": 6},
                           "calcium": {"type": "calcium"}},
            "readout": {"type": "neuron_embedding"},
            "heads": {"calcium": {"type": "poisson"}, "tail": {"type": "regression"}},
        }
    )  # fmt: skip
    assert ModelConfig.model_validate_json(config.model_dump_json()) == config
    model = build_model(config, sessions)
    assert type(model.encoder("tail")).__module__ == "neurofm_zebrafish.tail"
    training = TrainingConfig(
        steps=2, batch_size=4, warmup_steps=0, eval_every=2,
        tasks={"behaviour_from_responses": 1.0, "responses_from_stimulus_behaviour": 1.0},
    )  # fmt: skip
    result = Trainer(model, sessions, training, window_s=2.0, progress=False).fit()
    assert result.steps == 2 and np.isfinite(result.train_loss).all()
