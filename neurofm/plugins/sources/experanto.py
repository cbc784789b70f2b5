"""Importer for the experanto format of the OmniMouse dataset (``neurofm import experanto``).

Layout of one experiment folder (one session)::

    screen/       meta.yml, timestamps.npy [F] (one per displayed frame),
                  data/NNNNN.npy (image [H, W] or video [n, H, W]),
                  meta/NNNNN.yml (modality image|video|blank, first_frame_idx, num_frames, tier, ...)
    responses/    meta.yml, timestamps.npy or start_time + sampling_rate, data.npy or data.mem,
                  meta/ (unit_ids.npy, cell_motor_coordinates.npy, areas.npy, phase_shifts.npy)
    eye_tracker/  meta.yml, timestamps.npy, data.npy [T, C] (pupil size, x, y, ...)
    treadmill/    meta.yml, timestamps.npy, data.npy [T] or [T, 1]

``SRC`` may also be a folder of such experiment folders (one session each).
"""

from __future__ import annotations

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
    DEFAULT_GAZE_X_NAMES,
    DEFAULT_GAZE_Y_NAMES,
    DEFAULT_PUPIL_DERIVATIVE_NAMES,
    DEFAULT_PUPIL_SIZE_NAMES,
    DEFAULT_TIER_ALIASES,
    animal_from_name,
    describe_session,
    find_name,
    find_pupil_size,
    load_npy,
    pupil_with_derivative,
    read_yaml,
    resolve_rates,
    safe_id,
)
from neurofm.core.data.writer import StreamInput, write_session
from neurofm.core.progress import progress as progress_bar
from neurofm.core.storage.files import atomic_directory

__all__ = ["ExperantoConfig", "ExperantoSource"]

_FOLDERS = ("screen", "responses", "eye_tracker", "treadmill")
_SPEED_NAMES = ("speed", "running_speed", "velocity", "running", "treadmill_speed")
_UNIT_FILES = {"unit_ids.npy", "cell_motor_coordinates.npy", "phase_shifts.npy"}
_AREA_FILES = ("areas.npy", "area.npy", "brain_areas.npy")


def _names(default: tuple[str, ...], what: str):
    return Field(default_factory=lambda: list(default), description=what)


class ExperantoConfig(PluginConfig):
    """Options of the experanto importer."""

    type: Literal["experanto"] = "experanto"
    species: str = "mouse"
    tier_aliases: dict[str, Tier] = Field(default_factory=lambda: dict(DEFAULT_TIER_ALIASES))
    eye_tracker_columns: list[str] = Field(
        default_factory=lambda: ["pupil_size", "pupil_x", "pupil_y"],
        description="column names of eye_tracker/data when its meta.yml lists none (as many "
        "names as columns)",
    )
    treadmill_columns: list[str] = Field(
        default_factory=lambda: ["speed"],
        description="column names of treadmill/data when its meta.yml lists none",
    )
    pupil_size_names: list[str] = _names(DEFAULT_PUPIL_SIZE_NAMES, "eye-tracker column names "
                                         "that are the pupil size, best first")  # fmt: skip
    pupil_derivative_names: list[str] = _names(
        DEFAULT_PUPIL_DERIVATIVE_NAMES, "column names of the pupil size's time derivative"
    )
    gaze_x_names: list[str] = _names(DEFAULT_GAZE_X_NAMES, "column names of the eye's x position")
    gaze_y_names: list[str] = _names(DEFAULT_GAZE_Y_NAMES, "column names of the eye's y position")
    running_names: list[str] = _names(_SPEED_NAMES, "treadmill column names of running speed")


def _sequence(folder: Path, what: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Data ``[T, C]`` (memory-mapped), timestamps ``[T]`` float64 and meta of a sequence folder."""
    if not folder.is_dir():
        raise SourceFormatError(f"{what}: folder {folder} not found; expected an experanto folder.")
    meta = read_yaml(folder / "meta.yml", what)
    if (folder / "data.npy").is_file():
        data = load_npy(folder / "data.npy", what)
    elif (folder / "data.mem").is_file():
        try:
            shape = (int(meta["n_timestamps"]), int(meta["n_signals"]))
        except (KeyError, TypeError, ValueError):
            raise SourceFormatError(
                f"{what}: data.mem needs n_timestamps and n_signals in meta.yml; found keys "
                f"{sorted(meta)}"
            ) from None
        dtype = np.dtype(meta.get("dtype", "float32"))
        size = (folder / "data.mem").stat().st_size
        if size != shape[0] * shape[1] * dtype.itemsize:
            raise SourceFormatError(
                f"{what}: data.mem holds {size} bytes but meta.yml describes {dtype} {list(shape)} "
                f"({shape[0] * shape[1] * dtype.itemsize} bytes); the file is truncated or meta.yml "
                f"is wrong."
            )
        data = np.memmap(folder / "data.mem", dtype=dtype, mode="r", shape=shape)
    else:
        raise SourceFormatError(f"{what}: neither data.npy nor data.mem found in {folder}.")
    data = data.reshape(-1, 1) if data.ndim == 1 else data
    if (folder / "timestamps.npy").is_file():
        ts = np.asarray(load_npy(folder / "timestamps.npy", what), dtype=np.float64).reshape(-1)
    elif "start_time" in meta and "sampling_rate" in meta:
        n = data.shape[0]
        ts = float(meta["start_time"]) + np.arange(n, dtype=np.float64) / float(
            meta["sampling_rate"]
        )
    else:
        raise SourceFormatError(
            f"{what}: no timestamps.npy and no start_time/sampling_rate in meta.yml; one is needed."
        )
    if ts.shape[0] != data.shape[0]:
        raise SourceFormatError(
            f"{what}: data has {data.shape[0]} samples but timestamps {ts.shape[0]}; expected one "
            f"timestamp per sample. Check that data and timestamps come from the same recording."
        )
    return data, ts, meta


def _rate(meta: dict) -> float | None:
    """The nominal sampling rate from meta.yml (exact, e.g. 8.1088 Hz), if it states one."""
    rate = meta.get("sampling_rate")
    return float(rate) if isinstance(rate, int | float) and rate > 0 else None


def _column_names(
    meta: dict, width: int, default: list[str], key: str, file: Path
) -> tuple[list[str], bool]:
    """Names of the ``width`` columns of a sequence, and whether they were guessed from ``key``.

    Raises:
        SourceFormatError: meta.yml lists none and ``key`` has another number of names (a guess
            that cannot be checked), or meta.yml lists a wrong number.
    """
    stated = meta.get("column_names") or meta.get("signal_names")
    if stated:
        names = [str(n) for n in stated]
        if len(names) != width:
            raise SourceFormatError(
                f"experanto: {file}/meta.yml column_names lists {len(names)} names {names} but "
                f"{file}/data has {width} column(s); expected one name per column."
            )
        return names, False
    if len(default) != width:
        raise SourceFormatError(
            f"experanto: {file}/data has {width} column(s) and {file}/meta.yml lists no "
            f"column_names, so which column is what cannot be checked: the importer config's "
            f"`{key}` has {len(default)} names {list(default)}. Set `{key}` to {width} names (in "
            f"a --config file, e.g. {key}: [pupil_x, pupil_y, pupil_major_radius, "
            f"pupil_minor_radius]), or add column_names to meta.yml."
        )
    return list(default), True


class ExperantoSource(Source):
    """Reads experanto/OmniMouse experiment folders into sessions (movie, image, calcium, behaviour).

    Screen trials become intervals ``[first frame, next trial's first frame)`` with their tier and
    stimulus id; blank trials become no interval. Video frames form the ``movie`` stream, each image
    presentation one sample of the event-like ``image`` stream (at its onset). Every folder, file
    and column not read, and every value guessed, is reported in the summary and the manifest.
    """

    Config = ExperantoConfig

    def import_(self, src: Path, out: Path, *, overwrite: bool, progress: bool) -> ImportSummary:
        src, out = Path(src), Path(out)
        if not src.is_dir():
            raise SourceFormatError(
                f"experanto: {src} is not a folder; expected an experiment folder with screen/ and "
                f"responses/ (or a folder of such experiments)."
            )
        if (src / "responses").is_dir() or (src / "screen").is_dir():
            experiments = [src]
        else:
            experiments = sorted(p for p in src.iterdir() if (p / "responses").is_dir())
        if not experiments:
            raise SourceFormatError(
                f"experanto: no experiment under {src}; expected folders screen/, responses/, "
                f"eye_tracker/, treadmill/ (found {sorted(p.name for p in src.iterdir())})."
            )
        summary = ImportSummary("experanto", out)
        with atomic_directory(out, overwrite=overwrite) as tmp:
            for exp in progress_bar(
                experiments, desc="experanto", unit="session", enabled=progress
            ):
                written = self._session(exp, tmp, summary)
                summary.sessions.append(describe_session(written, out))
        return summary

    def _session(self, exp: Path, root: Path, summary: ImportSummary) -> Path:
        sid = safe_id(exp.name)
        if not (exp / "screen").is_dir():
            raise SourceFormatError(f"experanto {sid}: screen/ folder missing in {exp}.")
        for entry in sorted(exp.iterdir()):
            if entry.name not in _FOLDERS and not entry.name.startswith("."):
                summary.skip(f"{sid}/{entry.name}", "not read by the experanto importer")
        calcium, ts, meta = _sequence(exp / "responses", f"experanto {sid} responses")
        streams = {
            "calcium": StreamInput(
                "calcium", calcium, ts, per_unit=True, sampling_rate_hz=_rate(meta)
            )
        }
        units = self._units(exp / "responses", calcium.shape[1], meta, sid, summary)
        for name in ("eye_tracker", "treadmill"):
            if not (exp / name).is_dir():
                summary.skip(f"{sid}/{name}", "folder not found; stream not imported")
                continue
            data, t, m = _sequence(exp / name, f"experanto {sid} {name}")
            if name == "treadmill":
                streams.update(self._treadmill(data, t, m, exp / name, sid, summary))
            else:
                data = np.asarray(data, dtype=np.float64)
                streams.update(self._eye(data, t, m, exp / name, sid, summary))
        scratch = root / f".scratch-{sid}"
        try:
            intervals = self._screen(exp / "screen", sid, streams, scratch, summary)
            streams = resolve_rates(streams, intervals, summary, sid)
            return write_session(
                root,
                session_id=sid,
                animal_id=safe_id(str(meta.get("animal_id") or animal_from_name(sid) or sid)),
                species=self.config.species,
                streams=streams,
                intervals=intervals,
                units=units,
                attributes={"source": "experanto", "source_name": exp.name},
                import_notes=summary.notes(sid),
            )
        finally:
            streams.clear()  # drop memmaps before deleting their files
            shutil.rmtree(scratch, ignore_errors=True)

    def _units(self, folder: Path, n: int, meta: dict, sid: str, summary: ImportSummary):
        what = f"experanto {sid} responses/meta"
        for entry in sorted((folder / "meta").glob("*")) if (folder / "meta").is_dir() else []:
            if entry.name not in _UNIT_FILES | set(_AREA_FILES):
                summary.skip(f"{sid}/responses/meta/{entry.name}", "not read (no unit field)")
        ids = np.arange(n)
        if (folder / "meta/unit_ids.npy").is_file():
            ids = np.asarray(load_npy(folder / "meta/unit_ids.npy", what)).reshape(-1)
        else:
            summary.guess(f"{sid}/unit ids", "responses/meta/unit_ids.npy missing; row numbers")
        pos = np.zeros((n, 3))
        if (folder / "meta/cell_motor_coordinates.npy").is_file():
            coords = np.asarray(load_npy(folder / "meta/cell_motor_coordinates.npy", what), float)
            if coords.ndim != 2 or coords.shape[0] != n:
                raise SourceFormatError(
                    f"{what}: cell_motor_coordinates has shape {list(coords.shape)} but responses "
                    f"have {n} neurons; expected [{n}, 3] (x, y, z in um)."
                )
            pos[:, : min(3, coords.shape[1])] = coords[:, :3]
            if coords.shape[1] > 3:
                summary.skip(
                    f"{sid}/responses/meta/cell_motor_coordinates.npy",
                    f"columns 3..{coords.shape[1] - 1} not used (only x, y, z)",
                )
        else:
            summary.skip(f"{sid}/neuron positions", "cell_motor_coordinates.npy missing; set to 0")
        area = None
        for name in _AREA_FILES:
            if (folder / "meta" / name).is_file() and area is None:
                area = np.asarray(load_npy(folder / "meta" / name, what, mmap=False)).astype(str)
        if area is None:
            area = np.full(n, "unknown")
            summary.skip(f"{sid}/neuron areas", "no responses/meta/areas.npy; set to 'unknown'")
        offsets = None
        stated = str(meta.get("phase_shift_per_signal", "")).lower()
        if (folder / "meta/phase_shifts.npy").is_file() and stated != "false":
            offsets = np.asarray(load_npy(folder / "meta/phase_shifts.npy", what), np.float64)
        elif (folder / "meta/phase_shifts.npy").is_file():
            summary.skip(
                f"{sid}/responses/meta/phase_shifts.npy",
                "not used: responses/meta.yml says phase_shift_per_signal: false",
            )
        elif stated == "true":
            raise SourceFormatError(
                f"{what}: responses/meta.yml says phase_shift_per_signal: true but "
                f"{folder / 'meta/phase_shifts.npy'} is missing; expected [{n}] offsets (s)."
            )
        for name, arr in (("unit_ids", ids), ("areas", area), ("phase_shifts", offsets)):
            if arr is not None and arr.shape[0] != n:
                raise SourceFormatError(
                    f"{what}: {name} has {arr.shape[0]} entries but responses have {n} neurons."
                )
        return UnitTable(ids.astype(np.int64), pos, area, offsets)

    def _unused_columns(self, names, used, folder: Path, sid: str, summary) -> None:
        for i, name in enumerate(names):
            if i not in used:
                summary.skip(f"{sid}/{folder.name}/data column {i} {name!r}", "not used")

    def _treadmill(self, data, ts, meta, folder: Path, sid: str, summary) -> dict:
        cfg = self.config
        key = "treadmill_columns"
        names, guessed = _column_names(meta, data.shape[1], cfg.treadmill_columns, key, folder)
        i = find_name(names, cfg.running_names)
        if i is None and data.shape[1] == 1:
            i = 0
            summary.guess(f"{sid}/running", f"the only treadmill column {names[0]!r} is speed")
        if i is None:
            summary.skip(f"{sid}/running", f"no speed column among {names} (running_names)")
            self._unused_columns(names, set(), folder, sid, summary)
            return {}
        if guessed:
            summary.guess(f"{sid}/treadmill columns", f"{names} from {key} (meta.yml names none)")
        self._unused_columns(names, {i}, folder, sid, summary)
        speed = StreamInput(
            "running", data[:, i : i + 1], ts, channel_names=["speed"], sampling_rate_hz=_rate(meta)
        )
        return {"running": speed}

    def _eye(self, data, ts, meta, folder: Path, sid: str, summary) -> dict[str, StreamInput]:
        cfg = self.config
        key = "eye_tracker_columns"
        names, guessed = _column_names(meta, data.shape[1], cfg.eye_tracker_columns, key, folder)
        if guessed:
            summary.guess(f"{sid}/eye_tracker columns", f"{names} from {key} (meta.yml names none)")
        out: dict[str, StreamInput] = {}
        used: set[int] = set()
        i_size = find_pupil_size(names, cfg.pupil_size_names)
        i_der = find_name(names, cfg.pupil_derivative_names)
        if i_size is None:
            summary.skip(f"{sid}/pupil", f"no pupil size column among {names} (pupil_size_names)")
        else:
            used |= {i_size} | ({i_der} if i_der is not None else set())
            der = data[:, i_der] if i_der is not None else None
            if der is None:
                summary.guess(f"{sid}/pupil d_size", f"computed from {names[i_size]!r} over time")
            pupil = pupil_with_derivative(data[:, i_size], ts, der)
            out["pupil"] = StreamInput(
                "pupil", pupil, ts, channel_names=["size", "d_size"], sampling_rate_hz=_rate(meta)
            )
        i_x, i_y = find_name(names, cfg.gaze_x_names), find_name(names, cfg.gaze_y_names)
        if i_x is None or i_y is None:
            summary.skip(f"{sid}/gaze", f"no eye x/y columns among {names} (gaze_x/y_names)")
        else:
            used |= {i_x, i_y}
            gaze = data[:, [i_x, i_y]].astype(np.float32)
            out["gaze"] = StreamInput(
                "gaze", gaze, ts, channel_names=["x", "y"], sampling_rate_hz=_rate(meta)
            )
        self._unused_columns(names, used, folder, sid, summary)
        return out

    def _screen(self, folder, sid, streams, scratch, summary) -> list[Interval]:
        from neurofm.plugins.sources._experanto_screen import read_screen

        return read_screen(folder, sid, streams, scratch, summary, self.config.tier_aliases)
