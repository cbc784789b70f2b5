"""Drawing one task per sample: fixed task specs and parametric-random task families.

A :class:`ParametricTask` is a family of tasks with a random parameter (the number of visible
neurons ``k`` of a population task, the context length and gap of a causal task, whether the
stimulus/behaviour are shown); :class:`TaskSampler` draws a family (or fixed task) per sample by
weight, then a member of the family. Named families: ``population_random``, ``causal_random``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import model_validator

from neurofm.core.config import StrictModel
from neurofm.core.tokens.tasks import PRESETS, TaskSpec, causal_task, population_task

__all__ = ["PARAMETRIC", "ParametricTask", "TaskSampler"]


class ParametricTask(StrictModel):
    """A task family. ``population``: ``k`` uniform in ``[k[0], k[1]]``. ``causal``: ``context``
    and ``gap`` uniform in their ranges (window fractions); ``with_stimulus``/``with_behaviour``
    True, False, or None for a fair coin per draw."""

    name: str
    kind: Literal["population", "causal"]
    k: tuple[int, int] = (1, 64)
    context: tuple[float, float] = (0.2, 0.7)
    gap: tuple[float, float] = (0.0, 0.2)
    with_stimulus: bool | None = None
    with_behaviour: bool | None = None

    @model_validator(mode="after")
    def _ranges(self) -> ParametricTask:
        if not (1 <= self.k[0] <= self.k[1]):
            raise ValueError(f"k range {self.k} must satisfy 1 <= low <= high")
        lo, hi = self.context[0] + self.gap[0], self.context[1] + self.gap[1]
        if not (0 < self.context[0] <= self.context[1] and 0 <= self.gap[0] <= self.gap[1]):
            raise ValueError(f"context {self.context} / gap {self.gap} ranges must be increasing")
        if not (lo < 1 and hi < 1):
            raise ValueError(f"context + gap must stay below 1 (the window); found up to {hi:g}")
        return self

    def draw(self, rng: np.random.Generator) -> TaskSpec:
        """One member of the family (named after the family)."""
        if self.kind == "population":
            return population_task(int(rng.integers(self.k[0], self.k[1] + 1)), name=self.name)

        def coin(flag: bool | None) -> bool:
            return bool(rng.random() < 0.5) if flag is None else flag

        return causal_task(
            float(rng.uniform(*self.context)),
            float(rng.uniform(*self.gap)),
            with_stimulus=coin(self.with_stimulus),
            with_behaviour=coin(self.with_behaviour),
            name=self.name,
        )

    def typical(self) -> TaskSpec:
        """The member at the middle of every range (for fixed validation tasks)."""
        if self.kind == "population":
            return population_task(sum(self.k) // 2, name=self.name)
        return causal_task(
            sum(self.context) / 2,
            sum(self.gap) / 2,
            with_stimulus=bool(self.with_stimulus),
            with_behaviour=bool(self.with_behaviour),
            name=self.name,
        )


PARAMETRIC: dict[str, ParametricTask] = {
    p.name: p
    for p in [
        ParametricTask(name="population_random", kind="population"),
        ParametricTask(name="causal_random", kind="causal"),
    ]
}

TaskLike = str | TaskSpec | ParametricTask


def _lookup(task: TaskLike) -> TaskSpec | ParametricTask:
    if not isinstance(task, str):
        return task
    found = PRESETS.get(task) or PARAMETRIC.get(task)
    if found is None:
        raise ValueError(f"no task preset {task!r}; known: {', '.join([*PRESETS, *PARAMETRIC])}")
    return found


class TaskSampler:
    """Draws one task per sample (not per batch), with weights; parametric families draw their
    parameter per sample too.

    Args:
        tasks: task specs, parametric families or their names.
        weights: relative weights (default equal).

    Attributes:
        tasks: one fixed :class:`TaskSpec` per entry (a family's typical member), e.g. for
            validation.
    """

    def __init__(self, tasks: Sequence[TaskLike], weights: Sequence[float] | None = None) -> None:
        self.entries = [_lookup(t) for t in tasks]
        if not self.entries:
            raise ValueError("TaskSampler needs at least one task")
        w = np.ones(len(self.entries)) if weights is None else np.asarray(weights, dtype=float)
        if w.shape != (len(self.entries),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(
                f"weights {list(w)} must be {len(self.entries)} non-negative numbers, not all 0"
            )
        self.p = w / w.sum()
        self.tasks = [e.typical() if isinstance(e, ParametricTask) else e for e in self.entries]

    def draw(self, rng: np.random.Generator) -> TaskSpec:
        """One task: an entry by weight, then (for a family) a member with a fresh parameter."""
        entry = self.entries[int(rng.choice(len(self.entries), p=self.p))]
        return entry.draw(rng) if isinstance(entry, ParametricTask) else entry

    def sample(self, n: int, rng: np.random.Generator) -> list[TaskSpec]:
        """``n`` tasks, one per sample."""
        return [self.draw(rng) for _ in range(n)]

    @classmethod
    def from_mapping(cls, weights: Mapping[str, float]) -> TaskSampler:
        return cls(list(weights), list(weights.values()))
