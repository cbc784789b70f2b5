"""Training batches on ``torchdata.nodes``: a step-indexed plan, threaded window loading, prefetch.

The pipeline is::

    BatchPlan  ->  ParallelMapper(load)  ->  Prefetcher  ->  [PinMemory, CUDA only]  ->  Loader

:class:`BatchPlan` decides, for each training step, which windows (and which task per window)
this rank trains on. Everything it yields is a function of ``(seed, step, rank)``: the windows come
from a :class:`~neurofm.core.data.windows.WindowSampler` whose draw counter is set to
``step * global_batch + rank * batch_size``, so the ranks share one stream of draws and each takes
its own slice of it. Hence ``world_size`` ranks with ``batch_size`` windows each draw exactly the
windows one process with ``world_size * batch_size`` windows draws, and the loader's state is just
the next step. ``Loader.state_dict()`` (torchdata) accounts for batches that were prefetched but not
yet consumed, so a resumed run continues on exactly the next batch.

Example:
    >>> loader = TrainLoader(sessions, {"calcium": "scale"}, window_s=1.0, batch_size=4,
    ...                      tasks={"forecast": 1.0}, seed=0)        # doctest: +SKIP
    >>> batch = next(iter(loader))                                    # doctest: +SKIP
    >>> batch.step, len(batch.samples)                                # doctest: +SKIP
    (0, 4)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torchdata.nodes import BaseNode, Loader, ParallelMapper, PinMemory, Prefetcher

from neurofm.core.data.session import Session
from neurofm.core.data.windows import WindowSample, WindowSampler, load_window
from neurofm.core.interfaces import Normalization, StreamTensor
from neurofm.core.tokens.tasks import TaskSampler, TaskSpec

__all__ = ["BatchPlan", "LoadedBatch", "PlannedBatch", "TrainLoader", "task_rng"]


def task_rng(seed: int, step: int, rank: int) -> np.random.Generator:
    """The generator a training step uses for unit selection inside tasks (seeded by step, rank)."""
    return np.random.default_rng([seed, 2, step, rank])


@dataclass(frozen=True)
class PlannedBatch:
    """What one rank trains on at one step: ``draws[i] = (session index, t0)`` and the task of
    each window (a family's member drawn with its own parameter)."""

    step: int
    draws: tuple[tuple[int, float], ...]
    tasks: tuple[TaskSpec, ...]


@dataclass(frozen=True)
class LoadedBatch:
    """A planned batch with its windows read and normalised."""

    step: int
    samples: list[WindowSample]
    tasks: list[TaskSpec]

    def pin_memory(self) -> LoadedBatch:
        """A copy whose tensors are in pinned host memory (called by ``torchdata``'s PinMemory)."""

        def pin(s: StreamTensor) -> StreamTensor:
            return StreamTensor(
                s.values.pin_memory(), s.valid.pin_memory(), s.times.pin_memory(), s.period_s
            )

        samples = [
            replace(w, streams={k: pin(v) for k, v in w.streams.items()}) for w in self.samples
        ]
        return LoadedBatch(self.step, samples, self.tasks)


class BatchPlan(BaseNode[PlannedBatch]):
    """Yields one :class:`PlannedBatch` per step, from ``start_step`` on (infinite).

    Tasks are drawn per window from ``rng([seed, 1, step, global window index])`` so they, too,
    do not depend on how the global batch is split between ranks. State: ``{"step": next step}``.
    """

    def __init__(
        self,
        sampler: WindowSampler,
        tasks: TaskSampler,
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.sampler = sampler
        self.task_sampler = tasks
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self._step = 0

    def reset(self, initial_state: dict[str, Any] | None = None) -> None:
        super().reset(initial_state)
        self._step = 0 if initial_state is None else int(initial_state["step"])

    def plan(self, step: int) -> PlannedBatch:
        """The batch of ``step`` (pure: does not advance the node)."""
        first = (step * self.world_size + self.rank) * self.batch_size
        self.sampler.load_state_dict({"seed": self.seed, "drawn": first})
        draws = self.sampler.draw(self.batch_size)
        tasks = tuple(
            self.task_sampler.draw(np.random.default_rng([self.seed, 1, step, first + i]))
            for i in range(self.batch_size)
        )
        return PlannedBatch(step, tuple(draws), tasks)

    def next(self) -> PlannedBatch:
        batch = self.plan(self._step)
        self._step += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"step": self._step}


class TrainLoader:
    """Resumable, prefetching loader of training batches for one rank.

    Args:
        sessions: the training sessions.
        normalization: stream name -> normalisation mode (``NeuroFM.normalization()``).
        window_s: window duration in seconds.
        batch_size: windows per step on this rank (the global batch is the sum over ranks).
        tasks: task name -> weight.
        seed: the run's seed.
        rank, world_size: this process's place in the distributed job.
        weights: optional session id -> sampling weight (default: usable train time).
        num_workers: threads reading windows (numpy I/O releases the GIL).
        prefetch: batches kept ready ahead of the training step.
        pin_memory: pin host memory (only meaningful when training on CUDA).
    """

    def __init__(
        self,
        sessions: Sequence[Session],
        normalization: Mapping[str, Normalization],
        *,
        window_s: float,
        batch_size: int,
        tasks: Mapping[str, float],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        weights: Mapping[str, float] | None = None,
        num_workers: int = 2,
        prefetch: int = 4,
        pin_memory: bool = False,
    ) -> None:
        self.sessions = list(sessions)
        self.normalization = dict(normalization)
        self.window_s = window_s
        self.task_sampler = TaskSampler.from_mapping(tasks)
        sampler = WindowSampler(self.sessions, window_s, tier="train", seed=seed, weights=weights)
        self.plan = BatchPlan(
            sampler,
            self.task_sampler,
            batch_size=batch_size,
            rank=rank,
            world_size=world_size,
            seed=seed,
        )
        node: BaseNode = ParallelMapper(
            self.plan, self.load, num_workers=max(1, num_workers), method="thread", in_order=True
        )
        node = Prefetcher(node, prefetch_factor=max(1, prefetch))
        if pin_memory and torch.cuda.is_available():
            node = PinMemory(node)
        self.loader = Loader(node, restart_on_stop_iteration=False)
        self._iter: Iterator[LoadedBatch] | None = None

    def load(self, planned: PlannedBatch) -> LoadedBatch:
        """Read and normalise the windows of a planned batch (runs in worker threads)."""
        samples = [
            load_window(self.sessions[i], t0, self.window_s, self.normalization)
            for i, t0 in planned.draws
        ]
        return LoadedBatch(planned.step, samples, list(planned.tasks))

    def __iter__(self) -> Iterator[LoadedBatch]:
        return self

    def __next__(self) -> LoadedBatch:
        if self._iter is None:
            self._iter = iter(self.loader)
        return next(self._iter)

    def state_dict(self) -> dict[str, Any]:
        """The torchdata ``Loader`` state: resuming from it yields the batch after the last one
        returned (prefetched batches are not skipped)."""
        return self.loader.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a :meth:`state_dict`; takes effect on the next batch requested."""
        self.loader.load_state_dict(dict(state))
        self._iter = None
