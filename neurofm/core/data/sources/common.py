"""Building blocks shared by importers: tiers, ids, names, rates, pupil derivative, scratch memmaps."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import get_args

import numpy as np
import yaml

from neurofm.core.data.manifest import Interval, Tier
from neurofm.core.data.rates import estimate_rate, presentation_rate
from neurofm.core.data.session import Session
from neurofm.core.data.sources import ImportedSession, ImportSummary, SourceFormatError
from neurofm.core.data.writer import StreamInput

__all__ = [
    "DEFAULT_GAZE_X_NAMES",
    "DEFAULT_GAZE_Y_NAMES",
    "DEFAULT_PUPIL_DERIVATIVE_NAMES",
    "DEFAULT_PUPIL_SIZE_NAMES",
    "DEFAULT_TIER_ALIASES",
    "animal_from_name",
    "describe_session",
    "find_name",
    "find_pupil_size",
    "load_npy",
    "pupil_with_derivative",
    "read_yaml",
    "resolve_rates",
    "resolve_tier",
    "safe_id",
    "scratch_array",
]

#: Names of a pupil-size column or series, best first. A name matches when it equals one of these
#: or holds all of its ``_``-separated words (``pupil_area_px`` matches ``area``); a name holding
#: ``minor`` (or a derivative word: ``d``, ``dt``, ``derivative``, ``velocity``) never does, so of a
#: major and a minor radius the major one is the size.
DEFAULT_PUPIL_SIZE_NAMES = (
    "pupil_size", "size", "pupil_area", "area", "pupil_diameter", "diameter",
    "pupil_major_radius", "major_radius", "major_axis", "major", "pupil_radius", "radius",
)  # fmt: skip
DEFAULT_PUPIL_DERIVATIVE_NAMES = ("pupil_dt", "pupil_derivative", "dpupil", "d_pupil", "d_size")
DEFAULT_GAZE_X_NAMES = ("pupil_x", "center_x", "eye_x", "gaze_x", "x")
DEFAULT_GAZE_Y_NAMES = ("pupil_y", "center_y", "eye_y", "gaze_y", "y")
_NEVER_SIZE = {"minor", "d", "dt", "derivative", "velocity"}

#: Tier names found in public datasets, mapped to neurofm's three tiers. SENSORIUM 2023's ``oracle``
#: tier (repeated clips with public responses) becomes ``test`` so noise ceilings can be computed.
DEFAULT_TIER_ALIASES: dict[str, Tier] = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "test": "test",
    "oracle": "test",
    "final_test": "test",
    "live_test": "test",
    "live_test_main": "test",
    "live_test_bonus": "test",
    "final_test_main": "test",
    "final_test_bonus": "test",
}


def resolve_tier(value: object, aliases: Mapping[str, Tier], where: str) -> Tier:
    """Map a tier name of the source format to ``train``/``validation``/``test``.

    Raises:
        SourceFormatError: the name is not known, naming the known ones and how to add it.
    """
    name = value.decode() if isinstance(value, bytes) else str(value)
    tier = aliases.get(name.strip().lower())
    if tier not in get_args(Tier):
        raise SourceFormatError(
            f"{where}: unknown tier name {name!r}; expected one of {sorted(aliases)} (mapped to "
            f"train/validation/test). Fix the tier, or add it to the importer config's "
            f"`tier_aliases` (e.g. --config with tier_aliases: {{{name}: test}})."
        )
    return tier


def safe_id(name: str) -> str:
    """A session/animal id safe as a folder name: other characters become ``-`` (max 128)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
    cleaned = re.sub(r"\.{2,}", ".", cleaned).strip("-._")  # no '..' (e.g. from 'a...b')
    return cleaned[:128] or "session"


def animal_from_name(name: str) -> str | None:
    """The animal id of SENSORIUM/OmniMouse-style names ``[prefix]<animal>-<session>-<scan>...``."""
    match = re.search(r"(\d+)-(\d+)-(\d+)", name)
    return match.group(1) if match else None


def read_yaml(path: Path, what: str) -> dict:
    """Load a YAML mapping, with errors that name the file and what it is for."""
    if not path.is_file():
        raise SourceFormatError(f"{what}: {path} not found; expected a YAML file there.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SourceFormatError(f"{what}: {path} is not valid YAML ({exc}).") from None
    if not isinstance(data, dict):
        raise SourceFormatError(f"{what}: {path} must hold a mapping, found {type(data).__name__}")
    return data


def load_npy(path: Path, what: str, *, mmap: bool = True) -> np.ndarray:
    """``np.load`` (memory-mapped by default) with errors naming the file."""
    if not path.is_file():
        raise SourceFormatError(f"{what}: {path} not found; expected a .npy file there.")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:  # a damaged header can fail in numpy's parser in many ways
        raise SourceFormatError(f"{what}: cannot read {path} as .npy ({exc}).") from None


def pupil_with_derivative(
    size: np.ndarray, timestamps: np.ndarray, derivative: np.ndarray | None = None
) -> np.ndarray:
    """Pupil stream ``[T, 2]``: size and d(size)/dt (computed when not given). NaN blinks stay NaN.

    Shape: size ``[T]``, timestamps ``[T]`` -> ``[T, 2]`` float32.
    """
    size = np.asarray(size, dtype=np.float64).reshape(-1)
    if derivative is None:
        derivative = (
            np.gradient(size, np.asarray(timestamps, np.float64))
            if size.size > 1
            else np.zeros_like(size)
        )
    return np.stack([size, np.asarray(derivative, np.float64).reshape(-1)], 1).astype(np.float32)


def scratch_array(folder: Path, name: str, shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """A writable ``.npy`` memmap in ``folder`` to assemble a stream without holding it in memory."""
    folder.mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)


def describe_session(path: Path, final_root: Path) -> ImportedSession:
    """Read back a written session folder; its reported path is under ``final_root`` (the output)."""
    session = Session.open(path)
    streams = {n: tuple(s.data.shape) for n, s in session.manifest.streams.items()}
    tiers = Counter(iv.tier for iv in session.manifest.intervals)
    units = session.manifest.units.count if session.manifest.units is not None else 0
    return ImportedSession(session.session_id, final_root / path.name, streams, units, dict(tiers))


def _words(name: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", name.lower()) if w}


def find_name(
    names: Sequence[str], candidates: Sequence[str], *, exclude: set[str] = frozenset()
) -> int | None:
    """Index of the first of ``names`` matching a candidate, trying candidates best first.

    A name matches a candidate when it equals it (case-insensitive) or holds all its words;
    names holding a word of ``exclude`` never match. Returns None when nothing matches.
    """
    lower = [n.lower() for n in names]
    for cand in candidates:
        if cand.lower() in lower:
            return lower.index(cand.lower())
    for cand in candidates:
        want = _words(cand)
        for i, name in enumerate(names):
            words = _words(name)
            if want and want <= words and not (words & exclude):
                return i
    return None


def find_pupil_size(names: Sequence[str], candidates: Sequence[str]) -> int | None:
    """Index of the pupil-size name among ``names`` (a minor radius is never the size)."""
    lower = [n.lower() for n in names]
    exact = [c for c in candidates if c.lower() in lower and not (_words(c) & _NEVER_SIZE)]
    if exact:
        return lower.index(exact[0].lower())
    return find_name(names, candidates, exclude=_NEVER_SIZE)


def resolve_rates(
    streams: Mapping[str, StreamInput],
    intervals: Sequence[Interval],
    summary: ImportSummary,
    session_id: str,
) -> dict[str, StreamInput]:
    """Give every stream without a stated rate its estimated one, recording each as a guess.

    Regular streams: measured from the steps between consecutive samples within one presentation
    (never across a gap); event-like streams: one over the median duration of their presentations.
    """
    out: dict[str, StreamInput] = {}
    for name, stream in streams.items():
        if stream.sampling_rate_hz is not None:
            out[name] = stream
            continue
        if stream.event_like:
            rate = presentation_rate(stream.timestamps, intervals)
            how = "one sample per presentation; rate = 1 / median presentation duration"
        else:
            rate = estimate_rate(stream.timestamps, intervals)
            how = "measured between samples within presentations"
        if rate is None:
            rate, how = 1.0, "fewer than two samples; set to 1 Hz"
        summary.guess(
            f"{session_id}/{name} sampling rate", f"{rate:.6g} Hz ({how}; the source states none)"
        )
        out[name] = replace(stream, sampling_rate_hz=rate)
    return out
