"""Watching a training run for numerical trouble: loss spikes and non-finite gradients.

The trainer asks a :class:`LossMonitor` two questions each step: is this loss a spike (much larger
than the recent losses)? and are the gradients finite (may the optimizer step)? A spike is logged as
a warning naming the step and the run goes on; non-finite gradients skip the optimizer step with a
warning, so NaN or inf never reaches the weights. Both are recorded (``spikes``, ``skipped``).

Example:
    >>> monitor = LossMonitor(spike_factor=5.0, min_history=3)
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
    """Detects loss spikes (``loss > spike_factor x`` the median of the last ``window`` losses) and
    non-finite gradient norms.

    Args:
        spike_factor: how many times the running median a loss must exceed to count as a spike.
        window: how many recent losses the running median covers.
        min_history: losses seen before spikes are looked for (the first steps are noisy).
    """

    def __init__(self, *, spike_factor: float = 10.0, window: int = 100, min_history: int = 20):
        if spike_factor <= 1.0 or window < 1 or min_history < 1:
            raise ValueError(
                f"expected spike_factor > 1, window >= 1 and min_history >= 1; found "
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
        median = float(np.median(self._recent)) if self._recent else math.nan
        if len(self._recent) >= self.min_history and abs(loss) > self.spike_factor * abs(median):
            self.spikes.append((step, loss, median))
            logger.warning(
                "loss spike at step %d: %.6g is more than %g x the running median %.6g of the "
                "last %d steps. If spikes repeat, lower training.lr or training.grad_clip, or "
                "check the data for extreme values.",
                step, loss, self.spike_factor, median, len(self._recent),
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
