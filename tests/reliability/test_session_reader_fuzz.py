"""The session reader under generated bad input: damaged files, wrong arrays, bad timestamps, and
NaN/inf inside data streams (masked, never a crash). Manifest field mutations are fuzzed in
tests/core/data/test_session_format.py::test_corrupted_manifests_give_format_errors."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import INTERVALS, clock, copy_folder, units, write_small_session

from neurofm.core.data import Session, StreamInput, write_session
from neurofm.core.data.session import MANIFEST_NAME
from neurofm.core.data.windows import load_window
from neurofm.errors import DataError, SessionFormatError

FIXTURE_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
NORMALIZATION = {"calcium": "scale", "running": "zscore"}


@pytest.fixture(scope="module")
def session_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_small_session(tmp_path_factory.mktemp("session"))


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _read_everything(folder: Path) -> None:
    """Open a session and read every stream in windows covering it; only format errors may occur.

    20 windows, so a flipped bit that leaves a valid but huge clock (a last timestamp of 1e10 s)
    does not make the test itself allocate one window per second."""
    session = Session.open(folder)
    start, end = session.time_range
    for t0 in np.linspace(start, max(start, end - 1.0), 20):
        sample = load_window(session, float(t0), 1.0, NORMALIZATION)
        for stream in sample.streams.values():
            assert np.isfinite(stream.values.numpy()).all()


_DAMAGE = st.sampled_from(["truncate", "flip", "garbage", "append", "empty"])


@FIXTURE_SETTINGS
@given(data=st.data(), damage=_DAMAGE)
def test_damaged_files_give_format_errors(session_folder: Path, data, damage: str) -> None:
    """Any file truncated, bit-flipped, replaced by garbage, appended to or emptied: the reader
    answers with a SessionFormatError (or a DataError for a window the damaged clock cannot
    serve) or reads finite values, never another exception."""
    name = data.draw(st.sampled_from(_files(session_folder)), label="file")
    with tempfile.TemporaryDirectory() as tmp:
        folder = copy_folder(session_folder, Path(tmp) / "s0")
        file = folder / name
        raw = file.read_bytes()
        if damage == "truncate":
            raw = raw[: data.draw(st.integers(0, len(raw) - 1), label="keep")]
        elif damage == "flip":
            at = data.draw(st.integers(0, len(raw) - 1), label="at")
            bit = data.draw(st.integers(0, 7), label="bit")
            raw = raw[:at] + bytes([raw[at] ^ (1 << bit)]) + raw[at + 1 :]
        elif damage == "garbage":
            raw = data.draw(st.binary(max_size=300), label="garbage")
        elif damage == "append":
            raw = raw + data.draw(st.binary(min_size=1, max_size=64), label="tail")
        else:
            raw = b""
        file.write_bytes(raw)
        try:
            _read_everything(folder)
        except (SessionFormatError, DataError) as exc:  # DataError: a flipped bit left a valid
            assert str(exc)  # clock so large that no window can be cut from it; a message


def test_every_bit_flip_in_an_array_header_is_caught(session_folder: Path, tmp_path) -> None:
    """Exhaustively, for one array: each of the 1024 bits of its 128-byte .npy header flipped.
    (numpy's header parser fails in many ways: ValueError, SyntaxError, tokenize errors.)"""
    folder = copy_folder(session_folder, tmp_path / "s0")
    file = folder / "streams/calcium/data.npy"
    raw = file.read_bytes()
    outcomes = set()
    for at in range(128):
        for bit in range(8):
            file.write_bytes(raw[:at] + bytes([raw[at] ^ (1 << bit)]) + raw[at + 1 :])
            try:
                Session.open(folder)
                outcomes.add("read")
            except SessionFormatError as exc:
                assert "streams.calcium.data" in str(exc)
                outcomes.add("refused")
    assert "refused" in outcomes


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("[" * 100_000, "not valid JSON"),  # nesting deeper than the parser allows
        ('{"format_version": ' + "9" * 5000 + "}", "not valid JSON"),  # an absurd integer
        (b"\xff\xfe{}".decode("latin-1"), "not valid JSON"),  # not UTF-8
        ('{"format": "neurofm.session"}', "not a valid manifest"),
        ("[]", "not a valid manifest"),
    ],
)
def test_pathological_manifests(session_folder: Path, tmp_path: Path, text: str, found) -> None:
    folder = copy_folder(session_folder, tmp_path / "s0")
    (folder / MANIFEST_NAME).write_bytes(text.encode("latin-1"))
    with pytest.raises(SessionFormatError, match=found):
        Session.open(folder)


_DTYPES = st.sampled_from(
    ["float16", "float32", "float64", "int8", "int64", "uint16", "bool", "complex64", "<U3", "O"]
)
_SHAPES = st.lists(st.integers(0, 81), min_size=0, max_size=3).map(tuple)


@FIXTURE_SETTINGS
@given(data=st.data(), dtype=_DTYPES, shape=_SHAPES)
def test_arrays_of_another_dtype_or_shape(session_folder: Path, data, dtype: str, shape) -> None:
    """An array replaced by one of another dtype or shape (object arrays are pickles) is refused
    naming the array, before any data is read."""
    arrays = [n for n in _files(session_folder) if n.endswith(".npy")]
    name = data.draw(st.sampled_from(arrays), label="array")
    with tempfile.TemporaryDirectory() as tmp:
        folder = copy_folder(session_folder, Path(tmp) / "s0")
        before = np.load(folder / name)
        array = np.zeros(shape, dtype=dtype)
        np.save(folder / name, array, allow_pickle=True)  # object arrays are written as pickles
        if array.dtype == before.dtype and array.shape == before.shape:
            if name.endswith("timestamps.npy") and array.size > 1:
                # same dtype and shape, but a clock of zeros does not increase: refused for that
                with pytest.raises(SessionFormatError, match="strictly increasing"):
                    Session.open(folder)
            else:
                Session.open(folder)
            return
        with pytest.raises(SessionFormatError, match=r"(streams\.\w+\.\w+|units\.\w+): "):
            Session.open(folder)


@st.composite
def bad_timestamps(draw: st.DrawFn) -> np.ndarray:
    """A 1-D clock of 80 samples with one defect: a swap, a repeat, NaN or ±inf."""
    ts = clock().copy()
    i = draw(st.integers(0, ts.size - 2))
    defect = draw(st.sampled_from(["swap", "repeat", "nan", "inf", "-inf", "step back"]))
    if defect == "swap":
        ts[i], ts[i + 1] = ts[i + 1], ts[i]
    elif defect == "repeat":
        ts[i + 1] = ts[i]
    elif defect == "step back":
        # more than the 0.05 s sample interval: a step back of exactly one interval leaves the
        # clock increasing by a rounding error (2.05 -> 2.0500000000000003), which is valid
        ts[i + 1 :] -= draw(st.floats(0.06, 10.0))
    else:
        ts[draw(st.integers(0, ts.size - 1))] = float(defect)
    return ts


@FIXTURE_SETTINGS
@given(ts=bad_timestamps())
def test_bad_timestamps_are_refused_on_read_and_write(session_folder: Path, ts) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = copy_folder(session_folder, Path(tmp) / "s0")
        np.save(folder / "streams/calcium/timestamps.npy", ts)
        with pytest.raises(
            SessionFormatError,
            match=r"stream 'calcium': timestamps (contain NaN or inf|must be strictly increasing)",
        ):
            Session.open(folder)
        root = Path(tmp) / "out"
        stream = StreamInput("calcium", np.ones((ts.size, 3)), ts, per_unit=True)
        with pytest.raises(SessionFormatError, match=r"stream 'calcium': timestamps"):
            write_session(root, session_id="x", animal_id="m", species="mouse",
                          streams={"calcium": stream}, intervals=INTERVALS, units=units())  # fmt: skip
        assert not root.exists() or list(root.iterdir()) == []  # nothing half-written


@st.composite
def stream_with_gaps(draw: st.DrawFn, shape: tuple[int, ...]) -> np.ndarray:
    """Values of a given shape where a drawn fraction of entries is NaN, inf or -inf."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    scale = draw(st.sampled_from([1e-6, 1.0, 1e4]), label="scale")
    data = rng.normal(0.0, scale, shape)
    gaps = rng.random(shape) < draw(st.sampled_from([0.0, 0.05, 0.5, 1.0]), label="gap fraction")
    data[gaps] = rng.choice([np.nan, np.inf, -np.inf], size=int(gaps.sum()))
    return data


@settings(max_examples=25, deadline=None)
@given(
    running=stream_with_gaps((40, 2)),
    movie=stream_with_gaps((40, 2, 3)),
    t0=st.floats(0.0, 3.0),
    duration=st.floats(0.05, 1.0),
)
def test_nan_and_inf_in_data_are_masked_not_crashing(running, movie, t0, duration) -> None:
    """NaN/±inf samples anywhere in a data stream are written as they are, marked invalid by
    ``load_window`` (entry-wise for [T, C], sample-wise for more dimensions) and set to 0."""
    ts = clock(10.0)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_session(
            tmp, session_id="gaps", animal_id="m", species="mouse", intervals=INTERVALS,
            streams={"running": StreamInput("running", running, ts),
                     "movie": StreamInput("movie", movie, ts)},
        )  # fmt: skip
        session = Session.open(path)
        for stats in (session.stream_spec(n).statistics for n in ("running", "movie")):
            assert np.isfinite(stats.mean).all() and np.isfinite(stats.std).all()
        sample = load_window(session, t0, duration, {"running": "zscore", "movie": "scale"})
        i0, i1 = np.searchsorted(ts, [t0, t0 + duration], side="left")
        run, mov = sample.streams["running"], sample.streams["movie"]
        assert np.isfinite(run.values.numpy()).all() and np.isfinite(mov.values.numpy()).all()
        np.testing.assert_array_equal(run.valid.numpy(), np.isfinite(running[i0:i1]))
        expected = np.isfinite(movie[i0:i1]).all(axis=(1, 2))
        np.testing.assert_array_equal(mov.valid.numpy(), expected)
        assert (run.values.numpy()[~run.valid.numpy()] == 0).all()


@pytest.mark.parametrize("t0", [-1.0, 3.5])
def test_windows_reaching_outside_the_recording_are_data_errors(session_folder, t0) -> None:
    """Also tested for ValueError in test_session_format; here: the type the CLI reports."""
    session = Session.open(session_folder)
    with pytest.raises(DataError, match=r"lies outside session 's0'.*choose a window inside"):
        load_window(session, t0, 1.0, NORMALIZATION)
    with pytest.raises(DataError, match="lies outside session"):
        load_window(session, 0.0, 10.0, NORMALIZATION)  # longer than the recording


def test_a_session_without_samples_says_so(tmp_path: Path) -> None:
    empty = StreamInput("running", np.zeros((0, 1)), np.zeros(0))
    path = write_session(tmp_path, session_id="e", animal_id="m", species="mouse",
                         streams={"running": empty}, intervals=INTERVALS)  # fmt: skip
    with pytest.raises(DataError, match="session 'e' has no samples in any stream"):
        load_window(Session.open(path), 0.0, 1.0, {"running": "zscore"})
