"""Time windows cut from sessions, normalised and turned into tensors; samplers that choose them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from neurofm.core.data.manifest import Tier
from neurofm.core.data.session import Session
from neurofm.core.interfaces import Normalization, StreamTensor
from neurofm.errors import DataError

__all__ = [
    "WindowSample",
    "WindowSampler",
    "load_window",
    "normalise_stream",
    "tile_intervals",
]


@dataclass(frozen=True)
class WindowSample:
    """One training/evaluation sample: the streams of one session inside ``[t0, t0 + duration)``.

    ``streams`` holds only the streams the model uses that this session has (absent ones are simply
    missing). ``truth`` holds ground-truth arrays cut to the window when requested (simulated data).
    ``unit_time_offset_s`` ``[N]`` float32: each unit's sample time within a frame of the per-unit
    streams (the session's ``units/time_offset_s``; None when the session records none), so unit
    ``n``'s sample ``k`` was taken at ``times[k] + unit_time_offset_s[n]``.
    """

    session_id: str
    t0: float
    duration: float
    streams: dict[str, StreamTensor]
    truth: dict[str, torch.Tensor] = field(default_factory=dict)
    unit_time_offset_s: torch.Tensor | None = None


def normalise_stream(
    session: Session,
    name: str,
    data: np.ndarray,
    mode: Normalization,
    *,
    dtype: type[np.floating] = np.float64,
) -> np.ndarray:
    """``data`` of stream ``name`` normalised as the model sees it, with the train-tier statistics
    in the session's manifest: ``zscore`` ((x - mean) / std), ``scale`` (x / std) or ``none`` (x).

    A stream without statistics is left as it is (mean 0, std 1). The statistics are taken in
    ``dtype``: ``np.float32`` keeps float32 data float32 (the data loader's windows); the default
    gives float64 results (the baselines and the evaluation).

    Shape: data ``[T, ...]`` -> ``[T, ...]``; per-channel statistics broadcast over the last axis.
    """
    stats = session.stream_spec(name).statistics
    mean = np.asarray(stats.mean if stats else [0.0], dtype=dtype)
    std = np.asarray(stats.std if stats else [1.0], dtype=dtype)
    if mode == "zscore":
        return (data - mean) / std
    if mode == "scale":
        return data / std
    return data


def load_window(
    session: Session,
    t0: float,
    duration: float,
    normalization: Mapping[str, Normalization],
    *,
    ground_truth: Sequence[str] = (),
) -> WindowSample:
    """Read ``[t0, t0 + duration)`` of the streams named in ``normalization`` that the session has.

    Each stream is normalised with the train-tier statistics stored in its manifest; NaN/inf samples
    are marked invalid and set to 0 (the valid mask travels with the values, so encoders and losses
    skip them). ``ground_truth`` arrays are scaled like the stream they are aligned with.
    """
    names = [n for n in normalization if n in session.manifest.streams]
    cut = session.window(t0, t0 + duration, names, ground_truth=list(ground_truth))
    streams: dict[str, StreamTensor] = {}
    scales: dict[int, str] = {}  # stream length -> the stream whose statistics scale it
    for name in names:
        spec = session.stream_spec(name)
        w = cut[name]
        data = w.data.astype(np.float32, copy=False)
        mode = normalization[name]
        values = normalise_stream(session, name, data, mode, dtype=np.float32).astype(np.float32)
        finite = np.isfinite(values)
        valid = finite if values.ndim == 2 else finite.all(axis=tuple(range(1, finite.ndim)))
        values = np.where(finite, values, 0.0).astype(np.float32)
        streams[name] = StreamTensor(
            values=torch.from_numpy(values),
            valid=torch.from_numpy(valid),
            times=torch.from_numpy((w.timestamps - t0).astype(np.float32)),
            period_s=1.0 / spec.sampling_rate_hz,
        )
        scales[spec.data.shape[0]] = name
    truth: dict[str, torch.Tensor] = {}
    for name in ground_truth:
        w = cut[f"ground_truth.{name}"]
        length = session.ground_truth(name).shape[0]
        data = w.data.astype(np.float32)
        if length in scales:
            like = scales[length]
            mode = normalization[like]
            data = normalise_stream(session, like, data, mode, dtype=np.float32).astype(np.float32)
        truth[name] = torch.from_numpy(data)
    units = session.units
    offsets = None
    if units is not None and units.time_offset_s is not None:
        offsets = torch.from_numpy(np.asarray(units.time_offset_s, dtype=np.float32))
    return WindowSample(session.session_id, float(t0), float(duration), streams, truth, offsets)


def tile_intervals(
    session: Session, tier: Tier, duration: float, *, context: float = 0.0
) -> list[tuple[float, int]]:
    """Window starts that cover every ``tier`` interval of a session: ``[(t0, interval_index)]``.

    Windows tile each interval from its start, one every ``duration - context`` seconds (so
    consecutive windows overlap by ``context``: each window after the first sees the last
    ``context`` seconds of the one before); when the interval is not covered exactly, a last window
    ends at the interval's end (overlapping the previous one by more). Intervals shorter than
    ``duration`` get no window.
    """
    if not 0.0 <= context < duration:
        raise ValueError(
            f"context {context:g} s must be at least 0 and shorter than the window ({duration:g} s)"
        )
    stride = duration - context
    starts = []
    for index, iv in enumerate(session.intervals(tier)):
        length = iv.end - iv.start
        if length < duration:
            continue
        n = 1 + int(np.floor((length - duration) / stride + 1e-9))
        starts += [(iv.start + k * stride, index) for k in range(n)]
        if length - ((n - 1) * stride + duration) > 1e-6:
            starts.append((iv.end - duration, index))
    return starts


class WindowSampler:
    """Random windows from the ``tier`` intervals of several sessions.

    A session is drawn with probability proportional to its usable time in the tier (or to
    ``weights``), then a window start uniformly inside one of its intervals. Deterministic for a
    given seed; ``state_dict``/``load_state_dict`` resume the exact sequence.
    """

    def __init__(
        self,
        sessions: Sequence[Session],
        duration: float,
        *,
        tier: Tier = "train",
        seed: int = 0,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        self.duration = duration
        self.tier = tier
        self._choices: list[tuple[int, float, float]] = []  # (session index, start, last start)
        lengths = []
        for si, session in enumerate(sessions):
            for iv in session.intervals(tier):
                if iv.end - iv.start >= duration:
                    self._choices.append((si, iv.start, iv.end - duration))
                    w = 1.0 if weights is None else weights.get(session.session_id, 0.0)
                    lengths.append((iv.end - iv.start - duration + 1e-3) * w)
        if not any(session.intervals(tier) for session in sessions):
            found = sorted({iv.tier for s in sessions for iv in s.manifest.intervals})
            raise DataError(
                f"no {tier} interval in any of the {len(sessions)} session(s) (their intervals "
                f"are of the tiers {found or 'none'}); expected {tier} intervals in at least one "
                f"session: import or write the data with {tier} intervals"
            )
        if not self._choices:
            raise DataError(
                f"no {tier} interval of the {len(sessions)} session(s) is at least {duration} s long; "
                f"use a shorter window or data with {tier} intervals"
            )
        p = np.asarray(lengths)
        if not (np.isfinite(p).all() and (p >= 0).all() and p.sum() > 0):
            raise DataError(
                f"session weights {dict(weights or {})} give no {tier} interval a positive weight; "
                f"expected non-negative weights keyed by session id, some of them > 0 "
                f"(sessions: {[s.session_id for s in sessions]})"
            )
        self._p = p / p.sum()
        self.seed = seed
        self.drawn = 0

    def draw(self, n: int) -> list[tuple[int, float]]:
        """``n`` windows as ``(session index, t0)``; the k-th draw depends only on (seed, k)."""
        out = []
        for _ in range(n):
            rng = np.random.default_rng([self.seed, self.drawn])
            si, lo, hi = self._choices[rng.choice(len(self._choices), p=self._p)]
            out.append((si, float(lo + rng.random() * (hi - lo))))
            self.drawn += 1
        return out

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "drawn": self.drawn}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.seed, self.drawn = int(state["seed"]), int(state["drawn"])
