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
from tqdm.auto import tqdm

from neurofm.core.config import PluginConfig
from neurofm.core.data.manifest import Interval, Tier
from neurofm.core.data.session import UnitTable
from neurofm.core.data.writer import StreamInput, write_session
from neurofm.core.io import atomic_directory
from neurofm.core.sources import ImportSummary, Source, SourceFormatError
from neurofm.core.sources.common import (
    DEFAULT_TIER_ALIASES,
    animal_from_name,
    describe_session,
    load_npy,
    pupil_with_derivative,
    read_yaml,
    safe_id,
)

__all__ = ["ExperantoConfig", "ExperantoSource"]

_SIZE = ("pupil_size", "pupil_area", "pupil_radius", "pupil_major_radius", "size", "area", "radius")
_DERIV = ("pupil_dt", "pupil_derivative", "dpupil", "d_pupil")
_X = ("pupil_x", "center_x", "eye_x", "x")
_Y = ("pupil_y", "center_y", "eye_y", "y")


class ExperantoConfig(PluginConfig):
    """Options of the experanto importer."""

    type: Literal["experanto"] = "experanto"
    species: str = "mouse"
    tier_aliases: dict[str, Tier] = Field(default_factory=lambda: dict(DEFAULT_TIER_ALIASES))
    eye_tracker_columns: list[str] = Field(
        default_factory=lambda: ["pupil_size", "pupil_x", "pupil_y"],
        description="column names of eye_tracker/data when its meta.yml lists none",
    )


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


def _column(names: list[str], candidates: tuple[str, ...]) -> int | None:
    lower = [n.lower() for n in names]
    return next((lower.index(c) for c in candidates if c in lower), None)


class ExperantoSource(Source):
    """Reads experanto/OmniMouse experiment folders into sessions (movie, image, calcium, behaviour).

    Screen trials become intervals ``[first frame, next trial's first frame)`` with their tier and
    stimulus id; blank trials become no interval. Video frames form the ``movie`` stream, each image
    presentation one sample of the ``image`` stream (at its onset).
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
            for exp in tqdm(experiments, desc="experanto", unit="session", disable=not progress):
                written = self._session(exp, tmp, summary)
                summary.sessions.append(describe_session(written, out))
        return summary

    def _session(self, exp: Path, root: Path, summary: ImportSummary) -> Path:
        sid = safe_id(exp.name)
        if not (exp / "screen").is_dir():
            raise SourceFormatError(f"experanto {sid}: screen/ folder missing in {exp}.")
        calcium, ts, meta = _sequence(exp / "responses", f"experanto {sid} responses")
        rate = _rate(meta)
        streams = {
            "calcium": StreamInput("calcium", calcium, ts, per_unit=True, sampling_rate_hz=rate)
        }
        units = self._units(exp / "responses", calcium.shape[1], meta, sid, summary)
        for name in ("eye_tracker", "treadmill"):
            if not (exp / name).is_dir():
                summary.skip(f"{sid}/{name}", "folder not found; stream not imported")
                continue
            data, t, m = _sequence(exp / name, f"experanto {sid} {name}")
            if name == "treadmill":
                streams["running"] = StreamInput(
                    "running", data[:, :1], t, channel_names=["speed"], sampling_rate_hz=_rate(m)
                )
            else:
                streams.update(self._eye(np.asarray(data, dtype=np.float64), t, m, sid, summary))
        scratch = root / f".scratch-{sid}"
        try:
            intervals = self._screen(exp / "screen", sid, streams, scratch, summary)
            return write_session(
                root,
                session_id=sid,
                animal_id=safe_id(str(meta.get("animal_id") or animal_from_name(sid) or sid)),
                species=self.config.species,
                streams=streams,
                intervals=intervals,
                units=units,
                attributes={"source": "experanto", "source_name": exp.name},
            )
        finally:
            streams.clear()  # drop memmaps before deleting their files
            shutil.rmtree(scratch, ignore_errors=True)

    def _units(self, folder: Path, n: int, meta: dict, sid: str, summary: ImportSummary):
        what = f"experanto {sid} responses/meta"
        ids = np.arange(n)
        if (folder / "meta/unit_ids.npy").is_file():
            ids = np.asarray(load_npy(folder / "meta/unit_ids.npy", what)).reshape(-1)
        pos = np.zeros((n, 3))
        if (folder / "meta/cell_motor_coordinates.npy").is_file():
            coords = np.asarray(load_npy(folder / "meta/cell_motor_coordinates.npy", what), float)
            if coords.ndim != 2 or coords.shape[0] != n:
                raise SourceFormatError(
                    f"{what}: cell_motor_coordinates has shape {list(coords.shape)} but responses "
                    f"have {n} neurons; expected [{n}, 3] (x, y, z in um)."
                )
            pos[:, : min(3, coords.shape[1])] = coords[:, :3]
        else:
            summary.skip(f"{sid}/neuron positions", "cell_motor_coordinates.npy missing; set to 0")
        area = np.full(n, "unknown")
        for name in ("areas.npy", "area.npy", "brain_areas.npy"):
            if (folder / "meta" / name).is_file():
                area = np.asarray(load_npy(folder / "meta" / name, what, mmap=False)).astype(str)
        offsets = None
        if str(meta.get("phase_shift_per_signal", False)).lower() == "true":
            offsets = np.asarray(load_npy(folder / "meta/phase_shifts.npy", what), np.float64)
        for name, arr in (("unit_ids", ids), ("areas", area), ("phase_shifts", offsets)):
            if arr is not None and arr.shape[0] != n:
                raise SourceFormatError(
                    f"{what}: {name} has {arr.shape[0]} entries but responses have {n} neurons."
                )
        return UnitTable(ids.astype(np.int64), pos, area, offsets)

    def _eye(self, data, ts, meta, sid, summary) -> dict[str, StreamInput]:
        names = list(meta.get("column_names") or meta.get("signal_names") or [])
        names = names or list(self.config.eye_tracker_columns)[: data.shape[1]]
        out: dict[str, StreamInput] = {}
        i_size, i_der = _column(names, _SIZE), _column(names, _DERIV)
        if i_size is None:
            summary.skip(f"{sid}/pupil", f"no pupil size column among {names}")
        else:
            der = data[:, i_der] if i_der is not None else None
            pupil = pupil_with_derivative(data[:, i_size], ts, der)
            out["pupil"] = StreamInput(
                "pupil", pupil, ts, channel_names=["size", "d_size"], sampling_rate_hz=_rate(meta)
            )
        i_x, i_y = _column(names, _X), _column(names, _Y)
        if i_x is None or i_y is None:
            summary.skip(f"{sid}/gaze", f"no eye x/y columns among {names}")
        else:
            gaze = data[:, [i_x, i_y]].astype(np.float32)
            out["gaze"] = StreamInput(
                "gaze", gaze, ts, channel_names=["x", "y"], sampling_rate_hz=_rate(meta)
            )
        return out

    def _screen(self, folder, sid, streams, scratch, summary) -> list[Interval]:
        from neurofm.plugins.sources._experanto_screen import read_screen

        return read_screen(folder, sid, streams, scratch, summary, self.config.tier_aliases)
