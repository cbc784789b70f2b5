"""The validated JSON manifest of a session folder (format described in docs/session-format.md)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from neurofm.core.config import StrictModel

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SAFE_ID",
    "ArraySpec",
    "ImportNotes",
    "Interval",
    "Manifest",
    "StreamSpec",
    "StreamStatistics",
    "Tier",
    "UnitsSpec",
    "check_safe_id",
]

FORMAT_NAME = "neurofm.session"
FORMAT_VERSION = 1
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
Tier = Literal["train", "validation", "test"]


def check_safe_id(value: str, what: str = "id") -> str:
    """Reject ids that are not safe as a single folder name (path traversal, separators, ...)."""
    if not SAFE_ID.match(value) or ".." in value:
        raise ValueError(
            f"{what} {value!r} is not a safe name: expected 1-128 characters of letters, digits, "
            f"'.', '_' or '-', starting with a letter or digit and without '..'"
        )
    return value


def _check_relative_path(value: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ValueError(
            f"file path {value!r} must be relative to the session folder and stay inside it "
            f"(no leading '/', no '..')"
        )
    return value


class ArraySpec(StrictModel):
    """A ``.npy`` file inside the session folder with its expected shape and dtype."""

    file: str
    shape: list[int]
    dtype: str

    _file = field_validator("file")(_check_relative_path)


class StreamStatistics(StrictModel):
    """Normalisation statistics of a stream, computed on the train tier when the session is written.

    ``mean``/``std`` have one entry per channel (last axis) for ``[T, C]`` streams and a single entry
    for streams of more dimensions (e.g. movies ``[T, H, W]``). NaN samples are ignored.
    """

    tier: Tier = "train"
    mean: list[float]
    std: list[float]
    count: int = Field(ge=0)


class StreamSpec(StrictModel):
    """One time series: data ``[T, ...]`` and timestamps ``[T]`` (float64 seconds, strictly increasing)."""

    modality: str
    data: ArraySpec
    timestamps: ArraySpec
    sampling_rate_hz: float = Field(gt=0)
    per_unit: bool = False
    event_like: bool = False
    channel_names: list[str] | None = None
    statistics: StreamStatistics | None = None

    @model_validator(mode="after")
    def _consistent(self) -> StreamSpec:
        if len(self.timestamps.shape) != 1:
            raise ValueError(f"timestamps must be 1-D [T], found shape {self.timestamps.shape}")
        if not self.data.shape or self.data.shape[0] != self.timestamps.shape[0]:
            raise ValueError(
                f"data has {self.data.shape[:1]} samples but timestamps has "
                f"{self.timestamps.shape[0]}; expected the same length T"
            )
        if self.timestamps.dtype != "float64":
            raise ValueError(f"timestamps dtype must be float64, found {self.timestamps.dtype}")
        if self.channel_names is not None and (
            len(self.data.shape) != 2 or len(self.channel_names) != self.data.shape[1]
        ):
            raise ValueError(
                f"{len(self.channel_names)} channel_names given for data of shape {self.data.shape}"
            )
        return self


class UnitsSpec(StrictModel):
    """Neuron metadata: ``ids [N]`` int64, ``position_um [N, 3]`` (cortical x, y, depth), ``area [N]``."""

    count: int = Field(ge=1)
    ids: ArraySpec
    position_um: ArraySpec
    area: ArraySpec
    time_offset_s: ArraySpec | None = None

    @model_validator(mode="after")
    def _consistent(self) -> UnitsSpec:
        expected = {"ids": [self.count], "position_um": [self.count, 3], "area": [self.count]}
        if self.time_offset_s is not None:
            expected["time_offset_s"] = [self.count]
        for name, shape in expected.items():
            found = getattr(self, name).shape
            if found != shape:
                raise ValueError(f"units.{name} must have shape {shape}, found {found}")
        return self


class Interval(StrictModel):
    """A trial or stimulus presentation ``[start, end)`` in seconds, with its data tier."""

    start: float
    end: float
    tier: Tier
    stimulus_id: str | None = None
    trial: int | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if not self.end > self.start:
            raise ValueError(f"interval end ({self.end}) must be after its start ({self.start})")
        return self


class ImportNotes(StrictModel):
    """What an importer left out of a session and what it had to guess (``neurofm import``).

    Each entry is ``"what: why"``, e.g. ``"eye_tracker/data column 3 'minor_radius': not used"``.
    """

    source: str
    unused: list[str] = Field(default_factory=list)
    guesses: list[str] = Field(default_factory=list)


class Manifest(StrictModel):
    """Top-level ``manifest.json`` of a session folder."""

    format: Literal["neurofm.session"] = FORMAT_NAME
    format_version: int
    session_id: str
    animal_id: str
    species: str
    streams: dict[str, StreamSpec]
    units: UnitsSpec | None = None
    intervals: list[Interval]
    ground_truth: dict[str, ArraySpec] = Field(default_factory=dict)
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)
    import_notes: ImportNotes | None = None
    written_by: str = ""

    @field_validator("session_id", "animal_id")
    @classmethod
    def _safe(cls, value: str, info) -> str:
        return check_safe_id(value, info.field_name)

    @field_validator("format_version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value != FORMAT_VERSION:
            raise ValueError(
                f"format_version {value} is not supported by this neurofm (reads version "
                f"{FORMAT_VERSION}); upgrade neurofm or re-export the session"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        for name, spec in self.streams.items():
            check_safe_id(name, "stream name")
            if spec.per_unit:
                if self.units is None:
                    raise ValueError(f"stream {name!r} is per_unit but the session has no units")
                if len(spec.data.shape) != 2 or spec.data.shape[1] != self.units.count:
                    raise ValueError(
                        f"per-unit stream {name!r} must have shape [T, {self.units.count}] "
                        f"(one column per unit), found {spec.data.shape}"
                    )
        if not self.streams:
            raise ValueError("a session needs at least one stream")
        return self
