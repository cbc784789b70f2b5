"""Evaluation protocol: run task presets over the test tier, the model beside its baselines.

Windows tile each test interval; predictions are stitched back into the interval's samples and
compared with the recordings. Windows are visited stimulus by stimulus (all repeats of one test
stimulus, then the next), and an interval's arrays are released once its metrics are accumulated,
so memory holds at most one stimulus's repeats whatever the length of the test set.

Baselines, each scored with the same metrics on the same entries as the model:
``ln`` (a linear-nonlinear model fit on the train tier of the same session, from the streams the
task shows over the whole window, e.g. stimulus(+behaviour) -> responses or responses ->
behaviour); ``persistence`` (last visible value carried forward) and ``mean`` (mean of the visible
context) whenever targets follow a visible past of the same stream (forecasting).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from neurofm.core.baselines.ln import LinearNonlinear, fit_linear_nonlinear
from neurofm.core.data.manifest import Interval, Tier
from neurofm.core.data.session import Session
from neurofm.core.data.windows import load_window, normalise_stream, tile_intervals
from neurofm.core.evaluation.accumulate import PredictorState, StreamMetrics, finish, pool
from neurofm.core.evaluation.metric_names import REPEAT_METRICS, head_metric_names
from neurofm.core.model.neurofm import NeuroFM
from neurofm.core.progress import progress as progress_bar
from neurofm.core.tokens.tasks import PRESETS, TaskSpec, get_task, rule_for

__all__ = [
    "DEFAULT_TASKS",
    "EvaluationResult",
    "StreamMetrics",
    "evaluate",
    "stimulus_order",
    "whole_window_task",
]

DEFAULT_TASKS = tuple(PRESETS)
_FULL = (0.0, 1.0)


@dataclass
class EvaluationResult:
    """``tasks[task][stream]`` -> :class:`StreamMetrics`; ``examples`` holds a few traces to plot;
    ``max_held_repeats``: the most interval arrays held at once by one predictor (memory check)."""

    tasks: dict[str, dict[str, StreamMetrics]] = field(default_factory=dict)
    examples: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    max_held_repeats: int = 0

    def to_json(self) -> dict:
        return {
            task: {
                s: {
                    "summary": m.summary,
                    "per_channel": m.per_channel,
                    "baselines": m.baselines,
                    "baseline_per_channel": m.baseline_per_channel,
                }
                for s, m in streams.items()
            }
            for task, streams in self.tasks.items()
        }


def stimulus_order(
    windows: list[tuple[float, int]], intervals: Sequence[Interval]
) -> list[tuple[float, int]]:
    """``windows`` reordered so that all repeats of a stimulus are consecutive (first shown first)."""
    first: dict[object, int] = {}
    for k, iv in enumerate(intervals):
        first.setdefault(iv.stimulus_id if iv.stimulus_id is not None else ("interval", k), k)

    def key(window: tuple[float, int]) -> tuple[int, int, float]:
        sid = intervals[window[1]].stimulus_id
        return first[sid if sid is not None else ("interval", window[1])], window[1], window[0]

    return sorted(windows, key=key)


def whole_window_task(task: TaskSpec) -> bool:
    """Whether every rule of ``task`` shows and asks for whole windows (or nothing): then a window
    shifted in time is the same task, and overlapping windows can be stitched (see
    :func:`evaluate`)."""
    return all(
        rule.visible in (None, _FULL) and rule.target in (None, _FULL)
        for rule in task.rules.values()
    )


def _ln_inputs(model: NeuroFM, task: TaskSpec, session: Session, target: str) -> tuple[str, ...]:
    """Streams the task shows over the whole window, when it asks for the whole ``target``."""
    rule = rule_for(task, target, model.encoder(target).role)
    if rule is None or rule.target != _FULL or rule.target_units != "all":
        return ()
    inputs = []
    for name in model.stream_names:
        r = rule_for(task, name, model.encoder(name).role)
        present = name in session.manifest.streams and name != target
        if present and r is not None and r.visible == _FULL and r.visible_units == "all":
            inputs.append(name)
    return tuple(inputs)


def evaluate(
    model: NeuroFM,
    sessions: Sequence[Session],
    tasks: Sequence[str | TaskSpec] = DEFAULT_TASKS,
    *,
    window_s: float,
    tier: Tier = "test",
    batch_size: int = 16,
    progress: bool = True,
    baselines: bool = True,
    context_s: float | None = None,
) -> EvaluationResult:
    """Evaluate ``model`` (and, with ``baselines``, its references) on every task over the
    ``tier`` intervals of ``sessions``.

    Windows of ``window_s`` tile each interval. For a task that shows and asks for whole windows
    (:func:`whole_window_task`: stimulus(+behaviour) -> responses, decoding, population),
    consecutive windows overlap by ``context_s`` (default half the window) and each time is scored
    from the window in which it sits nearer the centre: a response depends on the stimulus before
    it, and decoding behaviour from calcium on the activity after it, so a time at a window's
    edge lacks half its surroundings. With the default, every time scored more than a quarter
    window from its interval's ends has at least a quarter window of data on both sides (0
    scores each window in full). Forecasting tasks keep their own context (the visible past
    inside the window) and tile without overlap.

    Each target stream reports the metrics its head asks for (:meth:`neurofm.Head.metric_names`,
    asked before anything runs; a name evaluation does not know raises
    :class:`~neurofm.errors.InvalidPluginError`), for the model and every baseline. By default,
    per-unit (neural) targets: per-neuron single-trial Pearson r; when every interval is
    predicted in full and stimuli repeat, also correlation to the average, oracle r, FEV/FEVE
    and — for sessions with ground truth ``expected_<stream>`` — the noise ceiling and the
    fraction of it reached. Channel (behaviour) targets: per-channel Pearson r.
    """
    context_s = window_s / 2 if context_s is None else context_s
    if not 0.0 <= context_s < window_s:
        raise ValueError(
            f"context_s {context_s:g} must be at least 0 and shorter than the window "
            f"({window_s:g} s)"
        )
    metric_names = {
        name: head_metric_names(model.head(name), name, per_unit=model.encoder(name).per_unit)
        for name in sorted(model.query_names)
    }
    model.eval()
    norm = model.normalization()
    result = EvaluationResult()
    ln_cache: dict[tuple[str, tuple[str, ...], str], LinearNonlinear] = {}
    for task in (get_task(t) for t in tasks):
        pooled: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
        channel_r: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
        for session in sessions:
            lns = {}
            for name in model.query_names if baselines else ():
                inputs = _ln_inputs(model, task, session, name)
                if inputs and name in session.manifest.streams:
                    key = (session.session_id, inputs, name)
                    if key not in ln_cache:
                        ln_cache[key] = fit_linear_nonlinear(session, inputs, name, norm)
                    lns[name] = ln_cache[key]
            run = _SessionRun(model, session, task, norm, lns, baselines, result, metric_names)
            context = context_s if whole_window_task(task) else 0.0
            states = run.run(window_s, context, tier, batch_size, progress)
            for (stream, predictor), st in states.items():
                names = session.stream_spec(stream).channel_names
                pool(st, names, pooled[stream][predictor], channel_r[stream][predictor])
        streams = {}
        for stream in sorted(set(pooled) | set(channel_r)):  # the same order in every run
            metrics = StreamMetrics()
            for predictor in set(pooled[stream]) | set(channel_r[stream]):
                summary, per_unit, per_channel = finish(
                    pooled[stream][predictor], channel_r[stream][predictor], metric_names[stream]
                )
                if predictor == "model":
                    metrics.summary, metrics.per_unit = summary, per_unit
                    metrics.per_channel = per_channel
                else:
                    metrics.baselines[predictor] = summary
                    if per_channel:
                        metrics.baseline_per_channel[predictor] = per_channel
            streams[stream] = metrics
        result.tasks[task.name] = streams
    return result


class _SessionRun:
    """One task over one session's tier: batches of windows, stitching, flushing intervals."""

    def __init__(self, model, session, task, norm, lns, baselines, result, metric_names) -> None:
        self.model, self.session, self.task, self.norm = model, session, task, norm
        self.lns, self.baselines, self.result = lns, baselines, result
        self.metric_names: dict[str, tuple[str, ...]] = metric_names
        self.buffers: dict[int, dict[str, dict[str, np.ndarray]]] = {}
        self.states: dict[tuple[str, str], PredictorState] = {}

    @torch.no_grad()
    def run(
        self, window_s: float, context: float, tier: Tier, batch_size: int, progress: bool
    ) -> dict:
        session = self.session
        self.intervals = session.intervals(tier)
        tiles = tile_intervals(session, tier, window_s, context=context)
        windows = stimulus_order(tiles, self.intervals)
        # where two windows of an interval overlap, each scores the half of the overlap nearer
        # its own centre (later windows overwrite the earlier one's predictions from there on)
        self.score_from: dict[tuple[float, int], float] = {}
        previous_end: dict[int, float] = {}
        for t0, iv in sorted(tiles, key=lambda w: (w[1], w[0])):
            end = previous_end.get(iv)
            self.score_from[(t0, iv)] = -np.inf if end is None else (t0 + end) / 2
            previous_end[iv] = t0 + window_s
        last_window = {iv: k for k, (_, iv) in enumerate(windows)}
        self.repeats_left = Counter(self.intervals[iv].stimulus_id for iv in last_window)
        rng = np.random.default_rng(0)
        desc = f"{self.task.name} {session.session_id}"
        bar = progress_bar(total=len(windows), desc=desc, enabled=progress, leave=False)
        for start in range(0, len(windows), batch_size):
            chunk = windows[start : start + batch_size]
            batch = [load_window(session, t0, window_s, self.norm) for t0, _ in chunk]
            out = self.model(batch, [self.task] * len(batch), rng)
            for target in out.targets:
                self._stitch(target, *chunk[target.sample], window_s)
            for k in range(start, start + len(chunk)):
                if last_window[windows[k][1]] == k and windows[k][1] in self.buffers:
                    self._flush(windows[k][1])
            bar.update(len(chunk))
        bar.close()
        return self.states

    def _buffer(self, iv_index: int, name: str) -> dict[str, np.ndarray]:
        buf = self.buffers.setdefault(iv_index, {})
        if name not in buf:
            session, iv = self.session, self.intervals[iv_index]
            ts = session.stream_timestamps(name)
            sl = slice(*map(int, np.searchsorted(ts, [iv.start, iv.end], side="left")))
            raw = np.asarray(session.stream_data(name)[sl], np.float64)
            rec = normalise_stream(session, name, raw.reshape(raw.shape[0], -1), self.norm[name])
            buf[name] = {"times": ts[sl], "recorded": rec, "model": np.full(rec.shape, np.nan)}
            if f"expected_{name}" in session.manifest.ground_truth:
                exp = np.asarray(session.ground_truth(f"expected_{name}")[sl], np.float64)
                buf[name]["expected"] = normalise_stream(session, name, exp, self.norm[name])
        return buf[name]

    def _stitch(self, target, t0: float, iv_index: int, duration: float) -> None:
        name = target.stream
        buf = self._buffer(iv_index, name)
        ts, rec = buf["times"], buf["recorded"]
        period = 1.0 / self.session.stream_spec(name).sampling_rate_hz
        idx = np.clip(
            np.searchsorted(ts, t0 + target.times.cpu().numpy() - period / 2), 0, len(ts) - 1
        )
        pred = self.model.head(name).predict(target.raw).cpu().numpy().astype(np.float64)
        pred[~target.valid.cpu().numpy()] = np.nan
        scored = ts[idx] >= self.score_from[(t0, iv_index)] - 1e-3 * period
        idx, pred = idx[scored], pred[scored]
        cols = np.arange(rec.shape[1]) if target.units is None else target.units.cpu().numpy()
        buf["model"][np.ix_(idx, cols)] = pred
        if not self.baselines:
            return
        rule = rule_for(self.task, name, self.model.encoder(name).role)
        if rule is None or rule.visible is None or rule.visible_units != "all":
            return
        rel = ts - t0
        vis = np.flatnonzero(
            (rel >= rule.visible[0] * duration) & (rel < rule.visible[1] * duration)
        )
        if vis.size == 0 or vis.max() >= idx.min():
            return  # no visible past before the targets: not a forecast
        for key, value in (("persistence", rec[vis.max()]), ("mean", rec[vis].mean(0))):
            arr = buf.setdefault(key, np.full(rec.shape, np.nan))
            arr[np.ix_(idx, cols)] = value[cols]

    def _flush(self, iv_index: int) -> None:
        iv = self.intervals[iv_index]
        self.repeats_left[iv.stimulus_id] -= 1
        last = self.repeats_left[iv.stimulus_id] == 0
        for name, buf in self.buffers.pop(iv_index).items():
            per_unit = self.model.encoder(name).per_unit
            with_repeats = not REPEAT_METRICS.isdisjoint(self.metric_names[name])
            if name in self.lns:
                ln = self.lns[name].predict(buf["times"])
                buf["ln"] = np.where(np.isfinite(buf["model"]), ln, np.nan)
            for predictor in ("model", "ln", "persistence", "mean"):
                if predictor not in buf:
                    continue
                if predictor in ("persistence", "mean"):
                    buf[predictor][np.isnan(buf["model"])] = np.nan
                state = self.states.setdefault(
                    (name, predictor), PredictorState(per_unit, with_repeats=with_repeats)
                )
                state.add_interval(
                    buf[predictor], buf["recorded"], buf.get("expected"), iv.stimulus_id, last
                )
                held = state.held_repeats()
                self.result.max_held_repeats = max(self.result.max_held_repeats, held)
            if per_unit:
                key = f"{self.task.name}:{self.session.session_id}:{name}"
                example = self.result.examples.setdefault(key, {})
                for predictor in ("model", "ln", "recorded"):
                    if predictor in buf:
                        example.setdefault(predictor, buf[predictor][:, :8].copy())
                example.setdefault(
                    "times", buf["times"] - buf["times"][0]
                )  # s from the trial start
