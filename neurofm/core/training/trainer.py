"""Training loop: torchdata loader, DDP/FSDP when launched by torchrun, AdamW with warm-up + cosine
schedule, clipping, bf16 autocast on CUDA, periodic training state for exact resume, validation.

Every source of randomness is a function of ``(seed, step, rank)`` or of saved state: windows and
tasks come from the loader's step-indexed plan, unit selection from ``task_rng(seed, step, rank)``,
and the torch generator (dropout) is re-seeded from ``(seed, step, rank)`` before each step. So a run
killed at any step and resumed from its last saved state ends with bitwise the same weights as an
uninterrupted run (on CPU, same seed and number of processes).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from neurofm.core.data.coverage import check_stream_coverage
from neurofm.core.data.session import Session
from neurofm.core.data.windows import load_window, tile_intervals
from neurofm.core.model.neurofm import NeuroFM
from neurofm.core.progress import progress as progress_bar
from neurofm.core.tokens.tasks import TaskSampler, TaskSpec
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.distributed import (
    DistInfo,
    TrainStep,
    all_reduce_max,
    all_reduce_sum,
    all_reduce_sum_tensor,
    touched_parameters,
    wrap_for_training,
)
from neurofm.core.training.loader import TrainLoader, task_rng
from neurofm.core.training.monitor import LossMonitor
from neurofm.core.training.sharding import SessionShards
from neurofm.errors import NeurofmError

__all__ = [
    "StepBudget",
    "TrainResult",
    "Trainer",
    "resolve_device",
    "step_seed",
    "validation_loss",
    "validation_sums",
]

logger = logging.getLogger("neurofm.training")


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NeurofmError("device 'cuda' requested but no CUDA GPU is available; use device 'cpu'")
    return torch.device(name)


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one training step on one rank."""
    return int(np.random.SeedSequence([seed, 3, step, rank]).generate_state(1, np.uint64)[0] >> 1)


@dataclass
class TrainResult:
    """Steps run in this call, wall time, per-step train loss and ``(step, loss)`` validations."""

    steps: int
    seconds: float
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[tuple[int, float]] = field(default_factory=list)


@torch.no_grad()
def validation_loss(
    step_fn: TrainStep,
    sessions: Sequence[Session],
    tasks: Sequence[TaskSpec],
    window_s: float,
    *,
    batch_size: int = 16,
    max_windows: int = 64,
) -> float:
    """Mean loss per target over up to ``max_windows`` windows tiling the validation tier.

    ``step_fn``: a :class:`~neurofm.core.training.distributed.TrainStep` (``TrainStep(model)``);
    window ``k`` gets task ``k % len(tasks)``, so the figure is deterministic. It runs in eval
    mode (and is put back in the mode it was in): no plugin penalty, running normalisation
    statistics. NaN when there is no validation window (or target).
    """
    total, count = validation_sums(
        step_fn, sessions, tasks, window_s, batch_size=batch_size, max_windows=max_windows
    )
    return total / count if count > 0 else float("nan")


@torch.no_grad()
def validation_sums(
    step_fn: TrainStep,
    sessions: Sequence[Session],
    tasks: Sequence[TaskSpec],
    window_s: float,
    *,
    batch_size: int = 16,
    max_windows: int = 64,
    keep: Callable[[Session], bool] | None = None,
    equal_batches: bool = False,
) -> tuple[float, float]:
    """The summed loss and target count behind :func:`validation_loss`.

    ``keep``: run only the chosen windows of the sessions it accepts (with session sharding,
    each rank its own; the windows and their tasks are those of the whole run, so the sums over
    ranks cover what one process covers). ``equal_batches`` (collective): every rank runs the
    largest rank's number of batches, repeating one of its own whose result is not counted
    (FSDP runs collectives in every forward pass).
    """
    norm = step_fn.model.normalization()
    windows = [(s, t0) for s in sessions for t0, _ in tile_intervals(s, "validation", window_s)]
    idx = np.linspace(0, len(windows) - 1, min(max_windows, len(windows))).astype(int)
    picked = [(k, windows[i]) for k, i in enumerate(idx) if keep is None or keep(windows[i][0])]
    chunks = [picked[k : k + batch_size] for k in range(0, len(picked), batch_size)]
    n_batches = len(chunks)
    if equal_batches:
        n_batches = int(all_reduce_max(len(chunks), step_fn.model.device))
    total = count = 0.0
    was_training = step_fn.training
    step_fn.eval()  # running statistics, no dropout, no penalty
    try:
        for b in range(n_batches):
            # a pass beyond this rank's own only takes part in the other ranks' collectives
            chunk = chunks[b] if b < len(chunks) else _filler(chunks, sessions, window_s, keep)
            batch = [load_window(s, t0, window_s, norm) for _, (s, t0) in chunk]
            specs = [tasks[k % len(tasks)] for k, _ in chunk]
            t, c = step_fn(batch, specs, np.random.default_rng(chunk[0][0]))
            if b < len(chunks):
                total, count = total + float(t), count + float(c)
    finally:
        step_fn.train(was_training)
    return total, count


def _filler(chunks, sessions, window_s: float, keep) -> list:
    """A batch for an uncounted pass: the rank's first, or (a rank without validation windows)
    one of its training windows."""
    if chunks:
        return chunks[0]
    for s in sessions:
        if keep is None or keep(s):
            for t0, _ in tile_intervals(s, "train", window_s):
                return [(0, (s, t0))]
    raise NeurofmError("this rank has no training window to take part in validation")


def _keep_frozen_statistics(module: torch.nn.Module) -> None:
    """Batch-norm layers whose parameters are all frozen (fine-tuning) run in eval mode: they
    normalise with their running statistics and do not update them, so a frozen core stays as
    it was for the sessions it was trained on."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters())
            if params and not any(p.requires_grad for p in params):
                m.eval()


def parameter_groups(
    model: NeuroFM, lr: float, weight_decay: float, apart: Collection[str] = ()
) -> list[dict]:
    """AdamW parameter groups: weight decay on matrices except embeddings, none on vectors and
    embeddings; each at the learning rate times its plugin's scale
    (:meth:`NeuroFM.learning_rate_scales`). Taken from ``model`` after any distributed wrapping
    (FSDP2 replaces the parameters in place); the first two groups are always the unscaled ones,
    so saved optimizer states keep their layout. ``apart``: names of parameters kept in groups
    of their own (per-session parameters under session sharding: plain tensors, which a
    multi-tensor update cannot mix with FSDP2's DTensors)."""
    scales = model.learning_rate_scales()
    groups: dict[tuple[bool, float, bool], list] = {(True, 1.0, False): [], (False, 1.0, False): []}
    for name, p in model.named_parameters():
        decays = p.ndim >= 2 and "embedding" not in name
        groups.setdefault((decays, scales.get(name, 1.0), name in apart), []).append(p)
    return [
        {"params": params, "weight_decay": weight_decay if decays else 0.0, "lr": lr * scale}
        for (decays, scale, _apart), params in groups.items()
    ]


class Trainer:
    """Trains a :class:`NeuroFM` on windows of ``sessions``.

    Each step this rank draws ``config.batch_size`` windows (sessions weighted by their train time
    or ``session_weights``) and one task per window from ``config.tasks``; under torchrun the
    global batch is the sum over ranks and the loss is the mean over all targets of the global
    batch. Validation loss is the mean loss of the same tasks over fixed validation windows.

    Args:
        model: the model, already on its device.
        sessions: training sessions.
        config: optimisation settings.
        window_s: window duration (seconds).
        progress: show a progress bar (rank 0 only).
        session_weights: session id -> sampling weight.
        state_dir: where :meth:`fit` saves the training state every ``config.checkpoint_every``
            steps (None: never).
    """

    def __init__(
        self,
        model: NeuroFM,
        sessions: Sequence[Session],
        config: TrainingConfig,
        *,
        window_s: float,
        progress: bool = True,
        session_weights: dict[str, float] | None = None,
        state_dir: str | Path | None = None,
    ) -> None:
        self.model = model
        self.sessions = list(sessions)
        self.config = config
        self.window_s = window_s
        self.dist = DistInfo.current()
        self.progress = progress and self.dist.is_main
        self.device = model.device
        self.state_dir = None if state_dir is None else Path(state_dir)
        for note in check_stream_coverage(model.stream_names, self.sessions, strict=False):
            if self.dist.is_main:
                logger.warning(note)
        self.normalization = model.normalization()
        self.tasks = TaskSampler.from_mapping(config.tasks)
        # training.shard_sessions under torchrun: this rank draws its own sessions' windows and
        # keeps only their per-session parameters (sharding.py)
        self.shards: SessionShards | None = None
        drawn = self.sessions
        if config.shard_sessions and self.dist.distributed:
            self.shards = SessionShards(
                model, self.sessions, rank=self.dist.rank, world_size=self.dist.world_size
            )
            self.shards.release(model)
            drawn = self.shards.own_sessions(self.sessions)
        self.session_weights = session_weights
        self.loader = self.make_loader(drawn)
        self.module = wrap_for_training(
            model,
            self.dist,
            fsdp=config.fsdp,
            compile_backbone=config.compile,
            bf16=config.bf16 and self.device.type == "cuda",
            unreduced=list(self.shards.names) if self.shards is not None else (),
        )
        # foreach: one multi-tensor update per group instead of one per parameter (the demo's
        # model on 2 CPU threads: 8 ms against 13 ms a step). The fused update (3 ms) resumed
        # from a saved state is not bitwise the uninterrupted run's, so it is not used.
        self.optimizer = torch.optim.AdamW(
            parameter_groups(
                model,
                config.lr,
                config.weight_decay,
                apart=set(self.shards.names) if self.shards is not None else (),
            ),
            lr=config.lr,
            foreach=True,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        # the parameters whose gradients a single process keeps at 0 rather than free (the ones
        # TrainStep would otherwise touch), and the rest of the optimizer's
        touched = {id(p) for p in touched_parameters(model)}
        optimized = [p for group in self.optimizer.param_groups for p in group["params"]]
        self._kept_gradients = (
            [p for p in optimized if id(p) in touched],
            [p for p in optimized if id(p) not in touched],
        )
        self.step = 0
        self.before_step: list[Callable[[Trainer], None]] = []
        self.monitor = LossMonitor()  # warns on loss spikes, skips steps with NaN/inf gradients

    def make_loader(self, sessions: Sequence[Session]) -> TrainLoader:
        """The training loader of this rank over ``sessions`` (the trainer's settings)."""
        config = self.config
        return TrainLoader(
            sessions,
            self.normalization,
            window_s=self.window_s,
            batch_size=config.batch_size,
            tasks=config.tasks,
            seed=config.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            weights=self.session_weights,
            num_workers=config.num_workers,
            prefetch=config.prefetch,
            pin_memory=self.device.type == "cuda",
        )

    def _lr_factor(self, step: int) -> float:
        warm = self.config.warmup_steps
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, self.config.steps - warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def train_step(self) -> float:
        """One optimisation step on the next batch; returns the global mean loss."""
        for hook in self.before_step:
            hook(self)
        self.module.train()
        _keep_frozen_statistics(self.module)
        batch = next(self.loader)
        if batch.step != self.step:
            raise RuntimeError(f"loader is at step {batch.step}, trainer at {self.step}")
        torch.manual_seed(step_seed(self.config.seed, self.step, self.dist.rank))
        rng = task_rng(self.config.seed, self.step, self.dist.rank)
        total, count = self.module(batch.samples, batch.tasks, rng)
        # the loss sum and target count over ranks, summed on the device: the host reads them
        # once, after the backward pass is queued (on a GPU it does not wait for the forward)
        sums = all_reduce_sum_tensor(torch.stack([total.detach().double(), count.double()]))
        scale = (self.dist.world_size / sums[1].clamp(min=1.0)).to(total.dtype)
        self._zero_gradients()
        (total * scale).backward()
        global_total, global_count = sums.tolist()
        if not math.isfinite(global_total):
            self._zero_gradients()
            raise NeurofmError(
                f"training loss became {global_total} at step {self.step}; the weights were not "
                f"updated. Lower the learning rate (training.lr) or check the data for extreme values."
            )
        self.monitor.check_loss(self.step, global_total / max(global_count, 1.0))
        if self.shards is None:
            norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.config.grad_clip)
        else:
            self.shards.finish_gradients(self.model)
            norm = self.shards.clip(self.model, self.config.grad_clip)
        if self.monitor.gradients_finite(self.step, norm):
            self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return global_total / max(global_count, 1.0)

    def _zero_gradients(self) -> None:
        """Gradients to 0 before a backward pass, as the step's :class:`TrainStep` expects.

        Distributed, every gradient is freed (``None``): the step puts each trainable
        parameter outside the backbone in the graph, so each gets one (0 where unused). A
        single process does not touch them (one operation per parameter, and the per-session
        parameters grow with the sessions): it keeps those parameters' gradients allocated and
        zeroes them in one multi-tensor operation, so a parameter the batch does not use has a
        gradient of 0 all the same; the backbone's gradients are freed as before. The
        parameters are taken from the optimizer when it is built (``_kept_gradients``)."""
        if self.dist.distributed:
            self.optimizer.zero_grad(set_to_none=True)
            return
        kept, freed = self._kept_gradients
        for p in freed:
            p.grad = None
        grads = [p.grad for p in kept if p.grad is not None]
        if grads:
            torch._foreach_zero_(grads)
        for p in kept:
            if p.grad is None:
                p.grad = torch.zeros_like(p)

    def validation_loss(self, max_windows: int = 64) -> float:
        """Mean loss over up to ``max_windows`` fixed validation windows, each task in turn."""
        self.module.eval()
        step_fn = self.module if self.config.fsdp else self.module_unwrapped
        if self.shards is None:
            return validation_loss(
                step_fn,
                self.sessions,
                self.tasks.tasks,
                self.window_s,
                batch_size=self.config.batch_size,
                max_windows=max_windows,
            )
        # sharded: each rank runs the run's validation windows of its own sessions and the sums
        # are added over ranks; under FSDP every rank runs as many forward passes as the others
        shards = self.shards
        total, count = validation_sums(
            step_fn,
            self.sessions,
            self.tasks.tasks,
            self.window_s,
            batch_size=self.config.batch_size,
            max_windows=max_windows,
            keep=lambda s: shards.owns(s.session_id),
            equal_batches=self.config.fsdp,
        )
        total, count = all_reduce_sum([total, count], self.device)
        return total / count if count > 0 else float("nan")

    def gather_sessions(self) -> dict[str, torch.Tensor] | None:
        """Collective under session sharding: every session's parameters on rank 0 (keys as in
        :attr:`model`), which also puts them back into its model; None on the other ranks and
        without sharding."""
        if self.shards is None:
            return None
        gathered = self.shards.gather(self.model)
        if gathered is None:
            return None
        self.shards.restore(self.model, gathered[0])
        return gathered[0]

    @property
    def module_unwrapped(self) -> torch.nn.Module:
        """The :class:`TrainStep` without its DDP wrapper (no collectives)."""
        return getattr(self.module, "module", self.module)

    def save_state(self) -> None:
        """Save the training state now (collective under torchrun)."""
        from neurofm.core.training.state import save_training_state

        if self.state_dir is None:
            raise ValueError("this Trainer has no state_dir")
        save_training_state(self.state_dir, self)

    def resume(self, folder: str | Path | None = None) -> int:
        """Load the newest training state from ``state_dir`` (or the state ``folder``); returns
        the step it continues at."""
        from neurofm.core.training.state import load_training_state

        if self.state_dir is None:
            raise ValueError("this Trainer has no state_dir")
        return load_training_state(self.state_dir, self, folder)

    def set_steps(self, steps: int) -> None:
        """Change the run's total step count (``training.steps``) while it trains, e.g. from a
        :attr:`before_step` hook (:class:`StepBudget`). The learning-rate schedule reads it at
        every step, so set at the end of warm-up the cosine decay is the one a run configured
        with ``steps`` from the start would have; :meth:`fit` without ``steps`` runs to it."""
        if steps < max(self.step, 1):
            raise ValueError(
                f"steps must be >= the current step {self.step} and >= 1, found {steps}"
            )
        self.config = self.config.model_copy(update={"steps": int(steps)})

    def fit(
        self, steps: int | None = None, callback: Callable[[int, float], None] | None = None
    ) -> TrainResult:
        """Train for ``steps`` more steps, or by default up to ``config.steps`` (read at every
        step, so a hook may change it with :meth:`set_steps`)."""
        if steps is not None and steps < 0:
            raise ValueError(f"steps must be >= 0, found {steps}")
        fixed_end = None if steps is None else self.step + steps
        if steps is None and self.config.steps < self.step:
            raise NeurofmError(
                f"the trainer is at step {self.step}, past training.steps {self.config.steps}; "
                f"set steps >= {self.step} to continue"
            )

        def end() -> int:
            return self.config.steps if fixed_end is None else fixed_end

        first = self.step
        result = TrainResult(0, 0.0)
        start = time.perf_counter()
        bar = progress_bar(total=end() - first, desc="training", unit="step", enabled=self.progress)
        validates = any(tile_intervals(s, "validation", self.window_s) for s in self.sessions)
        while self.step < end():
            loss = self.train_step()
            if bar.total != end() - first:  # set_steps in a hook: the bar follows
                bar.total = end() - first
            result.train_loss.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if validates and (
                self.step % self.config.eval_every == 0 or self.step == self.config.steps
            ):
                val = self.validation_loss()
                result.validation_loss.append((self.step, val))
                bar.set_postfix(loss=f"{loss:.4f}", val=f"{val:.4f}")
            if self.state_dir is not None and (
                self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps
            ):
                self.save_state()
            if callback is not None:
                callback(self.step, loss)
        bar.close()
        result.steps = self.step - first
        result.seconds = time.perf_counter() - start
        return result


class StepBudget:
    """A :attr:`Trainer.before_step` hook that re-fixes a run's step count once, so that training
    ends near ``seconds`` after its first step.

    A step count fixed beforehand from a few timed steps misjudges the machine's speed by 10-30 %
    on a shared machine (BENCHMARKS.md, "The demo"). At step ``at_step`` (the end of warm-up,
    where the cosine decay has not started) this hook measures the run's own mean step time
    since step ``skip`` (the first steps are slower) and calls :meth:`Trainer.set_steps` with
    the count that fills the rest of the budget, within ``[min_steps, max_steps]``. Under
    torchrun the slowest rank's time is used, so every rank sets the same count. ``message``
    says what it did (None until then). The training state does not carry the new count: a run
    resumed after ``at_step`` trains to its configured ``training.steps``.
    """

    def __init__(
        self,
        seconds: float,
        at_step: int,
        *,
        skip: int = 5,
        min_steps: int = 1,
        max_steps: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if not seconds > 0 or at_step <= skip or skip < 0:
            raise ValueError(
                f"need seconds > 0 and at_step > skip >= 0; found seconds {seconds}, at_step "
                f"{at_step}, skip {skip}"
            )
        if max_steps is not None and max_steps <= at_step:
            raise ValueError(
                f"max_steps ({max_steps}) must be above at_step ({at_step}): the run is past "
                f"at_step when the hook sets its count"
            )
        self.seconds, self.at_step, self.skip = seconds, at_step, skip
        self.min_steps, self.max_steps, self.clock = min_steps, max_steps, clock
        self.started: float | None = None
        self.skip_time: float | None = None
        self.message: str | None = None

    def __call__(self, trainer: Trainer) -> None:
        now = self.clock()
        if self.started is None:
            self.started = now
        if trainer.step == self.skip:
            self.skip_time = now
        if trainer.step != self.at_step or self.skip_time is None or self.message is not None:
            return
        per_step = (now - self.skip_time) / (self.at_step - self.skip)
        per_step = all_reduce_max(per_step, trainer.device)
        left = max(0.0, self.seconds - (now - self.started))
        steps = max(self.min_steps, self.at_step + 1, self.at_step + int(left / per_step))
        if self.max_steps is not None:
            steps = min(steps, self.max_steps)
        before = trainer.config.steps
        trainer.set_steps(steps)
        self.message = (
            f"re-sized from {before} to {steps} steps at step {self.at_step}: this run's steps "
            f"took {per_step * 1000:.0f} ms"
        )
