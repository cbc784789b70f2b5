"""Per-predictor metric accumulation over test intervals (the model's and each baseline's).

An interval's stitched arrays are fed in when the interval is done; the repeats of a stimulus are
held until its last repeat (the evaluation orders windows stimulus by stimulus, so at most one
stimulus's repeats are held at a time) and then folded into a :class:`RepeatAccumulator`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from neurofm.core.evaluation.metric_names import summary_keys
from neurofm.core.evaluation.metrics import CorrelationAccumulator, RepeatAccumulator, summarize

__all__ = ["PredictorState", "StreamMetrics", "finish", "pool"]


@dataclass
class StreamMetrics:
    """Metrics of one target stream under one task, pooled over sessions.

    ``summary``/``per_unit``/``per_channel``: the model's; ``baselines[name]``: the same summary
    keys for a baseline predictor (``ln``, ``persistence``, ``mean``), ``baseline_per_channel``
    likewise for channel streams.
    """

    summary: dict[str, float] = field(default_factory=dict)
    per_unit: dict[str, list[float]] = field(default_factory=dict)
    per_channel: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    baseline_per_channel: dict[str, dict[str, float]] = field(default_factory=dict)


class PredictorState:
    """Accumulators of one predictor for one (task, session, stream).

    ``corr``: single-trial r over every predicted entry; ``repeats``: repeat metrics, used only
    when every interval was predicted in full (``repeat_ok``) and, with ``with_repeats`` False
    (the stream's head asks for no repeat metric), never fed: no repeat is held.
    """

    def __init__(self, per_unit: bool, *, with_repeats: bool = True) -> None:
        self.per_unit = per_unit
        self.with_repeats = with_repeats
        self.corr = CorrelationAccumulator()
        self.repeats = RepeatAccumulator()
        self.pending: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = (
            defaultdict(list)
        )
        self.repeat_ok = True
        self.seen = False

    def add_interval(
        self,
        pred: np.ndarray,
        recorded: np.ndarray,
        expected: np.ndarray | None,
        stimulus_id: str | None,
        last_repeat: bool,
    ) -> None:
        """One interval's ``[T, C]`` prediction (NaN where not predicted) and recordings."""
        ok = np.isfinite(pred) & np.isfinite(recorded)
        if not ok.any():
            return
        self.seen = True
        self.corr.update(np.nan_to_num(pred), np.nan_to_num(recorded), ok)
        if not (self.per_unit and self.with_repeats):
            return
        if stimulus_id is None or not ok.all():
            self.repeat_ok = False
        if self.repeat_ok:
            self.pending[stimulus_id].append((pred, recorded, expected))
        if last_repeat and stimulus_id is not None:
            reps = self.pending.pop(stimulus_id, [])
            if self.repeat_ok and len(reps) >= 2:
                n = min(r[1].shape[0] for r in reps)
                exp = None
                if all(r[2] is not None for r in reps):
                    exp = np.stack([r[2][:n] for r in reps])
                preds = np.stack([r[0][:n] for r in reps])
                self.repeats.update(np.stack([r[1][:n] for r in reps]), preds, exp)

    def held_repeats(self) -> int:
        """Interval arrays currently held (for memory checks)."""
        return sum(len(v) for v in self.pending.values())


def pool(
    state: PredictorState, channel_names: list[str] | None, pooled: dict, channel_r: dict
) -> None:
    """Add one session's per-neuron (or per-channel) results to the pooled lists."""
    if not state.seen:
        return
    r = state.corr.compute()
    if state.per_unit:
        pooled["single_trial_r"].append(r)
        if state.repeat_ok and state.repeats.has_predictions is not None:
            for key, values in state.repeats.compute().items():
                if key != "single_trial_r":
                    pooled[key].append(values)
        return
    names = channel_names or [str(i) for i in range(r.shape[0])]
    for name, value in zip(names, r, strict=True):
        channel_r[name].append(float(value))


def finish(
    pooled: dict, channel_r: dict, metric_names: Collection[str] | None = None
) -> tuple[dict, dict, dict]:
    """``(summary, per_unit, per_channel)`` from pooled lists, holding only the metrics
    ``metric_names`` (the stream's head's choice, :mod:`~neurofm.core.evaluation.metric_names`;
    None: every metric computed). Per-unit summaries come from every computed metric (``feve``
    is thresholded on ``fev``), then keep the keys of ``metric_names``, with ``n_neurons``."""
    summary: dict[str, float] = {}
    per_unit: dict[str, list[float]] = {}
    if pooled:
        arrays = {k: np.concatenate(v) for k, v in pooled.items()}
        lengths = {v.shape[0] for v in arrays.values()}
        if len(lengths) > 1:  # repeat metrics from a subset of sessions: keep the common keys
            arrays = {k: v for k, v in arrays.items() if v.shape[0] == max(lengths)}
        per_unit = {k: v.tolist() for k, v in arrays.items()}
        summary = summarize(arrays)  # with fraction_of_mean_ceiling when ceilings are known
    per_channel = {name: float(np.nanmean(values)) for name, values in channel_r.items()}
    if per_channel and not summary:
        summary = {"r": float(np.nanmean(list(per_channel.values())))}
    if metric_names is None:
        return summary, per_unit, per_channel
    if per_channel and "r" not in metric_names:
        return {}, {}, {}
    if per_unit:
        keep = summary_keys(metric_names)
        per_unit = {k: v for k, v in per_unit.items() if k in metric_names}
        summary = {k: v for k, v in summary.items() if k in keep or k == "n_neurons"}
        if set(summary) == {"n_neurons"}:  # none of the asked metrics could be computed
            summary = {}
    return summary, per_unit, per_channel
