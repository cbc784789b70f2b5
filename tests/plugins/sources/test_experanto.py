"""The experanto (OmniMouse) importer: values survive unchanged, malformed input leaves nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from source_fixtures import SCREEN_TRIALS, make_experanto, train_two_steps

from neurofm import registry
from neurofm.core.cli import main
from neurofm.core.data import Session
from neurofm.core.data.sources import SourceFormatError


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, object]:
    root = tmp_path_factory.mktemp("experanto")
    expected = make_experanto(root / "mouse26872-4-7", np.random.default_rng(0))
    source = registry.sources.get("experanto")()
    summary = source.import_(root / "mouse26872-4-7", root / "out", overwrite=False, progress=False)
    return root / "out", expected, summary


def test_responses_timestamps_and_units_survive(imported) -> None:
    out, exp, summary = imported
    session = Session.open(out / "mouse26872-4-7")
    assert session.animal_id == "26872"
    np.testing.assert_array_equal(session.stream_data("calcium"), exp["responses"])
    ts = session.stream_timestamps("calcium")
    assert ts.dtype == np.float64 and ts[0] > 1.4e9
    np.testing.assert_array_equal(ts, exp["resp_ts"])  # epoch clock kept exactly
    spec = session.stream_spec("calcium")
    assert spec.per_unit and spec.sampling_rate_hz == pytest.approx(8.1088, rel=1e-9)
    units = session.units
    np.testing.assert_array_equal(units.ids, exp["ids"])
    np.testing.assert_allclose(units.position_um, exp["coords"], rtol=1e-6)
    np.testing.assert_array_equal(units.time_offset_s, exp["phase"])
    assert list(units.area) == ["V1", "V1", "LM", "V1", "AL", "LM"]
    assert summary.sessions[0].units == 6


def test_behaviour_streams_keep_blinks_and_rates(imported) -> None:
    out, exp, _ = imported
    session = Session.open(out / "mouse26872-4-7")
    pupil = session.stream_data("pupil")
    assert pupil.shape == (exp["eye"].shape[0], 2)
    np.testing.assert_allclose(pupil[:, 0], exp["eye"][:, 0].astype(np.float32))
    assert np.isnan(pupil[5:9, 0]).all() and np.isnan(pupil[5:9, 1]).all()  # NaN, not zero
    np.testing.assert_allclose(
        pupil[20:30, 1], np.gradient(exp["eye"][:, 0], exp["eye_ts"])[20:30], rtol=1e-4
    )
    np.testing.assert_allclose(session.stream_data("gaze"), exp["eye"][:, 1:].astype(np.float32))
    np.testing.assert_array_equal(session.stream_timestamps("pupil"), exp["eye_ts"])
    assert session.stream_data("running").shape[1] == 1
    assert session.stream_spec("running").sampling_rate_hz == pytest.approx(49.7, rel=1e-6)


def test_screen_trials_become_intervals_and_streams(imported) -> None:
    out, exp, summary = imported
    session = Session.open(out / "mouse26872-4-7")
    shown = [(t, m) for t, m in exp["trials"] if m["modality"] != "blank"]
    intervals = session.intervals()
    assert len(intervals) == len(shown)
    assert [iv.tier for iv in intervals] == [s[2] for s in SCREEN_TRIALS if s[0] != "blank"]
    assert [iv.stimulus_id for iv in intervals] == ["v0", "i0", "v1", "v1", "i1", "v2"]
    tests = session.intervals("test")
    assert len(tests) == 2 and tests[0].stimulus_id == tests[1].stimulus_id  # repeats
    assert intervals[0].start == exp["trials"][0][0]
    assert intervals[0].end == exp["screen_ts"][exp["trials"][1][1]["first_frame_idx"]]  # blank out
    movie, image = session.stream_data("movie"), session.stream_data("image")
    assert movie.shape == (4 * 60, 6, 8) and image.shape == (2, 6, 8)  # interleaved in one session
    np.testing.assert_array_equal(movie[:60], exp["frames"][0])
    np.testing.assert_array_equal(image[1], exp["frames"][8])
    assert session.stream_timestamps("image")[0] == exp["trials"][2][0]
    assert any("blank" in why for _, why in summary.skipped)
    assert not list(out.glob(".*"))  # no scratch left


def test_a_model_trains_on_the_import(imported) -> None:
    out, _, _ = imported
    train_two_steps(out, ("calcium", "running", "pupil"), window_s=1.0)


def _copy(tmp_path: Path) -> Path:
    src = tmp_path / "exp"
    make_experanto(src, np.random.default_rng(1))
    return src


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    shutil.rmtree(src / "responses")
    with pytest.raises(SourceFormatError, match="responses"):
        registry.sources.get("experanto")().import_(
            src, tmp_path / "out", overwrite=False, progress=False
        )
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_mismatched_lengths_leave_no_output(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    ts = np.load(src / "treadmill/timestamps.npy")
    np.save(src / "treadmill/timestamps.npy", ts[:-3])
    with pytest.raises(SourceFormatError, match="expected one timestamp per sample"):
        registry.sources.get("experanto")().import_(
            src, tmp_path / "out", overwrite=False, progress=False
        )
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_unknown_tier_names_the_fix(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    meta_file = src / "screen/meta/00002.yml"
    meta = yaml.safe_load(meta_file.read_text()) | {"tier": "holdout"}
    meta_file.write_text(yaml.safe_dump(meta))
    with pytest.raises(SourceFormatError, match=r"unknown tier name 'holdout'.*tier_aliases"):
        registry.sources.get("experanto")().import_(
            src, tmp_path / "out", overwrite=False, progress=False
        )
    assert not (tmp_path / "out").exists()
    config = tmp_path / "importer.yaml"
    config.write_text(
        "type: experanto\ntier_aliases: {holdout: test, train: train, validation: validation, test: test}\n"
    )
    assert (
        main(
            [
                "import",
                "experanto",
                str(src),
                str(tmp_path / "out"),
                "--config",
                str(config),
                "--quiet",
            ]
        )
        == 0
    )
    assert len(Session.open(tmp_path / "out/exp").intervals("test")) == 3


def test_cli_prints_a_summary_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    src = _copy(tmp_path)
    assert main(["import", "experanto", str(src), str(tmp_path / "out"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "imported 1 session(s)" in printed and "calcium" in printed and "blank" in printed
    assert main(["import", "experanto", str(src), str(tmp_path / "out"), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (
        main(["import", "experanto", str(src), str(tmp_path / "out"), "--quiet", "--overwrite"])
        == 0
    )
    assert main(["import", "experant", str(src), str(tmp_path / "o2")]) == 2
    assert "did you mean 'experanto'" in capsys.readouterr().err.lower()


def _eye_with_four_columns(src: Path, names: list[str] | None) -> np.ndarray:
    eye = np.load(src / "eye_tracker/data.npy")
    four = np.concatenate([eye[:, 1:], eye[:, :1], 0.5 * eye[:, :1]], 1)  # x, y, major, minor
    np.save(src / "eye_tracker/data.npy", four)
    meta = {"modality": "sequence"} | ({"column_names": names} if names else {})
    (src / "eye_tracker/meta.yml").write_text(yaml.safe_dump(meta))
    return four


def test_an_uncheckable_column_guess_is_an_error_naming_columns_and_key(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    four = _eye_with_four_columns(src, None)
    with pytest.raises(
        SourceFormatError, match=r"4 column.*no column_names.*`eye_tracker_columns`"
    ):
        registry.sources.get("experanto")().import_(
            src, tmp_path / "out", overwrite=False, progress=False
        )
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    source = registry.sources.get("experanto")
    names = ["pupil_x", "pupil_y", "major_radius", "minor_radius"]
    summary = source(source.Config(eye_tracker_columns=names)).import_(
        src, tmp_path / "out", overwrite=False, progress=False
    )
    session = Session.open(tmp_path / "out/exp")
    np.testing.assert_array_equal(session.stream_data("pupil")[:, 0], four[:, 2].astype(np.float32))
    np.testing.assert_array_equal(session.stream_data("gaze"), four[:, :2].astype(np.float32))
    notes = session.manifest.import_notes
    assert "eye_tracker/data column 3 'minor_radius': not used" in notes.unused
    assert any(g.startswith("eye_tracker columns") for g in notes.guesses)
    printed = summary.format()
    assert "column 3 'minor_radius': not used" in printed and "guessed" in printed


def test_named_columns_choose_the_pupil_size_by_name(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    four = _eye_with_four_columns(
        src, ["pupil_x", "pupil_y", "pupil_major_radius", "pupil_minor_radius"]
    )
    registry.sources.get("experanto")().import_(
        src, tmp_path / "out", overwrite=False, progress=False
    )
    session = Session.open(tmp_path / "out/exp")
    np.testing.assert_array_equal(session.stream_data("pupil")[:, 0], four[:, 2].astype(np.float32))
    assert not any("eye_tracker columns" in g for g in session.manifest.import_notes.guesses)


def test_rates_come_from_metadata_or_are_measured_within_trials(imported, tmp_path: Path) -> None:
    out, _, summary = imported
    session = Session.open(out / "mouse26872-4-7")
    assert session.stream_spec("movie").sampling_rate_hz == 30.0  # stated by screen/meta.yml
    image = session.stream_spec("image")
    assert image.event_like and image.sampling_rate_hz == pytest.approx(1 / 2.0)  # 2 s shown
    assert session.time_range[1] == pytest.approx(
        max(session.stream_timestamps(n)[-1] + 1 / session.stream_spec(n).sampling_rate_hz
            for n in session.stream_names if n != "image")
    )  # fmt: skip
    assert any("pupil sampling rate" in what for what, _ in summary.guesses)
    src = _copy(tmp_path)
    (src / "screen/meta.yml").write_text(yaml.safe_dump({"modality": "screen"}))
    registry.sources.get("experanto")().import_(
        src, tmp_path / "out", overwrite=False, progress=False
    )
    measured = Session.open(tmp_path / "out/exp").stream_spec("movie").sampling_rate_hz
    assert measured == pytest.approx(30.0, rel=1e-6)  # not lowered by the blanks between clips


def test_unread_folders_and_files_are_reported(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    (src / "wheel_camera").mkdir()
    np.save(src / "responses/meta/layers.npy", np.zeros(6))
    summary = registry.sources.get("experanto")().import_(
        src, tmp_path / "out", overwrite=False, progress=False
    )
    skipped = dict(summary.skipped)
    assert "exp/wheel_camera" in skipped and "exp/responses/meta/layers.npy" in skipped
    unused = Session.open(tmp_path / "out/exp").manifest.import_notes.unused
    assert any(u.startswith("wheel_camera") for u in unused)
