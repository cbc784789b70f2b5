"""Watching a training run for numerical trouble: loss spikes and non-finite gradients.

The trainer asks a :class:`LossMonitor` two questions each step: is this loss a spike? and are the
gradients finite (may the optimizer step)? A spike is logged as a warning naming the step and the
run goes on; non-finite gradients skip the optimizer step with a warning, so NaN or inf never
reaches the weights. Both are recorded (``spikes``, ``skipped``).

A loss is a spike when it exceeds the median of the recent losses by more than ``spike_factor``
times their median absolute deviation (MAD). Measuring the excess in MADs rather than as a multiple
of the median keeps the test meaningful for losses near or below zero (a Poisson negative
log-likelihood without its constant term often is).

Example:
    >>> monitor = LossMonitor(spike_factor=20.0, min_history=3)
    >>> [monitor.check_loss(step, loss) for step, loss in enumerate([1.0, 1.1, 0.9, 1.0, 9.0])]
    [False, False, False, False, True]
    >>> monitor.spikes
    [(4, 9.0, 1.0)]
    >>> monitor.gradients_finite(5, float("nan"))
    False
    >>> monitor.skipped
    [5]
"""

from __future__ import annotations

import logging
import math
from collections import deque

import numpy as np
import torch

__all__ = ["LossMonitor"]

logger = logging.getLogger("neurofm.training")


class LossMonitor:
    """Detects loss spikes (more than ``spike_factor`` MADs above the median of the last ``window``
    losses) and non-finite gradient norms.

    Args:
        spike_factor: how many median absolute deviations above the running median make a spike.
        window: how many recent losses the running median covers.
        min_history: losses seen before spikes are looked for (the first steps are noisy).
    """

    def __init__(self, *, spike_factor: float = 20.0, window: int = 100, min_history: int = 20):
        if spike_factor <= 0 or window < 1 or min_history < 1:
            raise ValueError(
                f"expected spike_factor > 0, window >= 1 and min_history >= 1; found "
                f"{spike_factor}, {window}, {min_history}"
            )
        self.spike_factor = spike_factor
        self.min_history = min_history
        self._recent: deque[float] = deque(maxlen=window)
        self.spikes: list[tuple[int, float, float]] = []  # (step, loss, running median)
        self.skipped: list[int] = []  # steps whose optimizer update was skipped

    def check_loss(self, step: int, loss: float) -> bool:
        """Record ``loss`` of ``step``; warn and return True when it is a spike.

        A spike is not added to the history, so a run of spikes keeps being reported.
        """
        if not math.isfinite(loss):
            return False  # the trainer refuses non-finite losses itself
        if len(self._recent) >= self.min_history:
            recent = np.asarray(self._recent)
            median = float(np.median(recent))
            mad = float(np.median(np.abs(recent - median)))
            spread = max(mad, 1e-3 * abs(median), 1e-12)
            if loss > median + self.spike_factor * spread:
                self.spikes.append((step, loss, median))
                logger.warning(
                    "loss spike at step %d: %.6g against a running median of %.6g over the last "
                    "%d steps (more than %g median absolute deviations above it). If spikes "
                    "repeat, lower training.lr or training.grad_clip, or check the data for "
                    "extreme values.",
                    step, loss, median, len(recent), self.spike_factor,
                )  # fmt: skip
                return True
        self._recent.append(loss)
        return False

    def gradients_finite(self, step: int, grad_norm: float | torch.Tensor) -> bool:
        """True when the optimizer may step; on a NaN/inf gradient norm warn and return False.

        ``grad_norm``: the total norm ``clip_grad_norm_`` returns (a DTensor under FSDP).
        """
        grad_norm = _as_float(grad_norm)
        if math.isfinite(grad_norm):
            return True
        self.skipped.append(step)
        logger.warning(
            "non-finite gradient norm (%s) at step %d: the optimizer step was skipped and the "
            "weights were not updated (%d step(s) skipped so far). If this repeats, lower "
            "training.lr or check the data for extreme values.",
            grad_norm, step, len(self.skipped),
        )  # fmt: skip
        return False


def _as_float(value: float | torch.Tensor) -> float:
    if isinstance(value, torch.Tensor):
        from torch.distributed.tensor import DTensor

        if isinstance(value, DTensor):
            value = value.full_tensor()
        return float(value.detach())
    return float(value)
