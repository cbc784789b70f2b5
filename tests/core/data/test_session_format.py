"""The session format on disk: round trips, window cutting, memory mapping, bad input, atomic writes."""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nested_paths import nested_paths

from neurofm.core.data import Interval, Session, StreamInput, UnitTable, write_session
from neurofm.core.data import writer as writer_module
from neurofm.core.data.session import MANIFEST_NAME
from neurofm.errors import SessionFormatError

N_UNITS = 3
INTERVALS = [
    Interval(start=0.0, end=4.0, tier="train", trial=0),
    Interval(start=4.0, end=6.0, tier="validation", trial=1),
    Interval(start=6.0, end=8.0, tier="test", stimulus_id="clip-0", trial=2),
]


def _clock(rate: float, duration: float, offset: float = 0.0) -> np.ndarray:
    return offset + np.arange(round(duration * rate)) / rate


def _streams(rate_a: float = 30.0, rate_b: float = 20.0, duration: float = 8.0) -> dict:
    ts_a, ts_b = _clock(rate_a, duration), _clock(rate_b, duration, offset=0.01)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(ts_a.size, 2)).astype(np.float32)
    a[ts_a >= 4.0] += 100.0  # outside the train tier: must not enter the statistics
    a[3, 1] = np.nan  # NaN samples are ignored by the statistics
    b = (ts_b[:, None] * 10).astype(np.float64)  # written as float32
    calcium = rng.poisson(2.0, size=(ts_a.size, N_UNITS)).astype(np.float32)
    return {
        "a": StreamInput("wheel", a, ts_a, channel_names=["x", "y"], sampling_rate_hz=rate_a),
        "b": StreamInput("eye", b, ts_b),
        "calcium": StreamInput("calcium", calcium, ts_a, per_unit=True),
    }


def _units() -> UnitTable:
    return UnitTable(
        ids=np.arange(N_UNITS) + 100,
        position_um=np.arange(N_UNITS * 3, dtype=np.float64).reshape(N_UNITS, 3),
        area=np.array(["V1", "V1", "LM"]),
    )


def _write(root: Path, session_id: str = "s0", **kwargs: Any) -> Path:
    args: dict[str, Any] = {
        "session_id": session_id,
        "animal_id": "m1",
        "species": "mouse",
        "streams": _streams(),
        "intervals": INTERVALS,
        "units": _units(),
        "ground_truth": {"rates": np.ones((240, N_UNITS))},
        "attributes": {"simulated": True},
    }
    args.update(kwargs)
    return write_session(root, **args)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("session"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A fresh session folder that a test may corrupt."""
    return _write(tmp_path)


# -- round trip ---------------------------------------------------------------------------------
def test_round_trip(written: Path) -> None:
    session = Session.open(written)
    source = _streams()
    assert (session.session_id, session.animal_id) == ("s0", "m1")
    assert session.manifest.species == "mouse" and session.manifest.attributes == {
        "simulated": True
    }
    assert session.stream_names == ["a", "b", "calcium"]
    for name, stream in source.items():
        np.testing.assert_array_equal(session.stream_data(name), stream.data.astype(np.float32))
        np.testing.assert_array_equal(session.stream_timestamps(name), stream.timestamps)
        assert session.stream_data(name).dtype == np.float32
        assert session.stream_timestamps(name).dtype == np.float64
    spec_a, spec_b = session.stream_spec("a"), session.stream_spec("b")
    assert spec_a.sampling_rate_hz == 30.0 and spec_a.channel_names == ["x", "y"]
    assert spec_a.modality == "wheel"
    assert math.isclose(spec_b.sampling_rate_hz, 20.0, rel_tol=1e-9)  # inferred from timestamps
    assert session.stream_spec("calcium").per_unit
    units = session.units
    np.testing.assert_array_equal(units.ids, [100, 101, 102])
    np.testing.assert_array_equal(units.position_um, _units().position_um)
    assert list(units.area) == ["V1", "V1", "LM"]
    assert session.intervals() == INTERVALS
    assert session.intervals("test") == [INTERVALS[2]]
    np.testing.assert_array_equal(session.ground_truth("rates"), np.ones((240, N_UNITS)))
    start, end = session.time_range
    assert start == 0.0 and math.isclose(end, 0.01 + 159 / 20 + 1 / 20)


def test_statistics_use_the_train_tier_only(written: Path) -> None:
    session = Session.open(written)
    source = _streams()
    for name in ("a", "b"):
        stream = source[name]
        train = stream.data[stream.timestamps < 4.0].astype(np.float32).astype(np.float64)
        stats = session.stream_spec(name).statistics
        assert stats.tier == "train"
        np.testing.assert_allclose(stats.mean, np.nanmean(train, 0), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(stats.std, np.nanstd(train, 0), rtol=1e-5)
    a = session.stream_spec("a").statistics
    assert a.count == 119  # 120 train samples, one NaN in channel y
    assert a.mean[0] < 10  # the +100 outside the train tier did not leak in
    with pytest.raises(SessionFormatError, match="no ground truth 'nope'"):
        session.ground_truth("nope")
    with pytest.raises(SessionFormatError, match="has no stream 'nope'"):
        session.stream_spec("nope")


# -- windows ------------------------------------------------------------------------------------
def test_windows_at_each_stream_rate(written: Path) -> None:
    session = Session.open(written)
    cut = session.window(1.0, 3.0, ["a", "b"])
    assert cut["a"].data.shape == (60, 2) and cut["b"].data.shape == (40, 1)
    assert cut["a"].timestamps[0] == 1.0  # a sample exactly at t0 is inside [t0, t1)
    assert cut["a"].timestamps[-1] < 3.0 and np.isclose(cut["a"].timestamps[-1], 3.0 - 1 / 30)
    assert np.isclose(cut["b"].timestamps[0], 1.01) and np.isclose(cut["b"].timestamps[-1], 2.96)
    everything = session.window(1.0, 3.0)
    assert set(everything) == {"a", "b", "calcium"} and everything["calcium"].data.shape == (60, 3)
    truth = session.window(1.0, 3.0, ["a"], ground_truth=["rates"])["ground_truth.rates"]
    assert truth.data.shape == (60, N_UNITS)


def test_windows_are_copies_read_from_memory_maps(written: Path) -> None:
    session = Session.open(written)
    for name in session.stream_names:
        assert isinstance(session.stream_data(name), np.memmap)
        assert isinstance(session.stream_timestamps(name), np.memmap)
    w = session.window(2.0, 2.5, ["a"])["a"]
    assert type(w.data) is np.ndarray and type(w.timestamps) is np.ndarray
    assert not np.shares_memory(w.data, session.stream_data("a"))
    assert w.data.flags.writeable
    w.data[:] = -1.0  # changing a window never touches the session
    assert (session.window(2.0, 2.5, ["a"])["a"].data != -1.0).all()


@pytest.mark.parametrize(
    ("t0", "t1"), [(-1.0, 1.0), (7.5, 9.0), (100.0, 101.0), (2.0, 2.0), (3.0, 1.0)]
)
def test_windows_outside_the_recording_are_refused(written: Path, t0: float, t1: float) -> None:
    session = Session.open(written)
    with pytest.raises(ValueError, match=r"outside session 's0'|must be after its start"):
        session.window(t0, t1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate_a=st.floats(1.0, 200.0),
    rate_b=st.floats(1.0, 200.0),
    start=st.floats(0.0, 1.0),
    length=st.floats(0.001, 1.0),
)
def test_window_cutting_property(rate_a: float, rate_b: float, start: float, length: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        streams = {}
        for name, rate in (("a", rate_a), ("b", rate_b)):
            ts = np.arange(math.ceil(2 * rate) + 1) / rate  # covers [0, 2] s
            data = np.arange(ts.size, dtype=np.float32)[:, None]
            streams[name] = StreamInput(name, data, ts, sampling_rate_hz=rate)
        path = write_session(
            tmp, session_id="p", animal_id="m", species="mouse", streams=streams,
            intervals=[Interval(start=0.0, end=2.0, tier="train")],
        )  # fmt: skip
        session = Session.open(path)
        t0, t1 = start, start + length
        cut = session.window(t0, t1)
        for name in ("a", "b"):
            ts = np.asarray(session.stream_timestamps(name))
            inside = (ts >= t0) & (ts < t1)
            np.testing.assert_array_equal(cut[name].timestamps, ts[inside])
            np.testing.assert_array_equal(cut[name].data[:, 0], np.flatnonzero(inside))
            assert ((cut[name].timestamps >= t0) & (cut[name].timestamps < t1)).all()


# -- bad input ----------------------------------------------------------------------------------
def _edit_manifest(folder: Path, edit) -> None:
    path = folder / MANIFEST_NAME
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_missing_manifest(folder: Path) -> None:
    (folder / MANIFEST_NAME).unlink()
    with pytest.raises(SessionFormatError, match=r"manifest\.json not found"):
        Session.open(folder)


def test_invalid_json(folder: Path) -> None:
    text = (folder / MANIFEST_NAME).read_text()
    (folder / MANIFEST_NAME).write_text(text[: len(text) // 2])
    with pytest.raises(SessionFormatError, match=r"manifest\.json is not valid JSON"):
        Session.open(folder)


def test_truncated_npy(folder: Path) -> None:
    file = folder / "streams" / "a" / "data.npy"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    with pytest.raises(SessionFormatError, match=r"streams\.a\.data: cannot read .*data\.npy"):
        Session.open(folder)


@pytest.mark.parametrize(
    ("array", "found"),
    [(np.zeros((240, 3), np.float32), r"float32 \[240, 3\]"), (np.zeros((240, 2)), "float64")],
)
def test_array_not_matching_the_manifest(folder: Path, array: np.ndarray, found: str) -> None:
    np.save(folder / "streams" / "a" / "data.npy", array)
    with pytest.raises(
        SessionFormatError, match=rf"streams\.a\.data: .*holds {found}.*expects float32 \[240, 2\]"
    ):
        Session.open(folder)


def test_missing_stream_file(folder: Path) -> None:
    (folder / "streams" / "b" / "timestamps.npy").unlink()
    with pytest.raises(
        SessionFormatError, match=r"streams\.b\.timestamps: file .*timestamps\.npy is missing"
    ):
        Session.open(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda ts: ts.__setitem__(5, ts[4]), "strictly increasing"),
        (lambda ts: ts.__setitem__(slice(10, 12), ts[10:12][::-1].copy()), "strictly increasing"),
        (lambda ts: ts.__setitem__(7, np.nan), "NaN or inf"),
        (lambda ts: ts.__setitem__(-1, np.inf), "NaN or inf"),
    ],
)
def test_bad_timestamps_on_disk(folder: Path, change, message: str) -> None:
    file = folder / "streams" / "b" / "timestamps.npy"
    ts = np.load(file)
    change(ts)
    np.save(file, ts)
    file = r"\(in .*s0/streams/b/timestamps\.npy\)"
    with pytest.raises(
        SessionFormatError, match=f"session 's0', stream 'b': timestamps .*{message}.*{file}"
    ):
        Session.open(folder)
    Session.open(folder, check_timestamps=False)  # the check can be skipped for trusted data


@pytest.mark.parametrize(
    ("timestamps", "message"),
    [
        (np.array([0.0, 0.1, 0.1, 0.2]), "strictly increasing"),
        (np.array([0.0, 0.2, 0.1, 0.3]), "strictly increasing"),
        (np.array([0.0, np.nan, 0.2, 0.3]), "NaN or inf"),
        (np.array([0.0, 0.1, 0.2]), "4 samples but timestamps has 3"),
    ],
)
def test_bad_timestamps_when_writing(tmp_path: Path, timestamps: np.ndarray, message: str) -> None:
    stream = StreamInput("x", np.zeros((4, 1)), timestamps)
    with pytest.raises(SessionFormatError, match=f"session 's' .*stream 'x': .*{message}"):
        write_session(tmp_path, session_id="s", animal_id="m", species="mouse",
                      streams={"x": stream}, intervals=[])  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_per_unit_width_must_equal_unit_count(folder: Path, tmp_path: Path) -> None:
    _edit_manifest(folder, lambda m: m["streams"]["calcium"]["data"]["shape"].__setitem__(1, 4))
    with pytest.raises(
        SessionFormatError, match=r"per-unit stream 'calcium' must have shape \[T, 3\]"
    ):
        Session.open(folder)
    streams = _streams()
    streams["calcium"] = StreamInput(
        "calcium", np.zeros((240, 5)), streams["a"].timestamps, per_unit=True
    )
    with pytest.raises(
        SessionFormatError, match=r"per-unit stream 'calcium' must have shape \[T, 3\]"
    ):
        _write(tmp_path / "other", streams=streams)
    assert not (tmp_path / "other" / "s0").exists()


@pytest.mark.parametrize("bad_id", ["../x", "..", "a/b", "/abs", "", ".hidden", "x" * 200])
def test_unsafe_session_ids(tmp_path: Path, folder: Path, bad_id: str) -> None:
    with pytest.raises(SessionFormatError, match=r"session_id .* is not a safe name"):
        _write(tmp_path / "root", session_id=bad_id)
    assert not (tmp_path / "x").exists() and not (tmp_path / "root").exists()
    _edit_manifest(folder, lambda m: m.__setitem__("session_id", bad_id))
    with pytest.raises(SessionFormatError, match=r"session_id: .*not a safe name"):
        Session.open(folder)


@pytest.mark.parametrize(
    "bad_file", ["../outside.npy", "/etc/passwd", "streams/../../x.npy", "./a.npy"]
)
def test_file_paths_must_stay_in_the_folder(folder: Path, bad_file: str) -> None:
    np.save(folder.parent / "outside.npy", np.zeros((240, 2), np.float32))
    _edit_manifest(folder, lambda m: m["streams"]["a"]["data"].__setitem__("file", bad_file))
    with pytest.raises(
        SessionFormatError, match=r"streams\.a\.data\.file: file path .* must be relative"
    ):
        Session.open(folder)


# -- corrupted manifests never raise anything but SessionFormatError -----------------------------
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["../x", "streams/a/data.npy", "float64", "int8", "train", "manifest.json"]),
    st.lists(st.integers(-3, 300), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_corrupted_manifests_give_format_errors(written: Path, data: st.DataObject) -> None:
    manifest = json.loads((written / MANIFEST_NAME).read_text())
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        paths = nested_paths(manifest)
        path = data.draw(st.sampled_from(paths), label="path")
        parent = manifest
        for key in path[:-1]:
            parent = parent[key]
        if data.draw(st.booleans(), label="delete") and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(_VALUES, label="value")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "s0"
        copy.symlink_to(written)  # arrays from the valid folder, manifest from the draw
        fake = Path(tmp) / "fake"
        fake.mkdir()
        for child in written.iterdir():
            if child.name != MANIFEST_NAME:
                (fake / child.name).symlink_to(child)
        (fake / MANIFEST_NAME).write_text(json.dumps(manifest))
        with contextlib.suppress(SessionFormatError):
            Session.open(fake)


# -- atomic writes -------------------------------------------------------------------------------
def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real_save = writer_module._save

    def failing_save(folder: Path, rel: str, array: np.ndarray):
        calls.append(rel)
        if len(calls) == 4:
            raise OSError("disk full")
        return real_save(folder, rel, array)

    monkeypatch.setattr(writer_module, "_save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        _write(tmp_path)
    assert len(calls) == 4
    assert list(tmp_path.iterdir()) == []  # no folder, and the .partial one was cleaned


def test_interrupted_write_leaves_only_an_ignored_partial(tmp_path: Path, monkeypatch) -> None:
    from neurofm.core.data import open_dataset

    _write(tmp_path, session_id="good")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer_module, "compute_statistics", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path, session_id="bad")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good"]
    partial = tmp_path / ".bad.partial-left-by-a-kill"  # what a hard kill would leave behind
    (partial / "streams").mkdir(parents=True)
    assert [s.session_id for s in open_dataset(tmp_path)] == ["good"]


def test_existing_folder_is_not_overwritten(tmp_path: Path) -> None:
    path = _write(tmp_path)
    before = (path / MANIFEST_NAME).read_text()
    streams = _streams()
    streams["a"] = StreamInput("wheel", np.ones((240, 2)), streams["a"].timestamps)
    with pytest.raises(FileExistsError, match="already exists"):
        _write(tmp_path, streams=streams)
    assert (path / MANIFEST_NAME).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s0"]
    _write(tmp_path, streams=streams, overwrite=True)
    assert (Session.open(path).stream_data("a") == 1.0).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s0"]
