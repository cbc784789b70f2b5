"""Tasks as generic mask specs: which streams are visible when, which are targets, which neurons.

A task never names a modality's fields. Rules address streams by name, by role (``"@stimulus"``,
``"@behaviour"``, ``"@neural"``) or all of them (``"*"``); the most specific rule wins
(name > role > ``*``). So a modality added by a plugin takes part in every task through its role.

Time ranges are fractions of the window ``[a, b)`` with ``0 <= a < b <= 1``. For neural (per-unit)
streams, ``visible_units``/``target_units`` choose neurons: ``"all"``, ``{"count": k}``,
``{"fraction": f}``, ``{"ids": [...]}`` (column indices) or, for targets, ``"rest"`` (those not
visible). Example (population k=16)::

    TaskSpec(name="population_16", rules={
        "@neural": StreamRule(visible=(0, 1), target=(0, 1),
                              visible_units={"count": 16}, target_units="rest")})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from neurofm.core.config import StrictModel

__all__ = [
    "PRESETS",
    "ResolvedMask",
    "StreamRule",
    "TaskSampler",
    "TaskSpec",
    "UnitCount",
    "UnitFraction",
    "UnitIds",
    "get_task",
]


class UnitCount(StrictModel):
    count: int = Field(ge=0)


class UnitFraction(StrictModel):
    fraction: float = Field(ge=0, le=1)


class UnitIds(StrictModel):
    ids: list[int]


UnitSelection = Literal["all", "rest", "none"] | UnitCount | UnitFraction | UnitIds


class StreamRule(StrictModel):
    """What happens to the streams a rule addresses. ``None`` means never (not visible / not a target)."""

    visible: tuple[float, float] | None = None
    target: tuple[float, float] | None = None
    visible_units: UnitSelection = "all"
    target_units: UnitSelection = "all"

    @model_validator(mode="after")
    def _ranges(self) -> StreamRule:
        for name in ("visible", "target"):
            r = getattr(self, name)
            if r is not None and not (0.0 <= r[0] < r[1] <= 1.0):
                raise ValueError(f"{name} range {r} must satisfy 0 <= start < end <= 1")
        if self.visible_units == "rest":
            raise ValueError("visible_units cannot be 'rest' (it is defined relative to visible)")
        return self


class TaskSpec(StrictModel):
    """A named task: stream selector -> :class:`StreamRule`."""

    name: str
    rules: dict[str, StreamRule]


@dataclass(frozen=True)
class ResolvedMask:
    """The mask of one stream in one sample: boolean sample masks and unit index arrays."""

    visible_time: np.ndarray  # [T] bool
    target_time: np.ndarray  # [T] bool
    visible_units: np.ndarray | None  # [K] int64 column indices (per-unit streams)
    target_units: np.ndarray | None


def _rule_for(task: TaskSpec, stream: str, role: str) -> StreamRule | None:
    for key in (stream, f"@{role}", "*"):
        if key in task.rules:
            return task.rules[key]
    return None


def _select_units(
    sel: UnitSelection, n: int, taken: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    if sel == "all":
        return np.arange(n)
    if sel == "none":
        return np.arange(0)
    if sel == "rest":
        return np.setdiff1d(np.arange(n), taken if taken is not None else np.arange(0))
    if isinstance(sel, UnitIds):
        ids = np.asarray(sel.ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= n):
            raise ValueError(f"unit ids {sel.ids} out of range for a stream of {n} units")
        return ids
    k = sel.count if isinstance(sel, UnitCount) else round(sel.fraction * n)
    return np.sort(rng.choice(n, size=min(k, n), replace=False))


def resolve(
    task: TaskSpec,
    stream: str,
    role: str,
    times: np.ndarray,
    duration: float,
    n_units: int | None,
    rng: np.random.Generator,
) -> ResolvedMask | None:
    """Apply ``task`` to one stream of a sample (``times``: ``[T]`` seconds since window start).

    Returns None when the stream takes no part. Targets never include an entry that is visible:
    a time sample that is both in the visible and the target range is a target only for units that
    are not visible.
    """
    rule = _rule_for(task, stream, role)
    if rule is None or (rule.visible is None and rule.target is None):
        return None

    def in_range(r: tuple[float, float] | None) -> np.ndarray:
        if r is None:
            return np.zeros(times.shape, dtype=bool)
        return (times >= r[0] * duration) & (times < r[1] * duration)

    visible, target = in_range(rule.visible), in_range(rule.target)
    if n_units is None:
        return ResolvedMask(visible, target & ~visible, None, None)
    vis_units = (
        _select_units(rule.visible_units, n_units, None, rng) if rule.visible else np.arange(0)
    )
    tgt_units = (
        _select_units(rule.target_units, n_units, vis_units, rng) if rule.target else np.arange(0)
    )
    if np.intersect1d(vis_units, tgt_units).size and (visible & target).any():
        # overlapping units and times: those units are targets only outside the visible times
        target = target & ~visible
    return ResolvedMask(visible, target, vis_units, tgt_units)


_ALL = (0.0, 1.0)
PRESETS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec(
            name="responses_from_stimulus_behaviour",
            rules={
                "@stimulus": StreamRule(visible=_ALL),
                "@behaviour": StreamRule(visible=_ALL),
                "@neural": StreamRule(target=_ALL),
            },
        ),
        TaskSpec(
            name="responses_from_stimulus",
            rules={"@stimulus": StreamRule(visible=_ALL), "@neural": StreamRule(target=_ALL)},
        ),
        TaskSpec(
            name="behaviour_from_responses",
            rules={"@neural": StreamRule(visible=_ALL), "@behaviour": StreamRule(target=_ALL)},
        ),
        TaskSpec(
            name="forecast",
            rules={"@neural": StreamRule(visible=(0.0, 0.5), target=(0.5, 1.0))},
        ),
        TaskSpec(
            name="forecast_with_stimulus_behaviour",
            rules={
                "@neural": StreamRule(visible=(0.0, 0.5), target=(0.5, 1.0)),
                "@stimulus": StreamRule(visible=_ALL),
                "@behaviour": StreamRule(visible=_ALL),
            },
        ),
    ]
}


def get_task(name: str | TaskSpec) -> TaskSpec:
    """A preset task by name (or the given spec)."""
    if isinstance(name, TaskSpec):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"no task preset {name!r}; known: {', '.join(PRESETS)}") from None


class TaskSampler:
    """Draws one task per sample (not per batch), with weights.

    Args:
        tasks: task specs or preset names.
        weights: relative weights (default equal).
    """

    def __init__(
        self, tasks: Sequence[str | TaskSpec], weights: Sequence[float] | None = None
    ) -> None:
        self.tasks = [get_task(t) for t in tasks]
        if not self.tasks:
            raise ValueError("TaskSampler needs at least one task")
        w = np.ones(len(self.tasks)) if weights is None else np.asarray(weights, dtype=float)
        if w.shape != (len(self.tasks),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(
                f"weights {list(w)} must be {len(self.tasks)} non-negative numbers, not all 0"
            )
        self.p = w / w.sum()

    def sample(self, n: int, rng: np.random.Generator) -> list[TaskSpec]:
        return [self.tasks[i] for i in rng.choice(len(self.tasks), size=n, p=self.p)]

    @classmethod
    def from_mapping(cls, weights: Mapping[str, float]) -> TaskSampler:
        return cls(list(weights), list(weights.values()))
