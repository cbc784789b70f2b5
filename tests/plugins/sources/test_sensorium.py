"""The SENSORIUM 2022/2023 importer: trials laid out in order, repeats kept, malformed input rejected."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from source_fixtures import make_sensorium, train_two_steps

from neurofm import registry
from neurofm.core.data import Session
from neurofm.core.data.sources import SourceFormatError

NAME = "dynamic29156-11-10-Video-8744edeac3b4"


def _import(src: Path, out: Path):
    return registry.sources.get("sensorium")().import_(src, out, overwrite=False, progress=False)


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("sensorium")
    expected = make_sensorium(root / "raw" / NAME, np.random.default_rng(2), dynamic=True)
    summary = _import(root / "raw", root / "out")  # a folder of recordings
    return Session.open(root / "out" / NAME), expected, summary


def test_dynamic_trials_values_in_trial_order(dynamic) -> None:
    session, exp, summary = dynamic
    assert session.animal_id == "26872"
    kept = [
        i
        for i in sorted(range(6), key=lambda i: exp["order"][i])
        if exp["tiers"][i] != "live_test_main"
    ]
    intervals = session.intervals()
    assert [iv.trial for iv in intervals] == kept
    calcium, ts = session.stream_data("calcium"), session.stream_timestamps("calcium")
    j = 0
    for iv, i in zip(intervals, kept, strict=True):
        n = exp["lengths"][i]
        np.testing.assert_array_equal(calcium[j : j + n], exp["responses"][i].T)
        np.testing.assert_allclose(
            session.stream_data("running")[j : j + n, 0], exp["behavior"][i][1], rtol=1e-6
        )
        np.testing.assert_allclose(
            session.stream_data("pupil")[j : j + n, 0], exp["behavior"][i][0], rtol=1e-6
        )
        np.testing.assert_allclose(
            session.stream_data("gaze")[j : j + n], exp["center"][i].T, rtol=1e-6
        )
        assert ts[j] == iv.start and iv.end == pytest.approx(iv.start + n / 30.0)
        j += n
    assert session.stream_data("movie").shape == (j, 6, 8)
    assert any("withheld" in why for _, why in summary.skipped)


def test_dynamic_repeats_and_tiers(dynamic) -> None:
    session, _, _ = dynamic
    tests = session.intervals("test")  # SENSORIUM 2023 "oracle" -> test, with repeated clips
    assert len(tests) == 2 and {iv.stimulus_id for iv in tests} == {"r"}
    gaps = [
        b.start - a.end for a, b in zip(session.intervals(), session.intervals()[1:], strict=False)
    ]
    assert min(gaps) == pytest.approx(1.0)  # blank time between trials lies outside intervals
    np.testing.assert_array_equal(session.units.ids, np.arange(1, 6))


def test_a_model_trains_on_dynamic(dynamic) -> None:
    session, _, _ = dynamic
    train_two_steps(session.path, ("calcium", "running", "pupil"), window_s=1.0)


def test_static_images_become_one_sample_per_trial(tmp_path: Path) -> None:
    exp = make_sensorium(
        tmp_path / "static26872-17-20-GrayImageNet", np.random.default_rng(3), dynamic=False
    )
    _import(tmp_path / "static26872-17-20-GrayImageNet", tmp_path / "out")
    session = Session.open(tmp_path / "out/static26872-17-20-GrayImageNet")
    order = sorted(range(8), key=lambda i: exp["order"][i])
    image = session.stream_data("image")
    assert image.shape == (8, 6, 8) and session.stream_spec("image").modality == "image"
    for k, i in enumerate(order):
        np.testing.assert_array_equal(session.stream_data("calcium")[k], exp["responses"][i])
        np.testing.assert_allclose(
            session.stream_data("pupil")[k], exp["behavior"][i][:2], rtol=1e-6
        )
    tiers = [iv.tier for iv in session.intervals()]
    assert tiers == [exp["tiers"][i] for i in order]
    test_ids = sorted(iv.stimulus_id for iv in session.intervals("test"))
    assert test_ids == ["100", "100", "101"]
    np.testing.assert_allclose(session.units.position_um, exp["coords"], rtol=1e-6)
    train_two_steps(tmp_path / "out", ("calcium", "running", "pupil"), window_s=1.0)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "data/responses/3.npy").unlink(), "3 trial files|5 trial files"),
        (lambda r: np.save(r / "data/behavior/2.npy", np.zeros((2, 7))), "Mismatched lengths"),
        (
            lambda r: np.save(r / "meta/trials/tiers.npy", np.array(["train"] * 5 + ["bonus"])),
            "unknown tier name 'bonus'",
        ),
        (lambda r: __import__("shutil").rmtree(r / "meta/neurons"), "meta/neurons/ missing"),
    ],
)
def test_malformed_recordings_are_rejected(tmp_path: Path, damage, message: str) -> None:
    rec = tmp_path / NAME
    make_sensorium(rec, np.random.default_rng(4), dynamic=True)
    damage(rec)
    with pytest.raises(SourceFormatError, match=message):
        _import(rec, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_unread_files_and_the_clock_guess_are_reported(dynamic) -> None:
    session, _, summary = dynamic
    notes = session.manifest.import_notes
    assert notes.source == "sensorium"
    assert any(u.startswith("meta/statistics") for u in notes.unused)
    assert any(u.startswith("meta/neurons/layer.npy") for u in notes.unused)
    assert any(g.startswith("clock: SENSORIUM states no times") for g in notes.guesses)
    rates = {session.stream_spec(n).sampling_rate_hz for n in session.stream_names}
    assert rates == {30.0}  # frame_rate_hz, the layout's own clock
    assert "meta/statistics" in summary.format()
