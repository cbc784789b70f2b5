"""Tasks as generic mask specs: which streams are visible when, which are targets, which neurons.

A task never names a modality's fields. Rules address streams by name, by role (``"@stimulus"``,
``"@behaviour"``, ``"@neural"``) or all of them (``"*"``); the most specific rule wins
(name > role > ``*``). So a modality added by a plugin takes part in every task through its role.

Time ranges are fractions of the window ``[a, b)`` with ``0 <= a < b <= 1``. For neural (per-unit)
streams, ``visible_units``/``target_units`` choose neurons: ``"all"``, ``{"count": k}``,
``{"fraction": f}``, ``{"ids": [...]}`` (column indices) or, for targets, ``"rest"`` (those not
visible). A (time, unit) entry is never both visible and a target (see :func:`resolve`).

Presets mirror the test protocol: stimulus(+behaviour) -> responses, behaviour from responses,
population k (:func:`population_task`), forecasting and causal k with a gap, with or without
stimulus and behaviour (:func:`causal_task`; context and gap in window fractions). Parametric
random families and the per-sample sampler are in :mod:`neurofm.core.tokens.task_sampler`.
Example (population k=16)::

    TaskSpec(name="population_16", rules={
        "@neural": StreamRule(visible=(0, 1), target=(0, 1),
                              visible_units={"count": 16}, target_units="rest")})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from neurofm.core.config import StrictModel

__all__ = [
    "PRESETS",
    "ResolvedMask",
    "StreamRule",
    "TaskSpec",
    "UnitCount",
    "UnitFraction",
    "UnitIds",
    "causal_task",
    "get_task",
    "population_task",
    "resolve",
    "rule_for",
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
    """The mask of one stream in one sample.

    Shape: visible_time/target_time ``[T]`` bool; visible_units/target_units ``[K]`` int64 column
    indices (per-unit streams, else None); target_excluded ``[target_time.sum(), K_target]`` bool
    or None: entries of the target block (target times x target units) that are visible inputs and
    so must not be scored (only when some target units are also visible at some target times).
    """

    visible_time: np.ndarray
    target_time: np.ndarray
    visible_units: np.ndarray | None
    target_units: np.ndarray | None
    target_excluded: np.ndarray | None = None


def rule_for(task: TaskSpec, stream: str, role: str) -> StreamRule | None:
    """The rule of ``task`` that addresses ``stream`` (name > role > ``*``), or None."""
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
        ids = np.unique(np.asarray(sel.ids, dtype=np.int64))
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

    Returns None when the stream takes no part. A target entry is never visible: for channel
    streams visible times are removed from the target times; for per-unit streams an entry
    (time, unit) that is both requested as target and visible is marked in ``target_excluded``
    (target times/units that would be excluded entirely are dropped), so every requested target
    entry that is not visible stays covered.
    """
    rule = rule_for(task, stream, role)
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
    shared = np.isin(tgt_units, vis_units)  # [K_target]
    excluded = visible[target][:, None] & shared[None, :]  # [T_target, K_target]
    if not excluded.any():
        return ResolvedMask(visible, target, vis_units, tgt_units)
    keep_time, keep_unit = ~excluded.all(1), ~excluded.all(0)
    target = target.copy()
    target[np.flatnonzero(target)[~keep_time]] = False
    excluded = excluded[keep_time][:, keep_unit]
    return ResolvedMask(
        visible, target, vis_units, tgt_units[keep_unit], excluded if excluded.any() else None
    )


_ALL = (0.0, 1.0)


def population_task(
    k: int | None = None, *, fraction: float | None = None, name: str | None = None
) -> TaskSpec:
    """``k`` (or a ``fraction`` of the) neurons are visible and predict all the others, at the same
    times; no stimulus or behaviour."""
    if (k is None) == (fraction is None):
        raise ValueError("population_task needs exactly one of k or fraction")
    units = UnitCount(count=k) if k is not None else UnitFraction(fraction=fraction)
    label = f"population_{k}" if k is not None else f"population_{fraction:g}"
    return TaskSpec(
        name=name or label,
        rules={"@neural": StreamRule(visible=_ALL, target=_ALL, visible_units=units, target_units="rest")},
    )  # fmt: skip


def causal_task(
    context: float = 0.5,
    gap: float = 0.1,
    *,
    with_stimulus: bool = False,
    with_behaviour: bool = False,
    window_s: float | None = None,
    name: str | None = None,
) -> TaskSpec:
    """Forecast neural activity after a context, skipping a gap.

    ``context`` and ``gap`` are fractions of the window (so one task serves any window length and
    any sampling rate: at 30 Hz in a 2 s window, ``context=0.5`` is a 30-sample context); with
    ``window_s`` they are seconds and converted. Neural activity is visible in ``[0, context)``
    and the target in ``[context + gap, 1)``. The stimulus (known ahead, the experimenter's) is
    visible over the whole window; behaviour (an observation of the animal) only in the context.
    """
    if window_s is not None:
        context, gap = context / window_s, gap / window_s
    if not (context > 0 and gap >= 0 and context + gap < 1):
        raise ValueError(
            f"causal task needs 0 < context and context + gap < 1 (window fractions); "
            f"found context {context:g}, gap {gap:g}"
        )
    rules = {"@neural": StreamRule(visible=(0.0, context), target=(context + gap, 1.0))}
    if with_stimulus:
        rules["@stimulus"] = StreamRule(visible=_ALL)
    if with_behaviour:
        rules["@behaviour"] = StreamRule(visible=(0.0, context))
    suffix = "_stimulus" * with_stimulus + "_behaviour" * with_behaviour
    return TaskSpec(name=name or f"causal_{round(context * 100)}{suffix}", rules=rules)


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
        population_task(8),
        population_task(32),
        population_task(fraction=0.5, name="population_half"),
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
        causal_task(0.5, 0.1),
        causal_task(0.5, 0.1, with_stimulus=True),
        causal_task(0.5, 0.1, with_stimulus=True, with_behaviour=True),
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


def __getattr__(name: str) -> object:
    # the sampler lives in its own module (it imports this one); re-exported here lazily
    if name in ("TaskSampler", "ParametricTask", "PARAMETRIC"):
        from neurofm.core.tokens import task_sampler

        return getattr(task_sampler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
