"""Reading a session folder: validated manifest, memory-mapped streams, window cutting.

Example:
    >>> from neurofm.core.data import Session
    >>> session = Session.open("data/sim-a0-s0")                       # doctest: +SKIP
    >>> windows = session.window(1010.0, 1012.0, ["movie", "running"])  # doctest: +SKIP
    >>> windows["movie"].data.shape                                     # doctest: +SKIP
    (60, 36, 64)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from neurofm.core.config import format_validation_error
from neurofm.core.data.manifest import ArraySpec, Interval, Manifest, StreamSpec, Tier
from neurofm.errors import DataError, SessionFormatError

__all__ = ["MANIFEST_NAME", "Session", "StreamWindow", "UnitTable", "open_dataset"]

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class StreamWindow:
    """The samples of one stream inside a window ``[t0, t1)``.

    Shape:
        data: ``[T, ...]`` (the stream's own sample shape); timestamps: ``[T]`` float64 seconds.
    """

    data: np.ndarray
    timestamps: np.ndarray


@dataclass(frozen=True)
class UnitTable:
    """Neuron metadata of a session. Shape: ids ``[N]``, position_um ``[N, 3]``, area ``[N]``."""

    ids: np.ndarray
    position_um: np.ndarray
    area: np.ndarray
    time_offset_s: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


class Session:
    """A session folder opened for reading. Arrays are memory-mapped, never loaded whole."""

    def __init__(self, path: Path, manifest: Manifest) -> None:
        self.path = path
        self.manifest = manifest
        self._arrays: dict[str, np.ndarray] = {}

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, check_timestamps: bool = True) -> Session:
        """Open and validate a session folder.

        Every array's header is checked against the manifest (shape, dtype, file size), and with
        ``check_timestamps`` every stream's timestamps are checked to be finite and strictly increasing.

        Raises:
            SessionFormatError: naming the file or field, what was expected and what was found.
        """
        path = Path(path)
        manifest_path = path / MANIFEST_NAME
        if not manifest_path.is_file():
            raise SessionFormatError(
                f"{path} is not a session folder: {MANIFEST_NAME} not found. Expected a folder "
                f"written by neurofm (neurofm simulate / neurofm import)."
            )
        try:
            raw = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, absurd numbers or nesting
            raise SessionFormatError(
                f"{manifest_path} is not valid JSON ({exc}); the file is corrupt or truncated. "
                f"Re-create the session."
            ) from None
        try:
            manifest = Manifest.model_validate(raw)
        except ValidationError as exc:
            problems = "\n  - ".join(format_validation_error(exc))
            raise SessionFormatError(
                f"{manifest_path} is not a valid manifest:\n  - {problems}"
            ) from None
        session = cls(path, manifest)
        session._check_arrays(check_timestamps)
        return session

    def _array_specs(self) -> dict[str, ArraySpec]:
        specs: dict[str, ArraySpec] = {}
        for name, stream in self.manifest.streams.items():
            specs[f"streams.{name}.data"] = stream.data
            specs[f"streams.{name}.timestamps"] = stream.timestamps
        units = self.manifest.units
        if units is not None:
            for field in ("ids", "position_um", "area", "time_offset_s"):
                spec = getattr(units, field)
                if spec is not None:
                    specs[f"units.{field}"] = spec
        for name, spec in self.manifest.ground_truth.items():
            specs[f"ground_truth.{name}"] = spec
        return specs

    def _load(self, key: str, spec: ArraySpec) -> np.ndarray:
        file = self.path / spec.file
        if not file.is_file():
            raise SessionFormatError(f"{key}: file {file} is missing (listed in the manifest)")
        try:
            array = np.load(file, mmap_mode="r", allow_pickle=False)
        except Exception as exc:  # a damaged header can fail in numpy's parser in many ways
            raise SessionFormatError(
                f"{key}: cannot read {file} as a .npy array ({type(exc).__name__}: {exc}); the "
                f"file is corrupt or truncated"
            ) from None
        if list(array.shape) != spec.shape or str(array.dtype) != spec.dtype:
            raise SessionFormatError(
                f"{key}: {file} holds {array.dtype} {list(array.shape)}, but the manifest expects "
                f"{spec.dtype} {spec.shape}; the file was changed after writing. Re-create the session."
            )
        return array

    def _check_arrays(self, check_timestamps: bool) -> None:
        for key, spec in self._array_specs().items():
            self._arrays[key] = self._load(key, spec)
        if check_timestamps:
            for name in self.manifest.streams:
                ts = self._arrays[f"streams.{name}.timestamps"]
                where = f"session {self.manifest.session_id!r}, stream {name!r}"
                file = self.path / self.manifest.streams[name].timestamps.file
                if ts.size and not np.isfinite(ts).all():
                    raise SessionFormatError(
                        f"{where}: timestamps contain NaN or inf (in {file}); re-create the "
                        f"session with finite timestamps"
                    )
                if ts.size > 1 and not (np.diff(ts) > 0).all():
                    bad = int(np.argmin(np.diff(ts) > 0))
                    later, earlier = float(ts[bad + 1]), float(ts[bad])
                    raise SessionFormatError(
                        f"{where}: timestamps must be strictly increasing, but sample "
                        f"{bad + 1} ({later!r}) does not follow sample {bad} ({earlier!r}) "
                        f"(in {file}); re-create the session with its samples in time order"
                    )

    # -- metadata -----------------------------------------------------------------------------
    @property
    def session_id(self) -> str:
        return self.manifest.session_id

    @property
    def animal_id(self) -> str:
        return self.manifest.animal_id

    @property
    def stream_names(self) -> list[str]:
        return list(self.manifest.streams)

    def stream_spec(self, name: str) -> StreamSpec:
        try:
            return self.manifest.streams[name]
        except KeyError:
            raise SessionFormatError(
                f"session {self.session_id!r} has no stream {name!r}; it has "
                f"{', '.join(self.manifest.streams)}"
            ) from None

    def stream_data(self, name: str) -> np.ndarray:
        """Memory-mapped data ``[T, ...]`` of a stream."""
        self.stream_spec(name)
        return self._arrays[f"streams.{name}.data"]

    def stream_timestamps(self, name: str) -> np.ndarray:
        """Memory-mapped timestamps ``[T]`` (float64 seconds) of a stream."""
        self.stream_spec(name)
        return self._arrays[f"streams.{name}.timestamps"]

    @cached_property
    def units(self) -> UnitTable | None:
        if self.manifest.units is None:
            return None
        offsets = self._arrays.get("units.time_offset_s")
        return UnitTable(
            ids=np.asarray(self._arrays["units.ids"]),
            position_um=np.asarray(self._arrays["units.position_um"], dtype=np.float32),
            area=np.asarray(self._arrays["units.area"]),
            time_offset_s=None if offsets is None else np.asarray(offsets),
        )

    def ground_truth(self, name: str) -> np.ndarray:
        """A memory-mapped ground-truth array (simulated sessions), e.g. ``expected_calcium``."""
        key = f"ground_truth.{name}"
        if key not in self._arrays:
            raise SessionFormatError(
                f"session {self.session_id!r} has no ground truth {name!r}; it has "
                f"{', '.join(self.manifest.ground_truth) or 'none'}"
            )
        return self._arrays[key]

    def intervals(self, tier: Tier | None = None) -> list[Interval]:
        """Intervals (trials), optionally of one tier, in time order."""
        found = [i for i in self.manifest.intervals if tier is None or i.tier == tier]
        return sorted(found, key=lambda i: i.start)

    def with_intervals(self, intervals: list[Interval]) -> Session:
        """The same session (same memory-mapped arrays) with other intervals, e.g. re-tiered.

        Nothing is written: the folder on disk keeps its own intervals.
        """
        manifest = Manifest.model_validate(
            self.manifest.model_dump() | {"intervals": [iv.model_dump() for iv in intervals]}
        )
        view = Session(self.path, manifest)
        view._arrays = self._arrays
        return view

    @cached_property
    def time_range(self) -> tuple[float, float]:
        """``(start, end)`` in seconds covered by any stream.

        A regular stream covers up to its last sample plus one period; an event-like stream (one
        sample per presentation) up to its last sample.
        """
        starts, ends = [], []
        for name, spec in self.manifest.streams.items():
            ts = self.stream_timestamps(name)
            if ts.size:
                starts.append(float(ts[0]))
                period = 0.0 if spec.event_like else 1.0 / spec.sampling_rate_hz
                ends.append(float(ts[-1]) + period)
        if not starts:
            raise DataError(f"session {self.session_id!r} has no samples in any stream")
        return min(starts), max(ends)

    # -- windows ------------------------------------------------------------------------------
    def window(
        self,
        t0: float,
        t1: float,
        streams: list[str] | None = None,
        *,
        ground_truth: list[str] = (),
    ) -> dict[str, StreamWindow]:
        """Cut ``[t0, t1)`` out of each requested stream at its own rate (reads only that slice).

        ``ground_truth`` names arrays aligned with a stream of the same length; each is cut with the
        timestamps of the stream whose length it shares (``expected_calcium`` with ``calcium``).
        """
        start, end = self.time_range
        if not t1 > t0:
            raise DataError(f"window end {t1} must be after its start {t0}")
        if t0 < start - 1e-9 or t1 > end + 1e-9:
            raise DataError(
                f"window [{t0:.6f}, {t1:.6f}) s lies outside session {self.session_id!r}, which covers "
                f"[{start:.6f}, {end:.6f}) s; choose a window inside the recording"
            )
        out: dict[str, StreamWindow] = {}
        for name in self.stream_names if streams is None else streams:
            ts = self.stream_timestamps(name)
            i0, i1 = np.searchsorted(ts, [t0, t1], side="left")
            out[name] = StreamWindow(np.array(self.stream_data(name)[i0:i1]), np.array(ts[i0:i1]))
        for name in ground_truth:
            array = self.ground_truth(name)
            aligned = [
                s for s in self.stream_names if self.stream_spec(s).data.shape[0] == array.shape[0]
            ]
            if not aligned:
                raise SessionFormatError(f"ground truth {name!r} is aligned with no stream")
            ts = self.stream_timestamps(aligned[0])
            i0, i1 = np.searchsorted(ts, [t0, t1], side="left")
            out[f"ground_truth.{name}"] = StreamWindow(np.array(array[i0:i1]), np.array(ts[i0:i1]))
        return out

    def __repr__(self) -> str:
        n = self.units and len(self.units)
        return f"Session({self.session_id!r}, animal={self.animal_id!r}, streams={self.stream_names}, units={n})"


def open_dataset(root: str | Path, session_ids: list[str] | None = None) -> list[Session]:
    """Open every session folder directly under ``root`` (hidden/partial folders are ignored)."""
    from neurofm.core.storage.folders import describe, folder_format, hint

    root = Path(root)
    if (root / MANIFEST_NAME).is_file():
        if folder_format(root) not in (None, "neurofm.session"):
            raise SessionFormatError(
                f"data path {root} is {describe(root)}, not a folder of sessions; "
                f"{hint(root, 'data')}"
            )
        return [Session.open(root)]
    if not root.is_dir():
        old = sorted(root.parent.glob(f".{root.name}.old-*")) if root.parent.is_dir() else []
        if old:
            raise SessionFormatError(
                f"data path {root} does not exist, but {old[-1]} holds its previous copy: an "
                f"overwrite of it was interrupted. Move it back (mv {old[-1]} {root}) or write "
                f"the data again"
            )
        raise SessionFormatError(f"data path {root} does not exist; expected a folder of sessions")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    # folders that state another format (a checkpoint kept beside the sessions) are not sessions
    folders = [p for p in folders if folder_format(p) in (None, "neurofm.session")]
    sessions = [Session.open(p) for p in folders if (p / MANIFEST_NAME).is_file()]
    if session_ids is not None:
        by_id = {s.session_id: s for s in sessions}
        missing = [i for i in session_ids if i not in by_id]
        if missing:
            raise SessionFormatError(
                f"sessions {missing} not found under {root}; found {sorted(by_id)}"
            )
        sessions = [by_id[i] for i in session_ids]
    if not sessions:
        found = describe(root)
        if found != "a folder neurofm did not write":
            raise SessionFormatError(
                f"no session folders under {root}: it is {found}; {hint(root, 'data')}"
            )
        raise SessionFormatError(
            f"no session folders (with {MANIFEST_NAME}) under {root}; create some with "
            f"`neurofm simulate {root}` or `neurofm import ...`"
        )
    return sessions
