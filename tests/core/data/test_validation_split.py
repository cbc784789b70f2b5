"""Held-out validation for data without a validation tier (``data.validation_fraction``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neurofm.core.commands.train import train_and_save
from neurofm.core.data import Session, open_dataset
from neurofm.core.data.validation import hold_out_validation
from neurofm.core.model.presets import default_model_config
from neurofm.core.training.config import DataConfig, TrainingConfig


def _without_validation(sessions: list[Session]) -> list[Session]:
    """The sessions with their validation intervals moved into train (SENSORIUM 2023-like)."""
    return [
        s.with_intervals(
            [iv.model_copy(update={"tier": "train"}) if iv.tier == "validation" else iv
             for iv in s.manifest.intervals]
        )
        for s in sessions
    ]  # fmt: skip


def test_whole_train_intervals_are_held_out_deterministically(tiny_data: Path) -> None:
    sessions = _without_validation(open_dataset(tiny_data))
    split_sessions, split = hold_out_validation(sessions, 0.25, window_s=1.0)
    _, split_again = hold_out_validation(sessions, 0.25, window_s=1.0)
    assert split is not None and split.to_json() == split_again.to_json()
    for before, after in zip(sessions, split_sessions, strict=True):
        train = before.intervals("train")
        held = after.intervals("validation")
        assert round(0.25 * len(train)) <= len(held) < len(train)
        kept = {(iv.start, iv.end) for iv in after.intervals("train")}
        assert {(iv.start, iv.end) for iv in held} | kept == {(iv.start, iv.end) for iv in train}
        assert not kept & {(iv.start, iv.end) for iv in held}  # whole intervals, no overlap
        held_stimuli = {iv.stimulus_id for iv in held}
        assert not held_stimuli & {iv.stimulus_id for iv in after.intervals("train")}
        assert after.intervals("test") == before.intervals("test")
        np.testing.assert_array_equal(after.stream_data("calcium"), before.stream_data("calcium"))
    assert split.count == sum(len(v) for v in split.held_out.values())
    assert Session.open(sessions[0].path).intervals("validation")  # nothing written to disk


def test_data_with_a_validation_tier_or_fraction_zero_is_left_alone(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    assert hold_out_validation(sessions, 0.1, window_s=1.0)[1] is None
    assert hold_out_validation(_without_validation(sessions), 0.0, window_s=1.0)[1] is None
    assert DataConfig(path="d").validation_fraction == 0.1
    with pytest.raises(ValueError):
        DataConfig(path="d", validation_fraction=1.0)


def test_training_says_so_once_and_records_the_split(
    tiny_data: Path, tmp_path: Path, capsys
) -> None:
    sessions = _without_validation(open_dataset(tiny_data))
    config = default_model_config("tiny", frame_size=(18, 32))
    training = TrainingConfig(steps=2, batch_size=2, warmup_steps=1, eval_every=2, device="cpu")
    _, result = train_and_save(config, sessions, training, 1.0, tmp_path / "a", progress=False)
    printed = capsys.readouterr().out
    assert printed.count("no validation tier in the data") == 1
    assert "data.validation_fraction 0.1" in printed
    assert result.validation_loss and np.isfinite(result.validation_loss[-1][1])
    meta = json.loads((tmp_path / "a/meta.json").read_text())
    assert meta["validation_split"]["fraction"] == 0.1
    assert set(meta["validation_split"]["held_out"]) == {s.session_id for s in sessions}
    _, result = train_and_save(
        config, sessions, training, 1.0, tmp_path / "b", progress=False, validation_fraction=0.0
    )
    printed = capsys.readouterr().out
    assert "training without validation" in printed and "nan" not in printed
    assert result.validation_loss == []
    assert "validation_split" not in json.loads((tmp_path / "b/meta.json").read_text())


def test_the_note_says_why_there_is_no_validation(tiny_data: Path) -> None:
    from neurofm.core.data.validation import validation_note

    sessions = open_dataset(tiny_data)
    assert validation_note(sessions, None, 0.1, 1.0) is None
    assert "as long as a window" in validation_note(sessions, None, 0.1, 1e6)
    bare = _without_validation(sessions)
    assert "validation_fraction is 0" in validation_note(bare, None, 0.0, 1.0)
    _, split = hold_out_validation(bare, 0.1, window_s=1.0)
    assert "recorded in the checkpoint" in validation_note(bare, split, 0.1, 1.0)
