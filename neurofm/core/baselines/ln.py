"""Linear-nonlinear (LN) baseline: ridge regression on a short input history, then a softplus.

Fit per session on the train tier: the inputs (e.g. the stimulus, optionally behaviour; or the
neural activity to decode behaviour) are read at the target stream's timestamps for a few lags
``0 .. 300 ms`` (the most recent sample at or before ``t - lag``), spatially resolved inputs
(movies ``[T, H, W(, C)]``) are block-averaged to a coarse grid first (default 6 x 8). A closed-form
ridge fit (penalty chosen on the validation tier) gives the linear filter; for non-negative targets
(calcium, spikes) a few L-BFGS steps then fit ``softplus(X w + b)`` under a Poisson likelihood,
starting from the ridge solution. Everything is in the model's normalised units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from neurofm.core.data.manifest import Tier
from neurofm.core.data.session import Session
from neurofm.core.data.windows import normalise_stream  # re-exported: its former home

__all__ = ["LinearNonlinear", "fit_linear_nonlinear", "normalise_stream"]

LAGS_S = (0.0, 0.033, 0.067, 0.1, 0.167, 0.233, 0.3)
PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _pooled(session: Session, name: str, mode: str, grid: tuple[int, int]) -> np.ndarray:
    """The whole stream as ``[T, F]`` float32: 2-D streams as they are, frames block-averaged."""
    data = session.stream_data(name)
    if data.ndim <= 2:
        x = np.asarray(data, np.float64).reshape(data.shape[0], -1)
        return np.nan_to_num(normalise_stream(session, name, x, mode)).astype(np.float32)
    rows = np.array_split(np.arange(data.shape[1]), min(grid[0], data.shape[1]))
    cols = np.array_split(np.arange(data.shape[2]), min(grid[1], data.shape[2]))
    out = np.empty((data.shape[0], len(rows) * len(cols)), np.float32)
    for start in range(0, data.shape[0], 1024):  # chunks: a movie need not fit in memory
        x = np.asarray(data[start : start + 1024], np.float64)
        x = normalise_stream(session, name, x, mode)
        x = x.reshape(*x.shape[:3], -1).mean(-1)  # colour channels averaged
        blocks = [x[:, r][:, :, c].mean((1, 2)) for r in rows for c in cols]
        out[start : start + x.shape[0]] = np.nan_to_num(np.stack(blocks, 1))
    return out


@dataclass
class LinearNonlinear:
    """A fitted LN model of one session: ``predict`` gives ``[T, C]`` for target timestamps."""

    session_id: str
    inputs: tuple[str, ...]
    weights: np.ndarray  # [F + 1, C] (last row: bias)
    feature_mean: np.ndarray  # [F]
    feature_std: np.ndarray  # [F]
    softplus: bool
    penalty: float
    lags_s: tuple[float, ...]
    _pooled: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (timestamps [T], features [T, F])

    def features(self, times: np.ndarray) -> np.ndarray:
        """Standardised design matrix ``[T, F + 1]`` at absolute ``times [T]`` (last column 1)."""
        return _design(
            self._pooled, self.inputs, self.lags_s, times, self.feature_mean, self.feature_std
        )

    def predict(self, times: np.ndarray) -> np.ndarray:
        """Predictions ``[T, C]`` at absolute ``times [T]`` (seconds, the target stream's clock)."""
        z = self.features(times) @ self.weights
        return np.logaddexp(0.0, z) if self.softplus else z


def _design(pooled, inputs, lags, times, mean=None, std=None) -> np.ndarray:
    cols = []
    for name in inputs:
        ts, feats = pooled[name]
        for lag in lags:
            idx = np.clip(np.searchsorted(ts, times - lag, side="right") - 1, 0, len(ts) - 1)
            cols.append(feats[idx])
    x = np.concatenate(cols, 1).astype(np.float64)
    if mean is not None:
        x = (x - mean) / std
    return np.concatenate([x, np.ones((x.shape[0], 1))], 1)


def _tier_samples(session: Session, target: str, tier: Tier) -> np.ndarray:
    ts = session.stream_timestamps(target)
    keep = np.zeros(ts.shape, bool)
    for iv in session.intervals(tier):
        keep |= (ts >= iv.start) & (ts < iv.end)
    return np.flatnonzero(keep)


def fit_linear_nonlinear(
    session: Session,
    inputs: Sequence[str],
    target: str,
    normalization: Mapping[str, str],
    *,
    lags_s: Sequence[float] = LAGS_S,
    grid: tuple[int, int] = (6, 8),
    penalties: Sequence[float] = PENALTIES,
    lbfgs_steps: int = 30,
) -> LinearNonlinear:
    """Fit an LN model of ``target`` from ``inputs`` on the train tier of ``session``.

    Shape: the target stream is ``[T, C]`` (C neurons or channels); predictions are ``[T, C]``.
    Raises ValueError when the session has no train samples of the target.
    """
    pooled = {
        n: (session.stream_timestamps(n), _pooled(session, n, normalization.get(n, "none"), grid))
        for n in inputs
    }
    ts = session.stream_timestamps(target)
    mode = normalization.get(target, "none")

    def xy(tier: Tier) -> tuple[np.ndarray, np.ndarray]:
        idx = _tier_samples(session, target, tier)
        y = np.asarray(session.stream_data(target)[idx], np.float64).reshape(len(idx), -1)
        return _design(pooled, inputs, lags_s, ts[idx]), normalise_stream(session, target, y, mode)

    x, y = xy("train")
    if x.shape[0] == 0:
        raise ValueError(f"session {session.session_id} has no train samples of {target!r}")
    mean, std = x[:, :-1].mean(0), x[:, :-1].std(0) + 1e-6
    x[:, :-1] = (x[:, :-1] - mean) / std
    y_ok = np.isfinite(y)
    y = np.nan_to_num(y)
    gram = x.T @ x
    xty = x.T @ y
    xv, yv = xy("validation")
    best, best_score, best_w = penalties[0], -np.inf, None
    for penalty in penalties:
        reg = np.full(gram.shape[0], penalty * x.shape[0])
        reg[-1] = 0.0
        w = np.linalg.solve(gram + np.diag(reg), xty)
        if xv.shape[0] == 0:
            best, best_w = penalty, w
            break
        xv_std = xv.copy()
        xv_std[:, :-1] = (xv[:, :-1] - mean) / std
        score = -np.nanmean((xv_std @ w - yv) ** 2)
        if score > best_score:
            best, best_score, best_w = penalty, score, w
    softplus = bool(np.nanmin(np.where(y_ok, y, 0.0)) >= 0.0) and lbfgs_steps > 0
    if softplus:
        best_w = _poisson_refine(x, y, y_ok, best_w, best, lbfgs_steps)
    return LinearNonlinear(
        session.session_id, tuple(inputs), best_w, mean, std, softplus, best, tuple(lags_s), pooled
    )


def _poisson_refine(x, y, ok, w0, penalty: float, steps: int) -> np.ndarray:
    """A few L-BFGS steps of ``softplus(X w)`` under a Poisson likelihood (+ ridge penalty)."""
    xt = torch.from_numpy(x)
    yt, okt = torch.from_numpy(y), torch.from_numpy(ok.astype(np.float64))
    w = torch.from_numpy(w0.copy()).requires_grad_(True)
    with torch.no_grad():  # start where softplus(z) ~ the ridge prediction
        w[-1] = w[-1] + torch.clamp(yt.mean(0), min=1e-3)
    opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")
    n = max(float(okt.sum()), 1.0)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        rate = torch.nn.functional.softplus(xt @ w) + 1e-4
        nll = ((rate - yt * rate.log()) * okt).sum() / n
        loss = nll + penalty * (w[:-1] ** 2).sum() / w.shape[1]
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy()
