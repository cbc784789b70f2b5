"""The screen part of the experanto importer: trials -> intervals, frames -> movie/image streams."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurofm.core.data.manifest import Interval, Tier
from neurofm.core.data.sources import ImportSummary, SourceFormatError
from neurofm.core.data.sources.common import load_npy, read_yaml, resolve_tier, scratch_array
from neurofm.core.data.writer import StreamInput

__all__ = ["read_screen"]

_STIM_KEYS = ("stimulus_id", "image_id", "video_id", "condition_hash", "image_name", "stim_id")
_TRIAL_KEYS = {"modality", "first_frame_idx", "num_frames", "tier", *_STIM_KEYS}


@dataclass(frozen=True)
class _Trial:
    index: int
    modality: str
    first: int
    count: int
    meta: dict
    file: Path


def _frames(array: np.ndarray, trial: _Trial, what: str) -> np.ndarray:
    """Frames ``[n, H, W]`` of a trial's data (images may be ``[H, W]``, ``[1, H, W]``, ``[H, W, 1]``)."""
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[-1] == 1 and trial.modality == "image":
        array = array[None, :, :, 0]
    if array.ndim != 3 or array.shape[0] != trial.count:
        raise SourceFormatError(
            f"{what}: {trial.file.name} holds shape {list(array.shape)} but its meta says "
            f"{trial.count} frame(s); expected [{trial.count}, H, W]."
        )
    return array


def _stimulus_id(trial: _Trial) -> tuple[str, bool]:
    """The trial's stimulus id and whether it was guessed (a hash of its frame file)."""
    for key in _STIM_KEYS:
        if trial.meta.get(key) is not None:
            return str(trial.meta[key]), False
    return hashlib.sha1(trial.file.read_bytes()).hexdigest()[:16], True  # same frames, same id


def read_screen(
    folder: Path,
    sid: str,
    streams: dict[str, StreamInput],
    scratch: Path,
    summary: ImportSummary,
    aliases: Mapping[str, Tier],
) -> list[Interval]:
    """Read ``screen/``: add ``movie``/``image`` streams to ``streams``; return the trial intervals.

    Frames are copied trial by trial into ``.npy`` memmaps under ``scratch`` (never all in memory).
    The movie's rate is the ``sampling_rate`` of ``screen/meta.yml`` when it states one (else it is
    estimated within trials); the image stream is event-like (one sample per presentation).
    """
    what = f"experanto {sid} screen"
    screen_meta = read_yaml(folder / "meta.yml", what)
    stated = screen_meta.get("sampling_rate")
    rate = float(stated) if isinstance(stated, int | float) and stated > 0 else None
    ts = np.asarray(load_npy(folder / "timestamps.npy", what), dtype=np.float64).reshape(-1)
    metas = sorted(
        (p for p in (folder / "meta").glob("*.yml") if re.fullmatch(r"\d+\.yml", p.name)),
        key=lambda p: int(p.stem),
    )
    if not metas:
        raise SourceFormatError(f"{what}: no trial files meta/NNNNN.yml in {folder}.")
    trials = []
    for p in metas:
        m = read_yaml(p, what)
        modality = str(m.get("modality", "")).lower()
        if modality not in ("image", "video", "blank"):
            raise SourceFormatError(
                f"{what}: {p.name} has modality {m.get('modality')!r}; expected image, video or blank."
            )
        count = int(m.get("num_frames", 1)) if modality == "video" else 1
        first = m.get("first_frame_idx")
        if first is None or int(first) < 0 or int(first) + count > ts.shape[0]:
            raise SourceFormatError(
                f"{what}: {p.name} covers frames {first}..{first}+{count} but timestamps.npy has "
                f"{ts.shape[0]} frames; expected first_frame_idx and num_frames inside it."
            )
        trials.append(
            _Trial(int(p.stem), modality, int(first), count, m, folder / "data" / f"{p.stem}.npy")
        )
    if rate is not None:
        period = 1.0 / rate
    else:
        within = [np.diff(ts[t.first : t.first + t.count]) for t in trials if t.count > 1]
        diffs = np.concatenate(within) if within else np.diff(ts)
        period = float(np.median(diffs)) if diffs.size else 1.0
    intervals: list[Interval] = []
    hashed = 0
    unknown_keys = sorted({k for t in trials for k in t.meta if k not in _TRIAL_KEYS})
    movie: list[_Trial] = []
    images: list[_Trial] = []
    for k, trial in enumerate(trials):
        if trial.modality == "blank":
            continue
        if not trial.file.is_file():
            raise SourceFormatError(
                f"{what}: trial data {trial.file} missing for {trial.modality}."
            )
        start = ts[trial.first]
        end = (
            ts[trials[k + 1].first]
            if k + 1 < len(trials)
            else ts[trial.first + trial.count - 1] + period
        )
        tier = resolve_tier(trial.meta.get("tier"), aliases, f"{what} {trial.file.stem}.yml")
        stimulus_id, guessed = _stimulus_id(trial)
        hashed += guessed
        intervals.append(
            Interval(
                start=float(start),
                end=float(end),
                tier=tier,
                stimulus_id=stimulus_id,
                trial=trial.index,
            )
        )
        (movie if trial.modality == "video" else images).append(trial)
    blanks = sum(t.modality == "blank" for t in trials)
    if blanks:
        summary.skip(f"{sid}/screen", f"{blanks} blank trial(s) left outside intervals")
    if unknown_keys:
        summary.skip(f"{sid}/screen/meta/*.yml keys {unknown_keys}", "not read (no trial field)")
    if hashed:
        summary.guess(
            f"{sid}/stimulus ids",
            f"{hashed} trial(s) name none of {list(_STIM_KEYS)}; identical frame files share an "
            f"id (a hash of the file)",
        )
    if movie:
        streams["movie"] = _stack("movie", movie, ts, scratch, what, rate=rate)
    if images:
        streams["image"] = _stack("image", images, ts, scratch, what, event_like=True)
    return intervals


def _stack(
    name: str,
    trials: list[_Trial],
    ts: np.ndarray,
    scratch: Path,
    what: str,
    *,
    rate: float | None = None,
    event_like: bool = False,
) -> StreamInput:
    shapes = {tuple(_frames(load_npy(t.file, what), t, what).shape[1:]) for t in trials}
    if len(shapes) != 1:
        raise SourceFormatError(
            f"{what}: {name} trials have different frame sizes {sorted(shapes)}; expected one size."
        )
    total = sum(t.count for t in trials)
    out = scratch_array(scratch, name, (total, *shapes.pop()))
    times = np.empty(total, dtype=np.float64)
    i = 0
    for t in trials:
        out[i : i + t.count] = _frames(load_npy(t.file, what), t, what)
        times[i : i + t.count] = ts[t.first : t.first + t.count]
        i += t.count
    out.flush()
    return StreamInput(name, out, times, sampling_rate_hz=rate, event_like=event_like)
