"""Importer for NWB optical-physiology files (``neurofm import nwb FILE OUT``; needs ``neurofm[nwb]``).

Read from each file (one session); every name list below is a config field (docs/own-data.md):

- responses: the ``RoiResponseSeries`` of a ``DfOverF`` (preferred) or ``Fluorescence`` interface,
  with ROI metadata from its ``PlaneSegmentation`` (``_nwb_units``): ids (a unit-id column, else
  the table's ``id``), positions (centroid columns, else the centroid of ``image_mask``,
  ``pixel_mask`` or ``voxel_mask``), area, scan-phase offsets;
- behaviour ``TimeSeries``: running speed, pupil size (of the pupil series, the one whose name says
  size/area/diameter/major radius), eye position (``EyeTracking`` or a gaze name);
- ``ImageSeries`` under ``stimulus``: 3-D frames -> ``movie``; a series named like images ->
  the event-like ``image`` stream (one frame per presentation);
- stimulus presentations: every ``TimeIntervals`` table (``trials``, ``intervals/*``) with a tier
  column (or ``default_tier``) and a stimulus id column.

Rates are the series' ``rate`` (or the imaging plane's ``imaging_rate``) when stated, else
estimated within presentations. Every series, column and table not read is reported.
``SRC`` may be one ``.nwb`` file or a folder of them. pynwb is imported only when this runs.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from neurofm.core.config import PluginConfig
from neurofm.core.data.manifest import Interval, Tier
from neurofm.core.data.rates import estimate_rate
from neurofm.core.data.sources import ImportSummary, Source, SourceFormatError
from neurofm.core.data.sources.common import (
    DEFAULT_PUPIL_SIZE_NAMES,
    DEFAULT_TIER_ALIASES,
    describe_session,
    find_name,
    resolve_rates,
    resolve_tier,
    safe_id,
    scratch_array,
)
from neurofm.core.data.writer import StreamInput, write_session
from neurofm.core.progress import progress as progress_bar
from neurofm.core.storage.files import atomic_directory
from neurofm.errors import NeurofmError
from neurofm.plugins.sources._nwb_series import SeriesReader, series_times, stated_rate, where
from neurofm.plugins.sources._nwb_units import read_units

__all__ = ["NwbConfig", "NwbSource"]

_CHUNK = 4096


def _names(*default: str, what: str):
    return Field(default_factory=lambda: list(default), description=what)


class NwbConfig(PluginConfig):
    """Options of the NWB importer: which names hold what (each list is tried in order)."""

    type: Literal["nwb"] = "nwb"
    species: str = "mouse"
    tier_aliases: dict[str, Tier] = Field(default_factory=lambda: dict(DEFAULT_TIER_ALIASES))
    default_tier: Tier | None = Field(
        None, description="tier of presentations without a tier column"
    )
    prefer: Literal["DfOverF", "Fluorescence"] = "DfOverF"
    unit_id_columns: list[str] = _names(
        "unit_id", "unit_ids", "roi_id", "cell_id", "cell_specimen_id",
        what="PlaneSegmentation columns holding unit ids (else the table's id column)",
    )  # fmt: skip
    centroid_columns: list[list[str]] = Field(
        default_factory=lambda: [
            ["x", "y", "z"],
            ["centroid_x", "centroid_y", "centroid_z"],
            ["center_x", "center_y", "center_z"],
            ["x_um", "y_um", "z_um"],
        ],
        description="PlaneSegmentation columns of ROI positions (x, y[, z]); else masks",
    )
    centroid_vector_columns: list[str] = _names(
        "centroid",
        "center",
        "roi_center",
        "position_um",
        "position",
        what="PlaneSegmentation columns holding a position vector [2] or [3] per ROI",
    )
    area_columns: list[str] = _names(
        "area", "brain_area", "location", what="columns of brain areas (else the plane location)"
    )
    time_offset_columns: list[str] = _names(
        "time_offset_s", "scan_phase_offset_s", "scan_offset_s", "phase_shift_s", "phase_shift",
        "phase_shifts", "time_offset",
        what="PlaneSegmentation columns of scan-phase offsets (s)",
    )  # fmt: skip
    stimulus_id_columns: list[str] = _names(
        "stimulus_id", "condition_id", "condition_hash", "image_id", "video_id", "movie_id",
        "frame", "stimulus_name", "image_name", "stim_id",
        what="interval-table columns naming the stimulus (repeats share it)",
    )  # fmt: skip
    tier_columns: list[str] = _names("tier", "split", "data_split", what="interval tier columns")
    trial_columns: list[str] = _names(
        "trial_idx", "trial_index", "trial_id", what="interval-table columns of trial numbers"
    )
    running_names: list[str] = _names(
        "running_speed", "running", "speed", "treadmill", "wheel", "velocity",
        what="TimeSeries names of running speed",
    )  # fmt: skip
    pupil_names: list[str] = _names(
        "pupil", what="TimeSeries names (besides those in PupilTracking) of pupil measures"
    )
    pupil_size_names: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PUPIL_SIZE_NAMES),
        description="names of the pupil series that is the size, best first",
    )
    gaze_names: list[str] = _names(
        "eye_position", "gaze", "eye_pos", "pupil_center", "pupil_position", "center",
        what="TimeSeries names (besides those in EyeTracking) of eye position x, y",
    )  # fmt: skip
    image_series_names: list[str] = _names(
        "images", "image", "natural_images", "static_images", "image_presentations",
        what="stimulus ImageSeries holding one frame per presentation (-> image stream)",
    )  # fmt: skip


def _pynwb() -> Any:
    try:
        import pynwb
    except ImportError:
        raise NeurofmError(
            "the nwb importer needs pynwb, which is not installed; run `pip install neurofm[nwb]` "
            "(or `pip install pynwb`) and try again."
        ) from None
    return pynwb


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
            for path in progress_bar(files, desc="nwb", unit="file", enabled=progress):
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

    def _responses(self, nwb: Any, what: str) -> Any:
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

    def _stimuli(self, reader: SeriesReader, nwb: Any, scratch: Path) -> dict:
        streams: dict[str, StreamInput] = {}
        for series in nwb.stimulus.values():
            data = getattr(series, "data", None)
            is_frames = isinstance(series, reader.pynwb.image.ImageSeries) and data is not None
            if not (is_frames and len(data.shape) == 3):
                continue
            image = find_name([series.name], self.config.image_series_names) is not None
            name = "image" if image else "movie"
            if name in streams:
                continue
            frames = _copy(data, scratch_array(scratch, name, tuple(data.shape)))
            streams[name] = StreamInput(
                name,
                frames,
                series_times(series),
                sampling_rate_hz=stated_rate(series),
                event_like=image,
            )
            reader.used.add(id(series))
        return streams

    def _intervals(self, nwb: Any, sid: str, what: str, summary) -> list[Interval]:
        cfg = self.config
        tables = {id(t): t for t in [nwb.trials, *nwb.intervals.values()] if t is not None}
        out: list[Interval] = []
        for table in tables.values():  # `trials` may also be listed among `intervals`
            if table.name == "invalid_times":
                summary.skip(f"{sid}/intervals/invalid_times", "not used (no data is removed)")
                continue
            cols = list(table.colnames)
            start = np.asarray(table["start_time"].data[:], np.float64)
            stop = np.asarray(table["stop_time"].data[:], np.float64)
            stim_col = next((c for c in cfg.stimulus_id_columns if c in cols), None)
            tier_col = next((c for c in cfg.tier_columns if c in cols), None)
            trial_col = next((c for c in cfg.trial_columns if c in cols), None)
            for c in cols:
                if c not in {"start_time", "stop_time", stim_col, tier_col, trial_col}:
                    summary.skip(f"{sid}/{table.name} column {c!r}", "not used")
            if tier_col is None and cfg.default_tier is None:
                raise SourceFormatError(
                    f"{what}: interval table {table.name!r} has no 'tier' column (looked for "
                    f"{cfg.tier_columns}); expected one (train/validation/test). Add it, name it "
                    f"in `tier_columns`, or import with --config setting default_tier: train."
                )
            if tier_col is None:
                summary.guess(f"{sid}/{table.name} tiers", f"all {cfg.default_tier} (default_tier)")
            if stim_col is None:
                summary.skip(
                    f"{sid}/{table.name} stimulus ids",
                    f"no column among {cfg.stimulus_id_columns} (stimulus_id_columns); repeats "
                    f"are not grouped",
                )
            tiers = table[tier_col].data[:] if tier_col else None
            stims = table[stim_col].data[:] if stim_col else None
            trials = table[trial_col].data[:] if trial_col else None
            for r in range(start.shape[0]):
                tier = (
                    resolve_tier(tiers[r], cfg.tier_aliases, f"{what} {table.name} row {r}")
                    if tiers is not None
                    else cfg.default_tier
                )
                stim = None if stims is None else stims[r]
                stim = stim.decode() if isinstance(stim, bytes) else stim
                out.append(
                    Interval(
                        start=float(start[r]),
                        end=float(stop[r]),
                        tier=tier,
                        stimulus_id=None if stim is None else str(stim),
                        trial=r if trials is None else self._trial(trials[r], table, trial_col),
                    )
                )
        if not out:
            raise SourceFormatError(f"{what}: no stimulus presentations (TimeIntervals) found.")
        return sorted(out, key=lambda iv: iv.start)

    @staticmethod
    def _trial(value: Any, table: Any, column: str) -> int:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not number.is_integer():
            raise SourceFormatError(
                f"nwb: interval table {table.name!r} column {column!r} holds {value!r}; expected "
                f"integer trial numbers. Remove the column from `trial_columns` in the importer "
                f"config to number trials by row."
            )
        return int(number)

    def _calcium_rate(self, rrs: Any, ts: np.ndarray, intervals, sid: str, summary) -> float | None:
        """The series' rate, else the imaging plane's ``imaging_rate`` if the timestamps agree."""
        stated = stated_rate(rrs)
        if stated is not None:
            return stated
        plane = getattr(rrs.rois.table, "imaging_plane", None)
        nominal = getattr(plane, "imaging_rate", None)
        measured = estimate_rate(ts, intervals)
        if nominal and measured and abs(measured / float(nominal) - 1) < 0.01:
            return float(nominal)
        if nominal:
            summary.skip(
                f"{sid}/imaging_plane imaging_rate",
                f"{nominal} Hz not used: the timestamps give {measured:.6g} Hz",
            )
        return None

    def _session(self, pynwb, nwb, path, root, scratch, summary) -> Path:
        sid = safe_id(path.stem)
        what = f"nwb {path}"
        reader = SeriesReader(pynwb, self.config, sid, what, summary)
        rrs = self._responses(nwb, what)
        reader.used.add(id(rrs))
        shape = rrs.data.shape
        n = shape[1] if len(shape) == 2 else 1
        calcium = _copy(rrs.data, scratch_array(scratch, "calcium", (shape[0], n)))
        intervals = self._intervals(nwb, sid, what, summary)
        ts = series_times(rrs)
        rate = self._calcium_rate(rrs, ts, intervals, sid, summary)
        streams = {
            "calcium": StreamInput("calcium", calcium, ts, per_unit=True, sampling_rate_hz=rate)
        }
        streams.update(reader.behaviour(nwb))
        streams.update(self._stimuli(reader, nwb, scratch))
        units = read_units(rrs, n, self.config, sid, summary, what)
        for obj in sorted(nwb.objects.values(), key=lambda o: str(getattr(o, "name", ""))):
            if isinstance(obj, pynwb.base.TimeSeries) and id(obj) not in reader.used:
                summary.skip(f"{sid}/{where(obj)}", f"{type(obj).__name__} not read")
        if nwb.units is not None:
            summary.skip(f"{sid}/units", "spike-sorted units table not read")
        streams = resolve_rates(streams, intervals, summary, sid)
        subject = nwb.subject
        animal = getattr(subject, "subject_id", None) or sid
        return write_session(
            root,
            session_id=sid,
            animal_id=safe_id(str(animal)),
            species=str(getattr(subject, "species", None) or self.config.species),
            streams=streams,
            intervals=intervals,
            units=units,
            attributes={"source": "nwb", "source_name": path.name},
            import_notes=summary.notes(sid),
        )
