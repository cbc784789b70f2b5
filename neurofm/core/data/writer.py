"""Writing a session folder atomically (see docs/session-format.md)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neurofm.core.data.manifest import (
    FORMAT_VERSION,
    ArraySpec,
    ImportNotes,
    Interval,
    Manifest,
    StreamSpec,
    StreamStatistics,
    check_safe_id,
)
from neurofm.core.data.rates import stream_rate
from neurofm.core.data.session import MANIFEST_NAME, UnitTable
from neurofm.core.storage.files import atomic_directory, disk_full_guard
from neurofm.errors import SessionFormatError

__all__ = ["StreamInput", "compute_statistics", "write_session"]


@dataclass(frozen=True)
class StreamInput:
    """A stream to write. Shape: data ``[T, ...]``; timestamps ``[T]`` seconds (any float dtype).

    ``sampling_rate_hz``: the nominal rate when the source states it; None estimates it from the
    timestamps within intervals (:mod:`neurofm.core.data.rates`). ``event_like``: one sample per
    presentation (flashed images), no regular clock.
    """

    modality: str
    data: np.ndarray
    timestamps: np.ndarray
    per_unit: bool = False
    channel_names: Sequence[str] | None = None
    sampling_rate_hz: float | None = None
    event_like: bool = False


def _save(folder: Path, rel: str, array: np.ndarray) -> ArraySpec:
    file = folder / rel
    file.parent.mkdir(parents=True, exist_ok=True)
    np.save(file, array, allow_pickle=False)
    return ArraySpec(file=rel, shape=list(array.shape), dtype=str(array.dtype))


def compute_statistics(
    data: np.ndarray,
    timestamps: np.ndarray,
    intervals: Sequence[Interval],
    *,
    tier: str = "train",
    chunk: int = 4096,
) -> StreamStatistics:
    """Per-channel mean/std over samples inside the ``tier`` intervals, ignoring NaN.

    Streams ``[T, C]`` get one value per channel; streams of more dimensions one value overall.
    Reads ``data`` in chunks, so memory-mapped inputs are never loaded whole.
    """
    inside = np.zeros(timestamps.shape[0], dtype=bool)
    for iv in intervals:
        if iv.tier == tier:
            i0, i1 = np.searchsorted(timestamps, [iv.start, iv.end], side="left")
            inside[i0:i1] = True
    per_channel = data.ndim == 2
    width = data.shape[1] if per_channel else 1
    total = np.zeros(width)
    total_sq = np.zeros(width)
    count = np.zeros(width)
    shift = None
    for start in range(0, data.shape[0], chunk):
        sel = inside[start : start + chunk]
        if not sel.any():
            continue
        block = np.asarray(data[start : start + chunk][sel], dtype=np.float64)
        block = block if per_channel else block.reshape(-1, 1)
        valid = np.isfinite(block)
        if shift is None:  # shift by a first estimate for numerical stability
            shift = np.array(
                [c[np.isfinite(c)].mean() if np.isfinite(c).any() else 0.0 for c in block.T]
            )
        centred = np.where(valid, block - shift, 0.0)
        total += centred.sum(0)
        total_sq += (centred**2).sum(0)
        count += valid.sum(0)
    if shift is None:
        shift = np.zeros(width)
    safe = np.maximum(count, 1)
    mean = total / safe
    var = np.maximum(total_sq / safe - mean**2, 0.0)
    std = np.sqrt(var)
    std = np.where((count > 1) & (std > 0), std, 1.0)
    return StreamStatistics(
        tier=tier,
        mean=(mean + shift).tolist(),
        std=std.tolist(),
        count=int(count.min()) if count.size else 0,
    )


def _safe_id(value: str, what: str) -> str:
    try:
        return check_safe_id(value, what)
    except ValueError as exc:
        raise SessionFormatError(str(exc)) from None


def _check_stream(name: str, stream: StreamInput) -> np.ndarray:
    ts = np.asarray(stream.timestamps, dtype=np.float64)
    if ts.ndim != 1:
        raise SessionFormatError(f"stream {name!r}: timestamps must be 1-D, found shape {ts.shape}")
    if stream.data.shape[:1] != ts.shape:
        raise SessionFormatError(
            f"stream {name!r}: data has {stream.data.shape[0] if stream.data.ndim else 0} samples "
            f"but timestamps has {ts.shape[0]}; expected one timestamp per sample"
        )
    if not np.isfinite(ts).all():
        raise SessionFormatError(f"stream {name!r}: timestamps contain NaN or inf")
    if ts.size > 1 and not (np.diff(ts) > 0).all():
        bad = int(np.argmin(np.diff(ts) > 0))
        raise SessionFormatError(
            f"stream {name!r}: timestamps must be strictly increasing; sample {bad + 1} "
            f"({float(ts[bad + 1])!r}) does not follow sample {bad} ({float(ts[bad])!r})"
        )
    if not np.issubdtype(stream.data.dtype, np.number):
        raise SessionFormatError(
            f"stream {name!r}: data must be numeric, found {stream.data.dtype}"
        )
    return ts


def write_session(
    root: str | Path,
    *,
    session_id: str,
    animal_id: str,
    species: str,
    streams: Mapping[str, StreamInput],
    intervals: Sequence[Interval | Mapping],
    units: UnitTable | None = None,
    ground_truth: Mapping[str, np.ndarray] | None = None,
    attributes: Mapping[str, str | int | float | bool] | None = None,
    import_notes: ImportNotes | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one session folder ``root/session_id`` atomically and return its path.

    Data is stored as float32 (timestamps float64); normalisation statistics of every stream are
    computed on the train tier and stored in the manifest.

    Raises:
        SessionFormatError: inconsistent inputs (lengths, timestamps, units), before anything is written.
        FileExistsError: the folder exists and ``overwrite`` is false.
    """
    from neurofm import __version__

    _safe_id(session_id, "session_id")
    parsed = [
        iv if isinstance(iv, Interval) else Interval.model_validate(dict(iv)) for iv in intervals
    ]
    checked = {}
    for name, stream in streams.items():
        try:
            checked[name] = _check_stream(_safe_id(name, "stream name"), stream)
        except SessionFormatError as exc:
            raise SessionFormatError(
                f"session {session_id!r} (to be written to {Path(root) / session_id}), {exc}"
            ) from None
    target = Path(root) / session_id
    needed = sum(4 * np.size(s.data) + 8 * np.size(s.timestamps) for s in streams.values())
    with disk_full_guard(target, needed), atomic_directory(target, overwrite=overwrite) as tmp:
        specs: dict[str, StreamSpec] = {}
        for name, stream in streams.items():
            ts = checked[name]
            data = np.asarray(stream.data, dtype=np.float32)
            rate = stream.sampling_rate_hz or stream_rate(ts, parsed, event_like=stream.event_like)
            specs[name] = StreamSpec(
                modality=stream.modality,
                data=_save(tmp, f"streams/{name}/data.npy", data),
                timestamps=_save(tmp, f"streams/{name}/timestamps.npy", ts),
                sampling_rate_hz=rate,
                per_unit=stream.per_unit,
                event_like=stream.event_like,
                channel_names=list(stream.channel_names) if stream.channel_names else None,
                statistics=compute_statistics(data, ts, parsed),
            )
        units_spec = None
        if units is not None:
            units_spec = {
                "count": len(units),
                "ids": _save(tmp, "units/ids.npy", np.asarray(units.ids, dtype=np.int64)),
                "position_um": _save(
                    tmp, "units/position_um.npy", np.asarray(units.position_um, dtype=np.float32)
                ),
                "area": _save(tmp, "units/area.npy", np.asarray(units.area, dtype=np.str_)),
            }
            if units.time_offset_s is not None:
                units_spec["time_offset_s"] = _save(
                    tmp, "units/time_offset_s.npy", np.asarray(units.time_offset_s, np.float64)
                )
        truth = {
            name: _save(
                tmp, f"ground_truth/{_safe_id(name, 'ground truth name')}.npy", np.asarray(arr)
            )
            for name, arr in (ground_truth or {}).items()
        }
        try:
            manifest = Manifest(
                format_version=FORMAT_VERSION,
                session_id=session_id,
                animal_id=animal_id,
                species=species,
                streams=specs,
                units=units_spec,
                intervals=parsed,
                ground_truth=truth,
                attributes=dict(attributes or {}),
                import_notes=import_notes,
                written_by=f"neurofm {__version__}",
            )
        except Exception as exc:  # pydantic ValidationError -> a format error naming the session
            raise SessionFormatError(f"session {session_id!r} is inconsistent: {exc}") from None
        (tmp / MANIFEST_NAME).write_text(
            json.dumps(manifest.model_dump(mode="json"), indent=1) + "\n", encoding="utf-8"
        )
    return target
