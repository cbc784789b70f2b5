"""Importer for NWB optical-physiology files (``neurofm import nwb FILE OUT``; needs ``neurofm[nwb]``).

Read from each file (one session):

- responses: the ``RoiResponseSeries`` of a ``DfOverF`` (preferred) or ``Fluorescence`` interface,
  with ROI metadata from its ``PlaneSegmentation``: ids, position (columns ``x``/``y``/``z``, else
  the centroid of ``image_mask``), area (column ``area``/``location``, else the imaging plane's
  ``location``), optional per-ROI ``time_offset_s`` (scan-phase offsets);
- behaviour ``TimeSeries``: names containing running/speed/treadmill -> ``running``; pupil size
  (inside ``PupilTracking`` or named pupil_*) -> ``pupil``; eye position (``EyeTracking``, gaze,
  pupil_center) -> ``gaze``;
- a 3-D ``ImageSeries`` under ``stimulus`` -> ``movie``;
- stimulus presentations: every ``TimeIntervals`` table (``trials``, ``intervals/*``) with a ``tier``
  column (or ``default_tier``) and a stimulus id column (stimulus_id, image_id, frame, ...).

``SRC`` may be one ``.nwb`` file or a folder of them. pynwb is imported only when this runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

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
    describe_session,
    pupil_with_derivative,
    resolve_tier,
    safe_id,
    scratch_array,
)
from neurofm.errors import NeurofmError

__all__ = ["NwbConfig", "NwbSource"]

_STIM_COLUMNS = ("stimulus_id", "image_id", "frame", "movie_id", "stimulus_name", "image_name")
_CHUNK = 4096


class NwbConfig(PluginConfig):
    """Options of the NWB importer."""

    type: Literal["nwb"] = "nwb"
    species: str = "mouse"
    tier_aliases: dict[str, Tier] = Field(default_factory=lambda: dict(DEFAULT_TIER_ALIASES))
    default_tier: Tier | None = Field(
        None, description="tier of presentations without a tier column"
    )
    prefer: Literal["DfOverF", "Fluorescence"] = "DfOverF"


def _pynwb() -> Any:
    try:
        import pynwb
    except ImportError:
        raise NeurofmError(
            "the nwb importer needs pynwb, which is not installed; run `pip install neurofm[nwb]` "
            "(or `pip install pynwb`) and try again."
        ) from None
    return pynwb


def _times(series: Any) -> np.ndarray:
    n = series.data.shape[0]
    if series.timestamps is not None:
        ts = np.asarray(series.timestamps[:], dtype=np.float64)
    else:
        ts = float(series.starting_time) + np.arange(n, dtype=np.float64) / float(series.rate)
    if ts.shape[0] != n:
        raise SourceFormatError(
            f"nwb: {series.name} has {n} samples but {ts.shape[0]} timestamps; expected one each."
        )
    return ts


def _copy(dataset: Any, out: np.ndarray) -> np.ndarray:
    """Copy an HDF5 dataset into a memmap chunk by chunk (never all in memory)."""
    for i in range(0, out.shape[0], _CHUNK):
        out[i : i + _CHUNK] = np.asarray(dataset[i : i + _CHUNK]).reshape(out[i : i + _CHUNK].shape)
    out.flush()
    return out


class NwbSource(Source):
    """Reads NWB optical physiology (calcium, behaviour, stimulus presentations) into sessions."""

    Config = NwbConfig

    def import_(self, src: Path, out: Path, *, overwrite: bool, progress: bool) -> ImportSummary:
        pynwb = _pynwb()
        src, out = Path(src), Path(out)
        files = sorted(src.glob("*.nwb")) if src.is_dir() else [src]
        if not files or not files[0].is_file():
            raise SourceFormatError(
                f"nwb: {src} is not an .nwb file or a folder holding some; expected NWB files."
            )
        summary = ImportSummary("nwb", out)
        with atomic_directory(out, overwrite=overwrite) as tmp:
            for path in tqdm(files, desc="nwb", unit="file", disable=not progress):
                scratch = tmp / f".scratch-{safe_id(path.stem)}"
                try:
                    with pynwb.NWBHDF5IO(str(path), "r") as io:
                        written = self._session(pynwb, io.read(), path, tmp, scratch, summary)
                except (OSError, ValueError, KeyError) as exc:
                    if isinstance(exc, NeurofmError):
                        raise
                    raise SourceFormatError(f"nwb: cannot read {path} as NWB ({exc}).") from None
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
                summary.sessions.append(describe_session(written, out))
        return summary

    def _responses(self, pynwb: Any, nwb: Any, what: str) -> Any:
        found: dict[str, list] = {"DfOverF": [], "Fluorescence": []}
        for module in nwb.processing.values():
            for iface in module.data_interfaces.values():
                kind = type(iface).__name__
                if kind in found:
                    found[kind] += list(iface.roi_response_series.values())
        other = "Fluorescence" if self.config.prefer == "DfOverF" else "DfOverF"
        series = found[self.config.prefer] or found[other]
        if not series:
            raise SourceFormatError(
                f"{what}: no RoiResponseSeries in a DfOverF or Fluorescence interface under "
                f"processing/; expected optical-physiology responses there."
            )
        return series[0]

    def _units(self, rrs: Any, n: int, what: str, summary: ImportSummary) -> UnitTable:
        table = rrs.rois.table
        idx = np.asarray(rrs.rois.data[:], dtype=np.int64)
        if idx.shape[0] != n:
            raise SourceFormatError(
                f"{what}: {rrs.name} has {n} columns but references {idx.shape[0]} ROIs."
            )
        cols = set(table.colnames)
        pos = np.zeros((n, 3))
        if {"x", "y"} <= cols:
            for k, c in enumerate(("x", "y", "z")):
                if c in cols:
                    pos[:, k] = np.asarray(table[c].data[:], float)[idx]
        elif "image_mask" in cols:
            for k, i in enumerate(idx):
                mask = np.asarray(table["image_mask"][int(i)], float)
                yy, xx = np.indices(mask.shape)
                total = mask.sum() or 1.0
                pos[k, :2] = ((xx * mask).sum() / total, (yy * mask).sum() / total)
            summary.skip(f"{what}/positions", "taken from image_mask centroids (pixels)")
        plane = getattr(table, "imaging_plane", None)
        area_col = next((c for c in ("area", "location") if c in cols), None)
        if area_col:
            area = np.asarray(table[area_col].data[:]).astype(str)[idx]
        else:
            area = np.full(n, str(getattr(plane, "location", "unknown") or "unknown"))
        offsets = None
        if "time_offset_s" in cols:
            offsets = np.asarray(table["time_offset_s"].data[:], np.float64)[idx]
        ids = np.asarray(table.id.data[:], np.int64)[idx]
        return UnitTable(ids, pos, area, offsets)

    def _behaviour(self, pynwb: Any, nwb: Any, summary: ImportSummary, what: str) -> dict:
        streams: dict[str, StreamInput] = {}
        for obj in nwb.objects.values():
            if not isinstance(obj, pynwb.base.TimeSeries) or isinstance(
                obj, pynwb.ophys.RoiResponseSeries | pynwb.image.ImageSeries
            ):
                continue
            name = obj.name.lower()
            parent = type(obj.parent).__name__ if obj.parent is not None else ""
            data = np.asarray(obj.data[:], np.float64)
            data = data.reshape(data.shape[0], -1)
            ts = _times(obj)
            if (
                any(k in name for k in ("running", "speed", "treadmill"))
                and "running" not in streams
            ):
                streams["running"] = StreamInput(
                    "running", data[:, :1], ts, channel_names=["speed"]
                )
            elif parent == "EyeTracking" or any(k in name for k in ("gaze", "eye_pos", "center")):
                if data.shape[1] >= 2 and "gaze" not in streams:
                    streams["gaze"] = StreamInput("gaze", data[:, :2], ts, channel_names=["x", "y"])
            elif (parent == "PupilTracking" or "pupil" in name) and "pupil" not in streams:
                der = data[:, 1] if data.shape[1] > 1 else None
                pupil = pupil_with_derivative(data[:, 0], ts, der)
                streams["pupil"] = StreamInput("pupil", pupil, ts, channel_names=["size", "d_size"])
        for name in ("running", "pupil", "gaze"):
            if name not in streams:
                summary.skip(f"{what}/{name}", "no matching TimeSeries in the file")
        return streams

    def _intervals(self, nwb: Any, what: str) -> list[Interval]:
        tables = {id(t): t for t in [nwb.trials, *nwb.intervals.values()] if t is not None}
        tables = list(tables.values())  # `trials` may also be listed among `intervals`
        out: list[Interval] = []
        for table in tables:
            if table.name == "invalid_times":
                continue
            cols = set(table.colnames)
            start = np.asarray(table["start_time"].data[:], np.float64)
            stop = np.asarray(table["stop_time"].data[:], np.float64)
            stim_col = next((c for c in _STIM_COLUMNS if c in cols), None)
            tiers = table["tier"].data[:] if "tier" in cols else None
            if tiers is None and self.config.default_tier is None:
                raise SourceFormatError(
                    f"{what}: interval table {table.name!r} has no 'tier' column; expected one "
                    f"(train/validation/test). Add it, or import with --config setting "
                    f"default_tier: train."
                )
            for r in range(start.shape[0]):
                tier = (
                    resolve_tier(tiers[r], self.config.tier_aliases, f"{what} {table.name} row {r}")
                    if tiers is not None
                    else self.config.default_tier
                )
                stim = None if stim_col is None else table[stim_col].data[r]
                stim = stim.decode() if isinstance(stim, bytes) else stim
                out.append(
                    Interval(
                        start=float(start[r]),
                        end=float(stop[r]),
                        tier=tier,
                        stimulus_id=None if stim is None else str(stim),
                        trial=r,
                    )
                )
        if not out:
            raise SourceFormatError(f"{what}: no stimulus presentations (TimeIntervals) found.")
        return sorted(out, key=lambda iv: iv.start)

    def _session(self, pynwb, nwb, path, root, scratch, summary) -> Path:
        sid = safe_id(path.stem)
        what = f"nwb {sid}"
        rrs = self._responses(pynwb, nwb, what)
        shape = rrs.data.shape
        n = shape[1] if len(shape) == 2 else 1
        calcium = _copy(rrs.data, scratch_array(scratch, "calcium", (shape[0], n)))
        streams = {"calcium": StreamInput("calcium", calcium, _times(rrs), per_unit=True)}
        streams.update(self._behaviour(pynwb, nwb, summary, what))
        for series in nwb.stimulus.values():
            data = getattr(series, "data", None)
            is_movie = isinstance(series, pynwb.image.ImageSeries) and data is not None
            if is_movie and len(data.shape) == 3 and "movie" not in streams:
                movie = scratch_array(scratch, "movie", tuple(data.shape))
                streams["movie"] = StreamInput("movie", _copy(data, movie), _times(series))
                continue
            summary.skip(f"{what}/stimulus {series.name}", "not a 3-D ImageSeries with frames")
        subject = nwb.subject
        animal = getattr(subject, "subject_id", None) or sid
        return write_session(
            root,
            session_id=sid,
            animal_id=safe_id(str(animal)),
            species=str(getattr(subject, "species", None) or self.config.species),
            streams=streams,
            intervals=self._intervals(nwb, what),
            units=self._units(rrs, n, what, summary),
            attributes={"source": "nwb", "source_name": path.name},
        )
