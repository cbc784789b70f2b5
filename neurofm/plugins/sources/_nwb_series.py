"""Time series of the NWB importer: times, stated rates, and the behaviour streams chosen by name."""

from __future__ import annotations

from typing import Any

import numpy as np

from neurofm.core.data.sources import ImportSummary, SourceFormatError
from neurofm.core.data.sources.common import find_name, find_pupil_size, pupil_with_derivative
from neurofm.core.data.writer import StreamInput

__all__ = ["SeriesReader", "series_times", "stated_rate", "where"]


def series_times(series: Any) -> np.ndarray:
    """Timestamps ``[T]`` float64 of a series (its own, else ``starting_time + k / rate``)."""
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


def stated_rate(series: Any) -> float | None:
    """The series' rate when it is stated (series without timestamps state one)."""
    rate = getattr(series, "rate", None)
    return float(rate) if series.timestamps is None and rate else None


def where(obj: Any) -> str:
    """``parent/name`` of an NWB object, for reports."""
    parent = obj.parent
    return f"{parent.name}/{obj.name}" if parent is not None and parent.name != "root" else obj.name


class SeriesReader:
    """Reads series of one file, remembering which it used (``used``: object ids) for the report.

    Args:
        pynwb: the pynwb module.
        config: the importer's :class:`~neurofm.plugins.sources.nwb.NwbConfig`.
        sid: the session id (report keys); what: the file, for error messages.
        summary: where unused items and guesses are recorded.
    """

    def __init__(self, pynwb: Any, config: Any, sid: str, what: str, summary: ImportSummary):
        self.pynwb = pynwb
        self.config = config
        self.sid = sid
        self.what = what
        self.summary = summary
        self.used: set[int] = set()

    def matrix(self, obj: Any, *, keep: int) -> np.ndarray:
        """The first ``keep`` columns ``[T, keep]`` of a series (others reported unused)."""
        data = np.asarray(obj.data[:], np.float64)
        data = data.reshape(data.shape[0], -1)
        self.used.add(id(obj))
        if data.shape[1] > keep:
            self.summary.skip(
                f"{self.sid}/{where(obj)} columns {keep}..{data.shape[1] - 1}", "not used"
            )
        return data[:, :keep]

    def _stream(self, name: str, obj: Any, keep: int, channels: list[str]) -> StreamInput:
        data = self.matrix(obj, keep=keep)
        return StreamInput(
            name, data, series_times(obj), channel_names=channels, sampling_rate_hz=stated_rate(obj)
        )

    def behaviour(self, nwb: Any) -> dict[str, StreamInput]:
        """``running``, ``pupil`` and ``gaze`` streams, each from the series its name says."""
        cfg, pynwb = self.config, self.pynwb
        running, gaze, pupil = [], [], []
        series = [
            o
            for o in nwb.objects.values()
            if isinstance(o, pynwb.base.TimeSeries)
            and not isinstance(o, pynwb.ophys.RoiResponseSeries | pynwb.image.ImageSeries)
        ]
        for obj in sorted(series, key=where):
            parent = type(obj.parent).__name__ if obj.parent is not None else ""
            if parent == "EyeTracking" or find_name([obj.name], cfg.gaze_names) is not None:
                gaze.append(obj)
            elif parent == "PupilTracking" or find_name([obj.name], cfg.pupil_names) is not None:
                pupil.append(obj)
            elif find_name([obj.name], cfg.running_names) is not None:
                running.append(obj)
        streams: dict[str, StreamInput] = {}
        if running:
            streams["running"] = self._stream("running", running[0], 1, ["speed"])
        gaze = [o for o in gaze if np.prod(o.data.shape[1:]) >= 2]
        if gaze:
            streams["gaze"] = self._stream("gaze", gaze[0], 2, ["x", "y"])
        if pupil:
            streams["pupil"] = self._pupil(pupil)
        for name in ("running", "pupil", "gaze"):
            if name not in streams:
                self.summary.skip(f"{self.sid}/{name}", "no matching TimeSeries in the file")
        return streams

    def _pupil(self, candidates: list[Any]) -> StreamInput:
        """The pupil stream from the series named as the size (never the first one found)."""
        names = [o.name for o in candidates]
        k = find_pupil_size(names, self.config.pupil_size_names)
        if k is None and len(candidates) == 1:
            k = 0
            self.summary.guess(
                f"{self.sid}/pupil", f"the only pupil series {names[0]!r} is the size"
            )
        if k is None:
            raise SourceFormatError(
                f"{self.what}: the file holds {len(candidates)} pupil series {names} and none is "
                f"named as the pupil size (pupil_size_names: {list(self.config.pupil_size_names)}),"
                f" so which one is the size cannot be checked. Set `pupil_size_names` in the "
                f"importer config (--config) to the size series' name, e.g. "
                f"pupil_size_names: [{names[0]}]."
            )
        obj = candidates[k]
        size = self.matrix(obj, keep=1)[:, 0]
        ts = series_times(obj)
        self.summary.guess(f"{self.sid}/pupil d_size", f"computed from {obj.name!r} over time")
        return StreamInput(
            "pupil",
            pupil_with_derivative(size, ts),
            ts,
            channel_names=["size", "d_size"],
            sampling_rate_hz=stated_rate(obj),
        )
