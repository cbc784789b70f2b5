"""Prediction metrics for neural responses: Pearson r, oracle correlation, FEV and FEVE.

Everything is plain numpy in float64. Arrays are time first, channel (neuron) last. The
accumulators keep O(C) running sums, so memory does not grow with the length of the test set.
NaN policy: a correlation is NaN where either side is constant or fewer than two points were
seen; a variance ratio is NaN where its denominator is not positive. Nothing here warns or raises
for such cases. See ``docs/metrics.md`` for the formulas.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CorrelationAccumulator",
    "RepeatAccumulator",
    "fraction_of_mean_ceiling",
    "pearson_r",
    "summarize",
]

_PAIR_STATS = ("n", "mean_x", "mean_y", "m2_x", "m2_y", "c_xy")


def _as_float64(name: str, array: np.ndarray, ndim: int) -> np.ndarray:
    out = np.asarray(array, dtype=np.float64)
    if out.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, found shape {out.shape}.")
    return out


class CorrelationAccumulator:
    """Streaming per-channel Pearson r between a prediction ``x`` and a target ``y``.

    Kept per channel (shape ``[C]``): the count ``n``, the means ``mean_x``, ``mean_y``, the
    centred second moments ``m2_x = Σ(x - x̄)²``, ``m2_y``, the co-moment
    ``c_xy = Σ(x - x̄)(y - ȳ)``, and ``lo``/``hi`` ``[2, C]``: running min/max of x (row 0) and
    y (row 1). Each chunk is reduced with a corrected two-pass
    formula around its own mean and folded in with Chan et al.'s pairwise merge, so large
    offsets (values ~1e9) do not cancel catastrophically. A side counts as constant when its
    min equals its max, which is exact (no tolerance); then r is NaN.

    Example:
        >>> acc = CorrelationAccumulator()
        >>> acc.update(np.array([[1.0], [2.0]]), np.array([[2.0], [4.0]]))
        >>> acc.update(np.array([[3.0]]), np.array([[7.0]]))
        >>> acc.compute().round(4)
        array([0.9934])
    """

    def __init__(self, n_channels: int | None = None) -> None:
        self.n_channels: int | None = None
        if n_channels is not None:
            self._allocate(n_channels)

    def _allocate(self, n_channels: int) -> None:
        self.n_channels = n_channels
        for key in _PAIR_STATS:
            setattr(self, key, np.zeros(n_channels))
        self.lo, self.hi = np.full((2, n_channels), np.inf), np.full((2, n_channels), -np.inf)

    def update(self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Add a chunk of time points.

        Args:
            pred: ``[T, C]`` predictions (any float dtype).
            target: ``[T, C]`` targets.
            mask: ``[T, C]`` bool, False entries are skipped for that channel (e.g. NaN gaps).
                Unmasked NaNs propagate to a NaN r for their channel.
        """
        x, y = _as_float64("pred", pred, 2), _as_float64("target", target, 2)
        if x.shape != y.shape:
            raise ValueError(f"pred and target must match, found {x.shape} and {y.shape}.")
        valid = np.ones(x.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
        if valid.shape != x.shape:
            raise ValueError(f"mask must have shape {x.shape}, found {valid.shape}.")
        n = valid.sum(axis=0).astype(np.float64)
        safe_n = np.maximum(n, 1.0)
        mean_x = np.where(valid, x, 0.0).sum(axis=0) / safe_n
        mean_y = np.where(valid, y, 0.0).sum(axis=0) / safe_n
        dx, dy = np.where(valid, x - mean_x, 0.0), np.where(valid, y - mean_y, 0.0)
        sx, sy = dx.sum(axis=0), dy.sum(axis=0)  # ~0; corrects rounding of the chunk mean
        chunk = CorrelationAccumulator()
        chunk.n_channels = x.shape[1]
        chunk.n, chunk.mean_x, chunk.mean_y = n, mean_x + sx / safe_n, mean_y + sy / safe_n
        chunk.m2_x = (dx * dx).sum(axis=0) - sx * sx / safe_n
        chunk.m2_y = (dy * dy).sum(axis=0) - sy * sy / safe_n
        chunk.c_xy = (dx * dy).sum(axis=0) - sx * sy / safe_n
        both = np.stack([x, y])  # [2, T, C]
        chunk.lo = np.where(valid, both, np.inf).min(axis=1, initial=np.inf)
        chunk.hi = np.where(valid, both, -np.inf).max(axis=1, initial=-np.inf)
        self.merge(chunk)

    def merge(self, other: CorrelationAccumulator) -> None:
        """Fold ``other`` into ``self`` in place (same result as one pass over both inputs)."""
        if other.n_channels is None:
            return
        if self.n_channels is None:
            self._allocate(other.n_channels)
        if other.n_channels != self.n_channels:
            raise ValueError(
                f"Cannot merge accumulators over {self.n_channels} and {other.n_channels} "
                "channels; feed each accumulator the same channels."
            )
        n = self.n + other.n
        safe_n = np.maximum(n, 1.0)
        delta_x, delta_y = other.mean_x - self.mean_x, other.mean_y - self.mean_y
        weight = self.n * other.n / safe_n
        self.m2_x = self.m2_x + other.m2_x + delta_x * delta_x * weight
        self.m2_y = self.m2_y + other.m2_y + delta_y * delta_y * weight
        self.c_xy = self.c_xy + other.c_xy + delta_x * delta_y * weight
        self.mean_x = self.mean_x + delta_x * other.n / safe_n
        self.mean_y = self.mean_y + delta_y * other.n / safe_n
        self.n = n
        self.lo, self.hi = np.minimum(self.lo, other.lo), np.maximum(self.hi, other.hi)

    def _variance_y(self) -> np.ndarray:
        """``[C]`` sample variance (ddof=1) of the target side; NaN if constant or n < 2."""
        ok = (self.n >= 2) & (self.hi[1] > self.lo[1]) & (self.m2_y > 0)
        return np.where(ok, self.m2_y / np.maximum(self.n - 1.0, 1.0), np.nan)

    def compute(self) -> np.ndarray:
        """Return ``[C]`` Pearson r, NaN where a side is constant or fewer than 2 valid points."""
        if self.n_channels is None:
            raise RuntimeError(
                "No data seen and the channel count is unknown; call update() first "
                "or pass n_channels to the constructor."
            )
        ok = (self.n >= 2) & (self.hi > self.lo).all(axis=0) & (self.m2_x > 0) & (self.m2_y > 0)
        with np.errstate(all="ignore"):
            denom = np.sqrt(np.where(ok, self.m2_x * self.m2_y, 1.0))
            r = np.where(ok, self.c_xy / denom, np.nan)
        return np.clip(r, -1.0, 1.0)


def pearson_r(pred: np.ndarray, target: np.ndarray, axis: int = 0) -> np.ndarray:
    """One-shot Pearson r along ``axis``, with the same NaN policy as the accumulator.

    Shape:
        pred, target: any equal shape; output: that shape without ``axis`` (0-d for 1-D input).
    """
    x, y = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"pred and target must match, found {x.shape} and {y.shape}.")
    x, y = np.moveaxis(x, axis, 0), np.moveaxis(y, axis, 0)
    rest = x.shape[1:]
    acc = CorrelationAccumulator(int(np.prod(rest)))
    acc.update(x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1))
    return acc.compute().reshape(rest)


def _per_repeat(name: str, array: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray | None:
    if array is None:
        return None
    out = np.asarray(array, dtype=np.float64)
    if out.shape not in (shape, shape[1:]):
        raise ValueError(f"{name} must have shape {shape} or {shape[1:]}, found {out.shape}.")
    return np.broadcast_to(out, shape)


class RepeatAccumulator:
    """Streaming noise-ceiling metrics over stimuli shown several times.

    Call ``update`` once per stimulus with all its repeats. Kept across stimuli (all O(C)):

    * ``oracle``: a :class:`CorrelationAccumulator` of each response ``y[r, t]`` against the
      leave-one-out mean ``(Σ_r' y[r', t] - y[r, t]) / (R - 1)``, over (stimulus, repeat, time);
      its target-side moments also give the total response variance ``Var[y]`` (ddof=1).
    * ``noise_var_sum`` ``[C]``: Σ over (stimulus, time) of the across-repeat variance (ddof=1);
      ``n_stimulus_time``: the number of (stimulus, time) pairs. ``E[σ²_noise]`` is their ratio,
      so each (stimulus, time) pair weighs the same whatever its repeat count (as SENSORIUM).
    * ``sq_err_sum`` ``[C]`` and ``n_trials``: Σ (y - ŷ)² and count over (stimulus, repeat, time).
    * ``single_trial`` (ŷ vs y), ``to_average`` (repeat-mean ŷ vs repeat-mean y, over
      (stimulus, time)), ``ceiling`` (expected vs y) and ``to_expected`` (ŷ vs expected):
      correlation accumulators.

    Predictions and expected responses must be given for every stimulus or for none. Inputs
    must be finite.
    """

    def __init__(self) -> None:
        self.oracle = CorrelationAccumulator()
        self.single_trial = CorrelationAccumulator()
        self.to_average = CorrelationAccumulator()
        self.ceiling = CorrelationAccumulator()
        self.to_expected = CorrelationAccumulator()
        self.noise_var_sum = np.zeros(())  # 0-d until the first stimulus broadcasts it to [C]
        self.sq_err_sum = np.zeros(())
        self.n_stimulus_time = 0
        self.n_trials = 0
        self.has_predictions: bool | None = None
        self.has_expected: bool | None = None

    def _check_mode(self, has_predictions: bool, has_expected: bool) -> None:
        if self.has_predictions is None:
            self.has_predictions, self.has_expected = has_predictions, has_expected
        if (self.has_predictions, self.has_expected) != (has_predictions, has_expected):
            raise ValueError(
                "predictions/expected must be given for every stimulus or for none; expected "
                f"(predictions={self.has_predictions}, expected={self.has_expected}), found "
                f"(predictions={has_predictions}, expected={has_expected})."
            )

    def update(
        self,
        responses: np.ndarray,
        predictions: np.ndarray | None = None,
        expected: np.ndarray | None = None,
    ) -> None:
        """Add one stimulus.

        Args:
            responses: ``[R, T, C]`` recorded responses, ``R >= 2`` repeats.
            predictions: ``[R, T, C]`` (or ``[T, C]``, shared by all repeats) model predictions.
            expected: ``[R, T, C]`` (or ``[T, C]``) noise-free expected responses.
        """
        y = _as_float64("responses", responses, 3)
        n_rep, n_time, n_chan = y.shape
        if n_rep < 2:
            raise ValueError(f"responses need >= 2 repeats along axis 0, found {n_rep}.")
        p = _per_repeat("predictions", predictions, y.shape)
        e = _per_repeat("expected", expected, y.shape)
        self._check_mode(p is not None, e is not None)
        y_flat = y.reshape(-1, n_chan)  # [R * T, C]
        leave_one_out = (y.sum(axis=0, keepdims=True) - y) / (n_rep - 1)
        self.oracle.update(leave_one_out.reshape(-1, n_chan), y_flat)
        self.noise_var_sum = self.noise_var_sum + y.var(axis=0, ddof=1).sum(axis=0)
        self.n_stimulus_time += n_time
        self.n_trials += n_rep * n_time
        if p is not None:
            self.sq_err_sum = self.sq_err_sum + ((y - p) ** 2).sum(axis=(0, 1))
            self.single_trial.update(p.reshape(-1, n_chan), y_flat)
            self.to_average.update(p.mean(axis=0), y.mean(axis=0))
        if e is not None:
            self.ceiling.update(e.reshape(-1, n_chan), y_flat)
        if p is not None and e is not None:
            self.to_expected.update(p.reshape(-1, n_chan), e.reshape(-1, n_chan))

    def merge(self, other: RepeatAccumulator) -> None:
        """Fold ``other`` (e.g. another worker's stimuli) into ``self`` in place."""
        if other.has_predictions is None:
            return
        self._check_mode(other.has_predictions, bool(other.has_expected))
        for name in ("oracle", "single_trial", "to_average", "ceiling", "to_expected"):
            getattr(self, name).merge(getattr(other, name))
        self.noise_var_sum = self.noise_var_sum + other.noise_var_sum
        self.sq_err_sum = self.sq_err_sum + other.sq_err_sum
        self.n_stimulus_time += other.n_stimulus_time
        self.n_trials += other.n_trials

    def compute(self) -> dict[str, np.ndarray]:
        """Return ``[C]`` arrays keyed ``oracle_r``, ``fev`` and, when available, ``feve``,
        ``r_to_average``, ``single_trial_r``, ``ceiling_r``, ``fraction_of_ceiling``,
        ``r_to_expected``.

        ``fraction_of_ceiling`` is each neuron's own ``single_trial_r / ceiling_r``; the one
        population figure is :func:`fraction_of_mean_ceiling`, which :func:`summarize` reports
        instead of a mean of these ratios."""
        if self.has_predictions is None:
            raise RuntimeError("No stimuli seen; call update() with at least one stimulus.")
        total_var = self.oracle._variance_y()
        noise_var = self.noise_var_sum / self.n_stimulus_time
        explainable = total_var - noise_var
        with np.errstate(all="ignore"):
            # total_var is positive or NaN (constant responses), so this never divides by zero.
            out = {"oracle_r": self.oracle.compute(), "fev": explainable / total_var}
            safe_explainable = np.where(explainable > 0, explainable, 1.0)
            if self.has_predictions:
                mse = self.sq_err_sum / self.n_trials
                feve = 1.0 - (mse - noise_var) / safe_explainable
                out["feve"] = np.where(explainable > 0, feve, np.nan)
                out["r_to_average"] = self.to_average.compute()
                out["single_trial_r"] = self.single_trial.compute()
            if self.has_expected:
                out["ceiling_r"] = self.ceiling.compute()
            if self.has_predictions and self.has_expected:
                ceiling = out["ceiling_r"]
                usable = np.isfinite(ceiling) & (ceiling != 0)
                ratio = out["single_trial_r"] / np.where(usable, ceiling, 1.0)
                out["fraction_of_ceiling"] = np.where(usable, ratio, np.nan)
                out["r_to_expected"] = self.to_expected.compute()
        return out


def _quiet_nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


# Per-neuron arrays that have no summary: the mean of per-neuron ratios r_n / ceiling_n is not
# the fraction of the noise ceiling (see fraction_of_mean_ceiling), so it is not reported.
_NOT_SUMMARIZED = ("fraction_of_ceiling",)


def fraction_of_mean_ceiling(single_trial_r: np.ndarray, ceiling_r: np.ndarray) -> float:
    """The fraction of the noise ceiling a population reaches: ``mean(single_trial_r) /
    mean(ceiling_r)`` over the neurons where both are defined (not NaN).

    A neuron whose ceiling is 0 counts (it adds 0 to the mean ceiling); one whose r or ceiling
    is NaN is left out of both means. NaN when no neuron has both or the mean ceiling is not
    positive. For a single neuron this is its own ``fraction_of_ceiling``.

    Shape: ``[C]``, ``[C]`` -> scalar.

    >>> r, ceiling = np.array([0.1, 0.3, np.nan]), np.array([0.1, 0.7, 0.9])
    >>> round(fraction_of_mean_ceiling(r, ceiling), 3)  # 0.2 / 0.4; the third neuron has no r
    0.5
    """
    r = np.asarray(single_trial_r, dtype=np.float64)
    ceiling = np.asarray(ceiling_r, dtype=np.float64)
    if r.shape != ceiling.shape or r.ndim != 1:
        raise ValueError(
            f"single_trial_r and ceiling_r must be [C] arrays of one shape, found {r.shape} and "
            f"{ceiling.shape}."
        )
    both = np.isfinite(r) & np.isfinite(ceiling)
    mean_ceiling = float(ceiling[both].mean()) if both.any() else float("nan")
    if not mean_ceiling > 0:
        return float("nan")
    return float(r[both].mean()) / mean_ceiling


def summarize(metrics: dict[str, np.ndarray], fev_threshold: float = 0.15) -> dict[str, float]:
    """Reduce per-neuron metrics to scalars.

    Every key becomes its NaN-ignoring mean over neurons, except the per-neuron ratio
    ``fraction_of_ceiling``, which has no summary. ``feve`` is averaged only over neurons
    with ``fev >= fev_threshold`` (as SENSORIUM does; NaN FEV never passes); the plain mean is
    kept as ``feve_all``. Adds ``n_neurons`` and ``n_neurons_feve`` (neurons behind ``feve``) and,
    given ``single_trial_r`` and ``ceiling_r``, the fraction of the noise ceiling
    ``fraction_of_mean_ceiling`` (:func:`fraction_of_mean_ceiling`).
    """
    out = {
        key: _quiet_nanmean(np.asarray(value, dtype=np.float64))
        for key, value in metrics.items()
        if key not in _NOT_SUMMARIZED
    }
    first = next(iter(metrics.values()), np.zeros(0))
    out["n_neurons"] = float(np.asarray(first).size)
    if "feve" in metrics and "fev" in metrics:
        fev = np.asarray(metrics["fev"], dtype=np.float64)
        feve = np.asarray(metrics["feve"], dtype=np.float64)
        selected = np.where(np.isnan(fev), False, fev >= fev_threshold) & ~np.isnan(feve)
        out["feve_all"] = out["feve"]
        out["feve"] = _quiet_nanmean(feve[selected])
        out["n_neurons_feve"] = float(selected.sum())
    if "single_trial_r" in metrics and "ceiling_r" in metrics:
        out["fraction_of_mean_ceiling"] = fraction_of_mean_ceiling(
            metrics["single_trial_r"], metrics["ceiling_r"]
        )
    return out
