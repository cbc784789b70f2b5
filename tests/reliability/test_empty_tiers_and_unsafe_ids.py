"""Data that cannot serve a request (no train interval, windows longer than every interval, weights
that select nothing) gives a clear DataError, also through the CLI; ids that try path traversal are
refused by the writer and the reader (tests/core/data/test_session_format.py::test_unsafe_session_ids)
and made safe by every importer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from reliability_helpers import INTERVALS, write_small_session

from neurofm import registry
from neurofm.core.cli import main
from neurofm.core.data import Interval, Session, open_dataset
from neurofm.core.data.manifest import check_safe_id
from neurofm.core.data.sources.common import safe_id
from neurofm.core.data.windows import WindowSampler
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig
from neurofm.errors import DataError, SessionFormatError

sys.path.insert(0, str(Path(__file__).parents[1] / "plugins" / "sources"))
from source_fixtures import make_experanto

NO_TRAIN = [iv for iv in INTERVALS if iv.tier != "train"]
MODEL = {
    "backbone": {"d_model": 16, "n_heads": 2, "n_layers": 1, "n_latents": 4},
    "modalities": {"calcium": {"type": "calcium"}, "running": {"type": "running"}},
    "readout": {"type": "neuron_embedding"},
    "heads": {"calcium": {"type": "poisson"}},
}


@pytest.fixture(scope="module")
def untrainable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset whose one session has validation and test intervals but no train interval."""
    root = tmp_path_factory.mktemp("no-train")
    write_small_session(root, "s0", intervals=NO_TRAIN)
    return root


def test_no_train_interval_is_a_clear_error(untrainable: Path) -> None:
    sessions = open_dataset(untrainable)
    with pytest.raises(DataError, match=r"no train interval in any of the 1 session\(s\)") as err:
        WindowSampler(sessions, 1.0)
    assert "s long" not in str(err.value)  # an empty tier is not a too-long window
    assert "['test', 'validation']" in str(err.value)
    torch.set_num_threads(1)
    model = build_model(ModelConfig.model_validate(MODEL), sessions)
    training = TrainingConfig(steps=2, batch_size=2, device="cpu", num_workers=1)
    with pytest.raises(DataError, match="write the data with train intervals"):
        Trainer(model, sessions, training, window_s=1.0, progress=False)


def test_no_train_interval_through_the_cli(untrainable: Path, tmp_path: Path, capsys) -> None:
    config = {
        "model": MODEL,
        "data": {"path": str(untrainable), "window_s": 1.0},
        "training": {"steps": 2, "batch_size": 2, "device": "cpu", "num_workers": 1},
    }
    path = tmp_path / "exp.json"
    path.write_text(json.dumps(config))
    assert main(["train", str(path), "--out", str(tmp_path / "ckpt"), "--no-progress"]) == 2
    assert "neurofm train: error: no train interval" in capsys.readouterr().err
    assert not (tmp_path / "ckpt").exists()


def test_window_longer_than_every_interval_or_weights_selecting_nothing(tmp_path: Path) -> None:
    sessions = [Session.open(write_small_session(tmp_path))]
    with pytest.raises(DataError, match=r"no train interval .* at least 2.5 s long"):
        WindowSampler(sessions, 2.5)  # the train interval is 2 s, the recording 4 s
    with pytest.raises(DataError, match=r"no validation interval .* at least 10"):
        WindowSampler(sessions, 10.0, tier="validation")  # longer than the recording
    with pytest.raises(DataError, match=r"session weights \{'other': 1.0\} give no train"):
        WindowSampler(sessions, 1.0, weights={"other": 1.0})


# -- path traversal ------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
@example("a...b")
@example("..")
@example("../../etc/passwd")
@example("." * 300 + "x")
@example("x" * 127 + "..y")
def test_importer_ids_are_always_safe_folder_names(name: str) -> None:
    """Every importer turns recording names into ids with ``safe_id``: the result is a valid id,
    one folder name that stays inside the output folder."""
    sid = safe_id(name)
    assert check_safe_id(sid) == sid
    root = Path("/data/out")
    assert (root / sid).resolve().parent == root and (root / sid).name == sid


@pytest.mark.parametrize("name", ["...", ".mouse...1", "-_."])
def test_experanto_import_of_oddly_named_folders_stays_inside(tmp_path: Path, name) -> None:
    src = tmp_path / "in" / name
    make_experanto(src, np.random.default_rng(0))
    meta = src / "responses" / "meta.yml"
    meta.write_text(yaml.safe_dump(yaml.safe_load(meta.read_text()) | {"animal_id": "../../x"}))
    out = tmp_path / "out"
    summary = registry.sources.get("experanto")().import_(src, out, overwrite=False,
                                                           progress=False)  # fmt: skip
    (session,) = summary.sessions
    assert session.path.parent == out and session.path.is_dir()
    opened = Session.open(session.path)
    assert ".." not in opened.session_id and opened.animal_id == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


@pytest.mark.parametrize(
    ("field", "what"),
    [("animal_id", "animal_id"), ("stream", "stream name"), ("truth", "ground truth name")],
)
def test_writer_refuses_unsafe_names_and_writes_nothing(tmp_path: Path, field, what) -> None:
    """Session ids are in test_session_format; here the other names that become paths or ids."""
    root = tmp_path / "root"
    kwargs: dict = {}
    if field == "animal_id":
        kwargs["animal_id"] = "../m"
    elif field == "stream":
        from reliability_helpers import clock

        from neurofm.core.data import StreamInput

        kwargs["streams"] = {"../x": StreamInput("running", np.zeros((80, 1)), clock())}
    else:
        kwargs["ground_truth"] = {"../../x": np.zeros(3)}
    with pytest.raises(SessionFormatError, match=f"{what}.*(not a safe name|'../)"):
        write_small_session(root, **kwargs)
    assert not root.exists() or list(root.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["root"])


def test_reader_looks_up_ids_without_following_paths(tmp_path: Path) -> None:
    write_small_session(tmp_path / "data")
    write_small_session(tmp_path, "outside")
    with pytest.raises(SessionFormatError, match=r"sessions \['../outside'\] not found"):
        open_dataset(tmp_path / "data", ["../outside"])


def test_interval_tiers_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="tier"):
        Interval(start=0.0, end=1.0, tier="holdout")
