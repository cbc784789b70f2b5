"""Importer for SENSORIUM 2022 (static images) and 2023 (dynamic videos) folders.

Layout of one recording folder (one session), e.g. ``static26872-17-20-GrayImageNet-...``::

    data/images/<i>.npy        [1, H, W]   (2022)   or  data/videos/<i>.npy [H, W, T] (2023)
    data/responses/<i>.npy     [N]         (2022)   or  [N, T] (2023)
    data/behavior/<i>.npy      [3] pupil, d pupil, running (2022)  or  [2, T] pupil, running (2023)
    data/pupil_center/<i>.npy  [2]         (2022)   or  [2, T] (2023)
    meta/neurons/              cell_motor_coordinates.npy [N, 3], unit_ids.npy, area.npy, layer.npy
    meta/trials/               tiers.npy, frame_image_id.npy (or condition_hash.npy), trial_idx.npy
    meta/statistics/           (not used: neurofm recomputes statistics on the train tier)

SENSORIUM trials carry no clock, so trials are laid out in ``trial_idx`` order on a session clock
starting at 0 s: a static trial occupies ``static_period_s`` (one sample of every stream at its
start); a dynamic trial its frames at ``frame_rate_hz`` followed by a ``trial_gap_s`` blank.
``SRC`` may also be a folder of such recording folders.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from neurofm.core.config import PluginConfig
from neurofm.core.data.manifest import Interval, Tier
from neurofm.core.data.session import UnitTable
from neurofm.core.data.sources import ImportSummary, Source, SourceFormatError
from neurofm.core.data.sources.common import (
    DEFAULT_TIER_ALIASES,
    animal_from_name,
    describe_session,
    load_npy,
    pupil_with_derivative,
    resolve_tier,
    safe_id,
    scratch_array,
)
from neurofm.core.data.writer import StreamInput, write_session
from neurofm.core.progress import progress as progress_bar
from neurofm.core.storage.files import atomic_directory

__all__ = ["SensoriumConfig", "SensoriumSource"]

_STIM_FILES = ("frame_image_id", "condition_hash", "video_id", "image_id")
_DATA_DIRS = {"images", "videos", "responses", "behavior", "pupil_center"}
_TRIAL_FILES = {"tiers", "trial_idx", *_STIM_FILES}
_NEURON_FILES = {"unit_ids", "cell_motor_coordinates", "area", "animal_ids"}


class SensoriumConfig(PluginConfig):
    """Options of the SENSORIUM importer."""

    type: Literal["sensorium"] = "sensorium"
    species: str = "mouse"
    tier_aliases: dict[str, Tier] = Field(default_factory=lambda: dict(DEFAULT_TIER_ALIASES))
    frame_rate_hz: float = Field(30.0, gt=0, description="rate of 2023 videos and responses")
    trial_gap_s: float = Field(1.0, ge=0, description="blank time between dynamic trials")
    static_period_s: float = Field(1.0, gt=0, description="time slot of one static trial")


def _meta(folder: Path, name: str, n: int | None, what: str) -> np.ndarray | None:
    path = folder / f"{name}.npy"
    if not path.is_file():
        return None
    array = np.asarray(load_npy(path, what, mmap=False))
    if n is not None and array.shape[0] != n:
        raise SourceFormatError(
            f"{what}: {path.name} has {array.shape[0]} entries; expected {n} (one per "
            f"{'trial' if 'trials' in str(folder) else 'neuron'})."
        )
    return array


class SensoriumSource(Source):
    """Reads SENSORIUM 2022/2023 folders; repeated test stimuli become intervals sharing a stimulus id."""

    Config = SensoriumConfig

    def import_(self, src: Path, out: Path, *, overwrite: bool, progress: bool) -> ImportSummary:
        src, out = Path(src), Path(out)
        if not src.is_dir():
            raise SourceFormatError(
                f"sensorium: {src} is not a folder; expected a SENSORIUM recording folder with "
                f"data/ and meta/ (or a folder of them)."
            )
        if (src / "data").is_dir() or (src / "meta").is_dir():
            recordings = [src]
        else:
            recordings = sorted(p for p in src.iterdir() if (p / "data").is_dir())
        if not recordings:
            raise SourceFormatError(
                f"sensorium: no recording under {src}; expected data/ and meta/ folders "
                f"(found {sorted(p.name for p in src.iterdir())})."
            )
        summary = ImportSummary("sensorium", out)
        with atomic_directory(out, overwrite=overwrite) as tmp:
            for rec in progress_bar(recordings, desc="sensorium", unit="session", enabled=progress):
                scratch = tmp / f".scratch-{safe_id(rec.name)}"
                try:
                    written = self._session(rec, tmp, scratch, summary, progress)
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
                summary.sessions.append(describe_session(written, out))
        return summary

    def _session(
        self, rec: Path, root: Path, scratch: Path, summary: ImportSummary, progress: bool
    ) -> Path:
        sid = safe_id(rec.name)
        what = f"sensorium {sid}"
        for sub in ("data/responses", "meta/trials", "meta/neurons"):
            if not (rec / sub).is_dir():
                raise SourceFormatError(f"{what}: folder {sub}/ missing in {rec}.")
        self._report_unread(rec, sid, summary)
        dynamic = (rec / "data/videos").is_dir()
        stim_dir = rec / "data" / ("videos" if dynamic else "images")
        if not dynamic and not stim_dir.is_dir():
            raise SourceFormatError(f"{what}: neither data/images/ nor data/videos/ in {rec}.")
        tiers = _meta(rec / "meta/trials", "tiers", None, what)
        if tiers is None:
            raise SourceFormatError(f"{what}: meta/trials/tiers.npy missing.")
        n = tiers.shape[0]
        files = sorted((rec / "data/responses").glob("*.npy"), key=lambda p: int(p.stem))
        if len(files) != n:
            raise SourceFormatError(
                f"{what}: data/responses has {len(files)} trial files but meta/trials/tiers.npy "
                f"lists {n} trials; expected one file per trial. Re-extract the recording."
            )
        order = _meta(rec / "meta/trials", "trial_idx", n, what)
        stim_ids = next(
            (a for f in _STIM_FILES if (a := _meta(rec / "meta/trials", f, n, what)) is not None),
            None,
        )
        if stim_ids is None:
            summary.guess(
                f"{sid}/stimulus ids",
                f"no meta/trials/{{{','.join(_STIM_FILES)}}}.npy; identical stimulus files share "
                f"an id (a hash of the file)",
            )
        if order is None:
            summary.guess(f"{sid}/trial order", "no meta/trials/trial_idx.npy; file order")
        aliases = self.config.tier_aliases
        tier_of = [resolve_tier(tiers[i], aliases, f"{what} trial {i}") for i in range(n)]
        trials = sorted(range(n), key=lambda i: int(order[i]) if order is not None else i)
        kept, lengths = [], []
        for i in trials:
            resp = load_npy(rec / f"data/responses/{i}.npy", what)
            if not np.isfinite(np.asarray(resp)).any():
                summary.skip(f"{sid}/trial {i}", "responses withheld (all NaN)")
                continue
            lengths.append(resp.shape[1] if dynamic else 1)
            kept.append(i)
        neurons = load_npy(rec / f"data/responses/{kept[0]}.npy", what).shape[0] if kept else 0
        total = int(sum(lengths))
        calcium = scratch_array(scratch, "calcium", (total, neurons))
        stim = None
        times = np.empty(total, np.float64)
        behav = np.full((total, 3), np.nan)
        gaze = np.full((total, 2), np.nan)
        intervals: list[Interval] = []
        t, j = 0.0, 0
        for i, length in progress_bar(
            list(zip(kept, lengths, strict=True)), desc=sid, enabled=progress, leave=False
        ):
            resp = np.asarray(load_npy(rec / f"data/responses/{i}.npy", what), np.float32)
            resp = resp.reshape(neurons, length) if resp.size == neurons * length else None
            if resp is None:
                raise SourceFormatError(
                    f"{what}: data/responses/{i}.npy does not hold {neurons} neurons x {length} "
                    f"samples like the other trials; mismatched lengths."
                )
            frames = self._frames(stim_dir / f"{i}.npy", dynamic, length, what)
            if stim is None:
                stim = scratch_array(scratch, "stim", (total, *frames.shape[1:]))
            stim[j : j + length] = frames
            calcium[j : j + length] = resp.T
            period = 1.0 / self.config.frame_rate_hz if dynamic else self.config.static_period_s
            times[j : j + length] = t + np.arange(length) * period
            behav[j : j + length] = self._behaviour(rec, i, length, dynamic, what)
            pc = rec / f"data/pupil_center/{i}.npy"
            if pc.is_file():
                gaze[j : j + length] = self._series(pc, length, 2, what)
            stim_id = str(stim_ids[i]) if stim_ids is not None else self._hash(stim_dir, i)
            tier = tier_of[i]
            end = t + length * period
            intervals.append(
                Interval(start=t, end=end, tier=tier, stimulus_id=stim_id, trial=int(i))
            )
            t, j = end + (self.config.trial_gap_s if dynamic else 0.0), j + length
        if not kept:
            raise SourceFormatError(f"{what}: no trial with responses; nothing to import.")
        name = "movie" if dynamic else "image"
        pupil = pupil_with_derivative(behav[:, 0], times, None if dynamic else behav[:, 1])
        if dynamic:
            summary.guess(f"{sid}/pupil d_size", "computed from the pupil size over time")
            clock = (
                f"trials laid out in order at frame_rate_hz {self.config.frame_rate_hz} Hz with "
                f"trial_gap_s {self.config.trial_gap_s} s between them"
            )
        else:
            clock = f"one trial every static_period_s {self.config.static_period_s} s"
        summary.guess(f"{sid}/clock", f"SENSORIUM states no times: {clock}")
        rate = 1.0 / period
        streams = {
            name: StreamInput(name, stim, times, sampling_rate_hz=rate, event_like=not dynamic),
            "calcium": StreamInput("calcium", calcium, times, per_unit=True, sampling_rate_hz=rate),
            "pupil": StreamInput(
                "pupil", pupil, times, channel_names=["size", "d_size"], sampling_rate_hz=rate
            ),
            "running": StreamInput(
                "running", behav[:, 2:3], times, channel_names=["speed"], sampling_rate_hz=rate
            ),
        }
        if np.isfinite(gaze).any():
            streams["gaze"] = StreamInput(
                "gaze", gaze, times, channel_names=["x", "y"], sampling_rate_hz=rate
            )
        else:
            summary.skip(f"{sid}/gaze", "data/pupil_center missing")
        animal = _meta(rec / "meta/neurons", "animal_ids", neurons, what)
        animal_id = str(animal[0]) if animal is not None else animal_from_name(sid) or sid
        return write_session(
            root,
            session_id=sid,
            animal_id=safe_id(animal_id),
            species=self.config.species,
            streams=streams,
            intervals=intervals,
            units=self._units(rec / "meta/neurons", neurons, what, sid, summary),
            attributes={"source": "sensorium", "source_name": rec.name, "dynamic": dynamic},
            import_notes=summary.notes(sid),
        )

    @staticmethod
    def _report_unread(rec: Path, sid: str, summary: ImportSummary) -> None:
        """Record every folder and file of the recording that this importer does not read."""
        known = {"data": _DATA_DIRS, "meta": {"trials", "neurons", "statistics"}}
        for entry in sorted(rec.iterdir()):
            if entry.name.startswith("."):
                continue
            if entry.name not in known:
                summary.skip(f"{sid}/{entry.name}", "not read by the sensorium importer")
                continue
            for sub in sorted(entry.iterdir()) if entry.is_dir() else []:
                if sub.name not in known[entry.name]:
                    summary.skip(f"{sid}/{entry.name}/{sub.name}", "not read")
        if (rec / "meta/statistics").is_dir():
            summary.skip(f"{sid}/meta/statistics", "not read: statistics are recomputed on train")
        for folder, names in (("meta/trials", _TRIAL_FILES), ("meta/neurons", _NEURON_FILES)):
            for f in sorted((rec / folder).glob("*")):
                if f.stem not in names:
                    summary.skip(f"{sid}/{folder}/{f.name}", "not read (no trial or unit field)")

    @staticmethod
    def _series(path: Path, length: int, channels: int, what: str) -> np.ndarray:
        """A per-trial behaviour file as ``[length, channels]`` (files hold ``[C]`` or ``[C, T]``)."""
        array = np.asarray(load_npy(path, what), np.float64)
        if array.size != channels * length:
            raise SourceFormatError(
                f"{what}: {path.parent.name}/{path.name} has shape {list(array.shape)}; expected "
                f"[{channels}, {length}] (channels x samples of this trial). Mismatched lengths."
            )
        return array.reshape(channels, length).T

    def _behaviour(self, rec: Path, i: int, length: int, dynamic: bool, what: str) -> np.ndarray:
        """``[length, 3]``: pupil, d pupil (NaN for 2023: computed later), running."""
        path = rec / f"data/behavior/{i}.npy"
        if not path.is_file():
            return np.full((length, 3), np.nan)
        if dynamic:
            b = self._series(path, length, 2, what)
            return np.stack([b[:, 0], np.full(length, np.nan), b[:, 1]], 1)
        return self._series(path, 1, 3, what)

    @staticmethod
    def _frames(path: Path, dynamic: bool, length: int, what: str) -> np.ndarray:
        array = load_npy(path, what)
        if dynamic:
            if array.ndim != 3 or array.shape[-1] != length:
                raise SourceFormatError(
                    f"{what}: {path.name} has shape {list(array.shape)}; expected [H, W, {length}] "
                    f"(one frame per response sample). Mismatched lengths."
                )
            return np.moveaxis(array, -1, 0)
        if array.ndim == 3 and array.shape[0] == 1:
            return array
        if array.ndim == 2:
            return array[None]
        raise SourceFormatError(
            f"{what}: {path.name} has shape {list(array.shape)}; expected [1, H, W]."
        )

    @staticmethod
    def _hash(stim_dir: Path, i: int) -> str:
        return hashlib.sha1((stim_dir / f"{i}.npy").read_bytes()).hexdigest()[:16]

    @staticmethod
    def _units(folder: Path, n: int, what: str, sid: str, summary: ImportSummary) -> UnitTable:
        ids = _meta(folder, "unit_ids", n, what)
        coords = _meta(folder, "cell_motor_coordinates", n, what)
        area = _meta(folder, "area", n, what)
        pos = np.zeros((n, 3))
        if coords is not None:
            pos[:, : min(3, coords.shape[1])] = np.asarray(coords, float)[:, :3]
        if ids is None:
            summary.guess(f"{sid}/unit ids", "meta/neurons/unit_ids.npy missing; row numbers")
        if coords is None:
            summary.skip(f"{sid}/neuron positions", "cell_motor_coordinates.npy missing; set to 0")
        return UnitTable(
            np.arange(n) if ids is None else ids.astype(np.int64),
            pos,
            np.full(n, "unknown") if area is None else area.astype(str),
        )
