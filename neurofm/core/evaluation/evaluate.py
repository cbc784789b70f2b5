"""Evaluation protocol: run task presets over the test tier and accumulate metrics as it goes.

Windows tile each test interval; predictions are stitched back into the interval's samples. An
interval's arrays are released as soon as its metrics are accumulated (a stimulus's repeats are
kept together until the last repeat is done), so memory does not grow with the test set.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from neurofm.core.data.manifest import Interval, Tier
from neurofm.core.data.session import Session
from neurofm.core.data.windows import load_window, tile_intervals
from neurofm.core.evaluation.metrics import CorrelationAccumulator, RepeatAccumulator, summarize
from neurofm.core.model import NeuroFM
from neurofm.core.tasks import TaskSpec, get_task

__all__ = ["DEFAULT_TASKS", "EvaluationResult", "evaluate"]

DEFAULT_TASKS = ("responses_from_stimulus_behaviour", "behaviour_from_responses", "forecast")


@dataclass
class StreamMetrics:
    """Metrics of one target stream under one task, pooled over sessions."""

    summary: dict[str, float] = field(default_factory=dict)
    per_unit: dict[str, list[float]] = field(default_factory=dict)
    per_channel: dict[str, float] = field(default_factory=dict)


@dataclass
class EvaluationResult:
    """``tasks[task][stream]`` -> :class:`StreamMetrics`; ``examples`` holds a few traces to plot."""

    tasks: dict[str, dict[str, StreamMetrics]] = field(default_factory=dict)
    examples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            task: {
                s: {"summary": m.summary, "per_channel": m.per_channel} for s, m in streams.items()
            }
            for task, streams in self.tasks.items()
        }


def _interval_slice(session: Session, stream: str, iv: Interval) -> slice:
    ts = session.stream_timestamps(stream)
    i0, i1 = np.searchsorted(ts, [iv.start, iv.end], side="left")
    return slice(int(i0), int(i1))


def _normalised(session: Session, stream: str, array: np.ndarray, mode: str) -> np.ndarray:
    stats = session.stream_spec(stream).statistics
    mean = np.asarray(stats.mean if stats else [0.0])
    std = np.asarray(stats.std if stats else [1.0])
    if mode == "zscore":
        return (array - mean) / std
    return array / std if mode == "scale" else array


class _StreamState:
    """Accumulators of one (task, session, stream)."""

    def __init__(self, per_unit: bool) -> None:
        self.per_unit = per_unit
        self.corr = CorrelationAccumulator()
        self.persistence = CorrelationAccumulator()
        self.repeats = RepeatAccumulator()
        self.pending: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = (
            defaultdict(list)
        )
        self.repeat_ok = True
        self.has_persistence = False


def evaluate(
    model: NeuroFM,
    sessions: Sequence[Session],
    tasks: Sequence[str | TaskSpec] = DEFAULT_TASKS,
    *,
    window_s: float,
    tier: Tier = "test",
    batch_size: int = 16,
    progress: bool = True,
) -> EvaluationResult:
    """Evaluate ``model`` on every task over the ``tier`` intervals of ``sessions``.

    Per-unit (neural) targets: per-neuron single-trial Pearson r; when the intervals repeat stimuli
    and cover whole intervals, also correlation to the average, oracle r, FEV/FEVE and — for sessions
    with ground truth ``expected_<stream>`` — the noise ceiling and the fraction of it reached.
    Forecasting targets also get the persistence baseline (last visible value carried forward).
    Channel (behaviour) targets: per-channel Pearson r.
    """
    model.eval()
    norm = model.normalization()
    result = EvaluationResult()
    for task in (get_task(t) for t in tasks):
        pooled: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        channel_r: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for session in sessions:
            states = _run_session(
                model, session, task, norm, window_s, tier, batch_size, progress, result
            )
            for stream, st in states.items():
                _pool(session, stream, st, pooled[stream], channel_r[stream])
        result.tasks[task.name] = {
            s: _finish(pooled.get(s, {}), channel_r.get(s, {}))
            for s in set(pooled) | set(channel_r)
        }
    return result


@torch.no_grad()
def _run_session(model, session, task, norm, window_s, tier, batch_size, progress, result):
    intervals = session.intervals(tier)
    windows = tile_intervals(session, tier, window_s)
    last_window = {iv: k for k, (_, iv) in enumerate(windows)}
    repeats_left = Counter(iv.stimulus_id for iv in intervals)
    buffers: dict[int, dict[str, np.ndarray]] = {}
    states: dict[str, _StreamState] = {}
    truth_names = set(session.manifest.ground_truth)
    rng = np.random.default_rng(0)
    bar = tqdm(
        total=len(windows),
        desc=f"{task.name} {session.session_id}",
        disable=not progress,
        leave=False,
    )
    for start in range(0, len(windows), batch_size):
        chunk = windows[start : start + batch_size]
        batch = [load_window(session, t0, window_s, norm) for t0, _ in chunk]
        out = model(batch, [task] * len(batch), rng)
        for target in out.targets:
            t0, iv_index = chunk[target.sample]
            iv = intervals[iv_index]
            name = target.stream
            per_unit = target.units is not None
            buf = buffers.setdefault(iv_index, {})
            if name not in buf:
                sl = _interval_slice(session, name, iv)
                recorded = _normalised(
                    session, name, np.asarray(session.stream_data(name)[sl], np.float64), norm[name]
                )
                buf[name] = np.full(recorded.shape, np.nan)
                buf[f"{name}:recorded"] = recorded
                buf[f"{name}:persistence"] = np.full(recorded.shape, np.nan)
                if f"expected_{name}" in truth_names:
                    exp = np.asarray(session.ground_truth(f"expected_{name}")[sl], np.float64)
                    buf[f"{name}:expected"] = _normalised(session, name, exp, norm[name])
            ts = session.stream_timestamps(name)[_interval_slice(session, name, iv)]
            period = 1.0 / session.stream_spec(name).sampling_rate_hz
            abs_t = t0 + target.times.cpu().numpy().astype(np.float64)
            idx = np.clip(np.searchsorted(ts, abs_t - period / 2), 0, len(ts) - 1)
            pred = model.head(name).predict(target.raw).cpu().numpy()
            cols = target.units.cpu().numpy() if per_unit else slice(None)
            buf[name][np.ix_(idx, np.arange(buf[name].shape[1])[cols])] = pred
            first = int(idx.min())
            if float(target.times.min()) > period / 2 and first > 0:
                # targets start inside the window (forecasting): carry the last value forward
                last = buf[f"{name}:recorded"][first - 1]
                buf[f"{name}:persistence"][np.ix_(idx, np.arange(last.shape[0])[cols])] = last[cols]
                states.setdefault(name, _StreamState(per_unit)).has_persistence = True
            states.setdefault(name, _StreamState(per_unit))
        for k in range(start, start + len(chunk)):
            iv_index = windows[k][1]
            if last_window[iv_index] == k and iv_index in buffers:
                _flush(
                    buffers.pop(iv_index),
                    states,
                    intervals[iv_index],
                    repeats_left,
                    result,
                    session,
                )
        bar.update(len(chunk))
    bar.close()
    return states


def _flush(buf, states, iv, repeats_left, result, session) -> None:
    repeats_left[iv.stimulus_id] -= 1
    for name, st in states.items():
        if name not in buf:
            continue
        pred, rec = buf[name], buf[f"{name}:recorded"]
        ok = np.isfinite(pred) & np.isfinite(rec)
        st.corr.update(np.nan_to_num(pred), np.nan_to_num(rec), ok)
        pers = buf[f"{name}:persistence"]
        if st.has_persistence:
            okp = np.isfinite(pers) & np.isfinite(rec)
            st.persistence.update(np.nan_to_num(pers), np.nan_to_num(rec), okp)
        if st.per_unit:
            ex = result.examples.setdefault(f"{session.session_id}:{name}", {})
            ex.setdefault("predicted", pred[:, :8].copy())
            ex.setdefault("recorded", rec[:, :8].copy())
            if iv.stimulus_id is None or not ok.all():
                st.repeat_ok = False
                continue
            st.pending[iv.stimulus_id].append((pred, rec, buf.get(f"{name}:expected")))
            if repeats_left[iv.stimulus_id] == 0:
                reps = st.pending.pop(iv.stimulus_id)
                if len(reps) >= 2:
                    n = min(r[1].shape[0] for r in reps)
                    stacked = [
                        np.stack([r[k][:n] for r in reps])
                        if k < 2 or all(r[2] is not None for r in reps)
                        else None
                        for k in range(3)
                    ]
                    st.repeats.update(stacked[1], stacked[0], stacked[2])


def _pool(session, stream, st: _StreamState, pooled, channel_r) -> None:
    r = st.corr.compute()
    if st.per_unit:
        pooled["single_trial_r"].append(r)
        if st.has_persistence:
            pooled["persistence_r"].append(st.persistence.compute())
        if st.repeat_ok:
            try:
                metrics = st.repeats.compute()
            except ValueError:
                return
            for key, values in metrics.items():
                if key != "single_trial_r":
                    pooled[key].append(values)
    else:
        names = session.stream_spec(stream).channel_names or [str(i) for i in range(r.shape[0])]
        for name, value in zip(names, r, strict=True):
            channel_r[name].append(float(value))
        if st.has_persistence:
            for name, value in zip(names, st.persistence.compute(), strict=True):
                channel_r[f"{name}:persistence"].append(float(value))


def _finish(pooled, channel_r) -> StreamMetrics:
    metrics = StreamMetrics()
    if pooled:
        per_unit = {k: np.concatenate(v) for k, v in pooled.items()}
        metrics.per_unit = {k: v.tolist() for k, v in per_unit.items()}
        metrics.summary = summarize(per_unit)
        if "ceiling_r" in per_unit:
            ceiling = np.nanmean(per_unit["ceiling_r"])
            metrics.summary["fraction_of_mean_ceiling"] = float(
                np.nanmean(per_unit["single_trial_r"]) / ceiling
            )
    for name, values in channel_r.items():
        metrics.per_channel[name] = float(np.nanmean(values))
    if metrics.per_channel and not metrics.summary:
        main = [v for k, v in metrics.per_channel.items() if ":" not in k]
        metrics.summary = {"r": float(np.nanmean(main))}
    return metrics
