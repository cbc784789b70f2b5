"""A validation split for datasets that have no validation tier (``data.validation_fraction``).

Some datasets come with train and test tiers only (SENSORIUM 2023: train, oracle, final_test).
Training then holds out a fraction of each session's train intervals as validation: whole
intervals, and all presentations of one stimulus together (a repeated train stimulus never
sits on both sides). The choice is a deterministic function of the session id and the intervals
(a hash, no random generator), so a resumed or repeated run holds out the same intervals; the
held-out intervals are recorded in the checkpoint's ``meta.json`` (``validation_split``).

Example:
    >>> sessions, split = hold_out_validation(sessions, 0.1, window_s=2.0)   # doctest: +SKIP
    >>> split.describe()                                                     # doctest: +SKIP
    'held out 4 of 40 train interval(s) in 1 session(s) as validation'
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from neurofm.core.data.manifest import Interval
from neurofm.core.data.session import Session
from neurofm.core.data.windows import tile_intervals

__all__ = ["ValidationSplit", "hold_out_validation", "validation_note"]


@dataclass(frozen=True)
class ValidationSplit:
    """Which train intervals became validation: session id -> their ``[start, end)`` times."""

    fraction: float
    held_out: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    train_intervals: int = 0

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.held_out.values())

    def describe(self) -> str:
        return (
            f"held out {self.count} of {self.train_intervals} train interval(s) in "
            f"{len(self.held_out)} session(s) as validation"
        )

    def to_json(self) -> dict:
        """The record written to the checkpoint."""
        return {
            "fraction": self.fraction,
            "held_out": {sid: [list(iv) for iv in ivs] for sid, ivs in self.held_out.items()},
        }


def _key(session_id: str, iv: Interval) -> str:
    """The group an interval belongs to: its stimulus (repeats together), else itself."""
    return iv.stimulus_id if iv.stimulus_id is not None else f"@{iv.start!r}"


def _rank(session_id: str, key: str) -> str:
    return hashlib.sha256(f"{session_id}\0{key}".encode()).hexdigest()


def _held_out(session: Session, fraction: float, window_s: float) -> set[int]:
    """Indices (into ``session.intervals('train')``) of the intervals to hold out."""
    train = session.intervals("train")
    groups: dict[str, list[int]] = {}
    for i, iv in enumerate(train):
        groups.setdefault(_key(session.session_id, iv), []).append(i)
    if len(groups) < 2:
        return set()
    target = max(1, round(fraction * len(train)))

    def usable(key: str) -> bool:  # a validation window fits inside it
        return any(train[i].end - train[i].start >= window_s for i in groups[key])

    order = sorted(groups, key=lambda k: (not usable(k), _rank(session.session_id, k)))
    chosen: set[int] = set()
    for key in order[:-1]:  # at least one group stays in train
        if len(chosen) >= target:
            break
        chosen.update(groups[key])
    return chosen


def hold_out_validation(
    sessions: Sequence[Session], fraction: float, *, window_s: float
) -> tuple[list[Session], ValidationSplit | None]:
    """Sessions with a validation tier: unchanged if any session has one, else split off.

    Returns the sessions to train on and the split made (None when none was made: the data has
    a validation tier, or ``fraction`` is 0). Each session holds out about ``fraction`` of its
    train intervals (at least one when it has two stimuli or more), preferring intervals at
    least ``window_s`` long so validation windows fit in them.
    """
    if fraction <= 0 or any(s.intervals("validation") for s in sessions):
        return list(sessions), None
    out: list[Session] = []
    held: dict[str, list[tuple[float, float]]] = {}
    total = 0
    for session in sessions:
        train = session.intervals("train")
        total += len(train)
        chosen = _held_out(session, fraction, window_s)
        if not chosen:
            out.append(session)
            continue
        moved = {id(train[i]) for i in chosen}
        intervals = [
            iv.model_copy(update={"tier": "validation"}) if id(iv) in moved else iv
            for iv in session.manifest.intervals
        ]
        held[session.session_id] = [(train[i].start, train[i].end) for i in sorted(chosen)]
        out.append(session.with_intervals(intervals))
    return out, ValidationSplit(fraction, held, total)


def validation_note(
    sessions: Sequence[Session], split: ValidationSplit | None, fraction: float, window_s: float
) -> str | None:
    """What training says about its validation data (None: a validation tier that serves)."""
    if split is not None:
        return (
            f"no validation tier in the data: {split.describe()} (data.validation_fraction "
            f"{fraction}; recorded in the checkpoint)"
        )
    if any(tile_intervals(s, "validation", window_s) for s in sessions):
        return None
    if any(s.intervals("validation") for s in sessions):
        why = f"no validation interval is as long as a window (data.window_s {window_s} s)"
    elif fraction <= 0:
        why = "no validation tier in the data and data.validation_fraction is 0"
    else:
        why = "no validation tier in the data and no session has two train stimuli to hold one out"
    return f"{why}: training without validation (no validation loss)"
