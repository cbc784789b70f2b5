"""Single-process training loop: AdamW, warm-up + cosine schedule, clipping, progress bar, validation."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from neurofm.core.builder import TrainingConfig
from neurofm.core.data.session import Session
from neurofm.core.data.windows import WindowSample, WindowSampler, load_window, tile_intervals
from neurofm.core.model import NeuroFM
from neurofm.core.tasks import TaskSampler, TaskSpec
from neurofm.errors import NeurofmError

__all__ = ["TrainResult", "Trainer", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NeurofmError("device 'cuda' requested but no CUDA GPU is available; use device 'cpu'")
    return torch.device(name)


@dataclass
class TrainResult:
    steps: int
    seconds: float
    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[tuple[int, float]] = field(default_factory=list)


class Trainer:
    """Trains a :class:`NeuroFM` on windows of ``sessions``.

    Each step draws ``batch_size`` windows (sessions weighted by their train time) and one task per
    window from ``config.tasks`` (weights). Validation loss is the mean loss of the same tasks over
    fixed windows tiling the validation tier.
    """

    def __init__(
        self,
        model: NeuroFM,
        sessions: Sequence[Session],
        config: TrainingConfig,
        *,
        window_s: float,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.sessions = list(sessions)
        self.by_id = {s.session_id: s for s in self.sessions}
        self.config = config
        self.window_s = window_s
        self.progress = progress
        self.device = model.device
        self.normalization = model.normalization()
        self.tasks = TaskSampler.from_mapping(config.tasks)
        self.sampler = WindowSampler(self.sessions, window_s, tier="train", seed=config.seed)
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            (no_decay if p.ndim < 2 or "embedding" in name else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.lr,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step = 0

    def _lr_factor(self, step: int) -> float:
        warm = self.config.warmup_steps
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, self.config.steps - warm)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def _batch(self) -> tuple[list[WindowSample], list[TaskSpec], np.random.Generator]:
        draws = self.sampler.draw(self.config.batch_size)
        rng = np.random.default_rng([self.config.seed, 1, self.step])
        batch = [
            load_window(self.sessions[i], t0, self.window_s, self.normalization) for i, t0 in draws
        ]
        return batch, self.tasks.sample(len(batch), rng), rng

    def train_step(self) -> float:
        self.model.train()
        batch, tasks, rng = self._batch()
        out = self.model(batch, tasks, rng)
        if not torch.isfinite(out.loss):
            raise NeurofmError(
                f"training loss became {out.loss.item()} at step {self.step}; the weights were not "
                f"updated. Lower the learning rate (training.lr) or check the data for extreme values."
            )
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return float(out.loss.detach())

    @torch.no_grad()
    def validation_loss(self, max_windows: int = 64) -> float:
        """Mean loss over up to ``max_windows`` fixed validation windows, each task in turn."""
        self.model.eval()
        windows = [
            (s, t0)
            for s in self.sessions
            for t0, _ in tile_intervals(s, "validation", self.window_s)
        ]
        if not windows:
            return float("nan")
        idx = np.linspace(0, len(windows) - 1, min(max_windows, len(windows))).astype(int)
        tasks = self.tasks.tasks
        losses = []
        for start in range(0, len(idx), self.config.batch_size):
            chunk = [windows[i] for i in idx[start : start + self.config.batch_size]]
            batch = [load_window(s, t0, self.window_s, self.normalization) for s, t0 in chunk]
            specs = [tasks[(start + k) % len(tasks)] for k in range(len(batch))]
            out = self.model(batch, specs, np.random.default_rng(start))
            losses.append(float(out.loss))
        return float(np.mean(losses))

    def fit(
        self, steps: int | None = None, callback: Callable[[int, float], None] | None = None
    ) -> TrainResult:
        """Train for ``steps`` (default: config.steps) more steps."""
        steps = self.config.steps - self.step if steps is None else steps
        result = TrainResult(0, 0.0)
        start = time.perf_counter()
        bar = tqdm(total=steps, desc="training", disable=not self.progress, unit="step")
        for _ in range(steps):
            loss = self.train_step()
            result.train_loss.append(loss)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}")
            if self.step % self.config.eval_every == 0 or self.step == self.config.steps:
                val = self.validation_loss()
                result.validation_loss.append((self.step, val))
                bar.set_postfix(loss=f"{loss:.4f}", val=f"{val:.4f}")
            if callback is not None:
                callback(self.step, loss)
        bar.close()
        result.steps = steps
        result.seconds = time.perf_counter() - start
        return result
