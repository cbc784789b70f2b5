"""CNN baseline in the style of the SENSORIUM reference models: a factorised 3-D conv core on the
movie, a per-neuron Gaussian readout, a behaviour modulator and a calcium output filter.

- **core** (shared by all sessions): ``layers`` blocks of a spatial conv ``(1, k, k)`` then a causal
  temporal conv ``(kt, 1, 1)`` over the z-scored movie ``[B, 1, T, H, W]``, batch norm, ELU; the
  first block is followed by 2x2 average pooling.
- **Gaussian readout** (per session): each neuron has a learned position ``mu`` in ``[-1, 1]^2`` on
  the core's feature map (sampled around ``mu`` with a learned spread while training, read at
  ``mu`` when predicting, by ``grid_sample``) and feature weights ``[N, C]``; drive ``[B, T, N]``.
- **behaviour modulator** (per session): an MLP on the behaviour streams (e.g. running speed, pupil)
  giving a multiplicative gain ``exp(m) [B, T, N]``.
- **output**: ``rate = softplus(drive) * gain``; with ``calcium_filter`` the prediction is
  ``baseline + amplitude * sum_k exp(-k dt / tau) rate(t - k)`` per neuron (calcium indicator
  decay, learned ``tau``), else the rate itself. Trained under a Poisson likelihood.

Windows of ``window_s`` are drawn from the train tier (each step: one session, ``batch_size``
windows), the model sees only the window (``context_s`` seconds before it when set), and the best
state on the validation tier is kept. Everything is in the model's normalised units, as the LN
baseline (:mod:`neurofm.core.baselines.ln`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neurofm.core.config import StrictModel
from neurofm.core.data.session import Session
from neurofm.core.data.windows import normalise_stream

__all__ = ["CNNBaseline", "CNNConfig", "CNNPredictor", "fit_cnn_baseline"]


class CNNConfig(StrictModel):
    """Sizes and optimisation of the CNN baseline (see the module docstring)."""

    channels: int = 16
    layers: int = 3
    spatial_kernel: tuple[int, ...] = (9, 5, 5)
    temporal_kernel: tuple[int, ...] = (9, 5, 5)
    modulator_hidden: int = 16
    calcium_filter: bool = True
    filter_s: float = 2.0
    window_s: float = 2.0
    context_s: float = 0.0
    batch_size: int = 8
    steps: int = 500
    lr: float = 3e-3
    readout_l1: float = 1e-4
    eval_every: int = 50
    seed: int = 0


class Core(nn.Module):
    """Shape: ``[B, 1, T, H, W]`` -> ``[B, C, T, H', W']`` (``H' = H // 2``, ``W' = W // 2``).

    Spatial convs run as 2-D convs over ``B * T`` frames and temporal convs as ``(kt, 1)`` 2-D convs
    over ``[B, C, T, H * W]`` (several times faster on CPU than the equivalent 3-D convs).
    """

    def __init__(self, config: CNNConfig) -> None:
        super().__init__()
        blocks, c_in = [], 1
        for i in range(config.layers):
            k, kt = config.spatial_kernel[i], config.temporal_kernel[i]
            blocks.append(
                nn.ModuleDict(
                    {
                        "spatial": nn.Conv2d(c_in, config.channels, k, padding=k // 2),
                        "temporal": nn.Conv2d(
                            config.channels, config.channels, (kt, 1), bias=False
                        ),
                        "norm": nn.BatchNorm2d(config.channels),
                    }
                )
            )
            c_in = config.channels
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        b, _, t = x.shape[:3]
        for i, block in enumerate(self.blocks):
            h, w = x.shape[3:]
            x = block["spatial"](x.transpose(1, 2).reshape(b * t, -1, h, w))  # [B*T, C, H, W]
            x = x.view(b, t, -1, h * w).transpose(1, 2)  # [B, C, T, H*W]
            kt = block["temporal"].kernel_size[0]
            x = F.elu(block["norm"](block["temporal"](F.pad(x, (0, 0, kt - 1, 0)))))  # causal
            x = x.reshape(b, -1, t, h, w)
            if i == 0:
                x = F.avg_pool3d(x, (1, 2, 2))
        return x


class SessionHead(nn.Module):
    """Gaussian readout + behaviour modulator + output filter of one session (``n`` neurons)."""

    def __init__(self, n: int, channels: int, n_behaviour: int, config: CNNConfig, dt: float):
        super().__init__()
        g = torch.Generator().manual_seed(config.seed + n)
        self.mu = nn.Parameter((torch.rand(n, 2, generator=g) - 0.5) * 1.0)
        self.log_sigma = nn.Parameter(torch.full((n, 2), math.log(0.3)))
        self.features = nn.Parameter(torch.randn(n, channels, generator=g) / channels)
        self.bias = nn.Parameter(torch.zeros(n))
        self.modulator = None
        if n_behaviour:
            self.modulator = nn.Sequential(
                nn.Linear(n_behaviour, config.modulator_hidden), nn.ELU(),
                nn.Linear(config.modulator_hidden, n),
            )  # fmt: skip
            nn.init.zeros_(self.modulator[-1].weight)
            nn.init.zeros_(self.modulator[-1].bias)
        self.dt, self.taps = dt, max(1, round(config.filter_s / dt))
        self.calcium_filter = config.calcium_filter
        self.raw_tau = nn.Parameter(torch.full((n,), math.log(math.expm1(0.7))))
        self.raw_amp = nn.Parameter(torch.full((n,), -2.0))
        self.raw_base = nn.Parameter(torch.zeros(n))

    def forward(self, feats: Tensor, behaviour: Tensor | None) -> Tensor:
        """``feats [B, C, T, H', W']``, ``behaviour [B, T, K]`` -> predictions ``[B, T, N]``."""
        b, c, t = feats.shape[:3]
        grid = self.mu.clamp(-1, 1)
        if self.training:
            grid = (grid + self.log_sigma.exp() * torch.randn_like(grid)).clamp(-1, 1)
        flat = feats.permute(0, 2, 1, 3, 4).reshape(b * t, c, *feats.shape[3:])
        sampled = F.grid_sample(
            flat, grid.expand(b * t, -1, -1).unsqueeze(2), align_corners=False
        )  # [B*T, C, N, 1]
        drive = torch.einsum("bcn,nc->bn", sampled[..., 0], self.features) + self.bias
        rate = F.softplus(drive.view(b, t, -1))
        if self.modulator is not None and behaviour is not None:
            rate = rate * self.modulator(behaviour).clamp(max=5.0).exp()
        if not self.calcium_filter:
            return rate + 1e-4
        tau = F.softplus(self.raw_tau) + 0.05
        lags = torch.arange(self.taps - 1, -1, -1, dtype=rate.dtype, device=rate.device)
        kernel = torch.exp(-lags[None, :] * self.dt / tau[:, None])  # [N, L], newest lag last
        x = F.pad(rate.transpose(1, 2), (self.taps - 1, 0))  # [B, N, T + L - 1]
        calcium = F.conv1d(x, kernel.unsqueeze(1), groups=kernel.shape[0]).transpose(1, 2)
        return F.softplus(self.raw_base) + F.softplus(self.raw_amp) * calcium + 1e-4


class CNNModel(nn.Module):
    """Shared core, one :class:`SessionHead` per session."""

    def __init__(self, config: CNNConfig, neurons: Mapping[str, int], n_behaviour: int, dt: float):
        super().__init__()
        self.core = Core(config)
        self.heads = nn.ModuleDict(
            {_key(s): SessionHead(n, config.channels, n_behaviour, config, dt)
             for s, n in neurons.items()}
        )  # fmt: skip

    def forward(self, session_id: str, movie: Tensor, behaviour: Tensor | None) -> Tensor:
        """``movie [B, T, H, W]`` (normalised), ``behaviour [B, T, K]`` -> ``[B, T, N]``."""
        return self.heads[_key(session_id)](self.core(movie.unsqueeze(1)), behaviour)


def _key(session_id: str) -> str:
    return session_id.replace(".", "_")


class _SessionData:
    """Normalised window extraction for one session on the movie's frame clock."""

    def __init__(self, session: Session, stimulus: str, behaviour: Sequence[str], target: str,
                 norm: Mapping[str, str]) -> None:  # fmt: skip
        self.session, self.stimulus, self.behaviour, self.target = (
            session,
            stimulus,
            behaviour,
            target,
        )
        self.norm = norm
        self.frame_t = session.stream_timestamps(stimulus)
        self.rate = session.stream_spec(stimulus).sampling_rate_hz
        self.behaviour_data = [
            (session.stream_timestamps(n), np.nan_to_num(normalise_stream(
                session, n, np.asarray(session.stream_data(n), np.float64).reshape(
                    len(session.stream_timestamps(n)), -1), norm.get(n, "none"))))
            for n in behaviour
        ]  # fmt: skip
        self.target_t = session.stream_timestamps(target)

    def frames(self, t0: float, duration: float, context: float) -> tuple[np.ndarray, int]:
        """Indices of the window's movie frames (from ``t0 - context``) and the first in-window."""
        n = round((duration + context) * self.rate)
        first = int(np.searchsorted(self.frame_t, t0 - context - 0.5 / self.rate))
        first = min(max(first, 0), len(self.frame_t) - n)
        return np.arange(first, first + n), round(context * self.rate)

    def inputs(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        raw = np.asarray(self.session.stream_data(self.stimulus)[idx[0] : idx[-1] + 1], np.float64)
        movie = normalise_stream(
            self.session, self.stimulus, raw, self.norm.get(self.stimulus, "none")
        )
        if movie.ndim == 4:
            movie = movie.mean(-1)
        if not self.behaviour_data:
            return np.nan_to_num(movie).astype(np.float32), None
        ft = self.frame_t[idx]
        beh = [np.stack([np.interp(ft, ts, x[:, j]) for j in range(x.shape[1])], 1)
               for ts, x in self.behaviour_data]  # fmt: skip
        return np.nan_to_num(movie).astype(np.float32), np.concatenate(beh, 1).astype(np.float32)

    def target_rows(
        self, idx: np.ndarray, t0: float, duration: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Target samples in ``[t0, t0 + duration)`` and, for each, its frame within ``idx``."""
        lo, hi = np.searchsorted(self.target_t, [t0, t0 + duration])
        rows = np.arange(lo, hi)
        pos = np.searchsorted(self.frame_t, self.target_t[rows], side="right") - 1
        return rows, np.clip(pos - idx[0], 0, len(idx) - 1)

    def targets(self, rows: np.ndarray) -> np.ndarray:
        raw = np.asarray(self.session.stream_data(self.target)[rows], np.float64)
        return normalise_stream(self.session, self.target, raw, self.norm.get(self.target, "none"))


@dataclass
class CNNPredictor:
    """The fitted CNN's view of one session: ``predict`` gives ``[T, N]`` at target ``times``."""

    model: CNNModel
    data: _SessionData
    config: CNNConfig

    @torch.no_grad()
    def predict(self, times: np.ndarray) -> np.ndarray:
        """Predictions ``[T, N]`` at absolute ``times [T]`` (sorted). Times are tiled into windows of
        ``window_s`` from the start of each contiguous run (a last window ends at the run's end)."""
        self.model.eval()
        times = np.asarray(times, np.float64)
        period = 1.0 / self.data.session.stream_spec(self.data.target).sampling_rate_hz
        out = np.full(
            (len(times), self.model.heads[_key(self.data.session.session_id)].bias.numel()), np.nan
        )
        breaks = np.flatnonzero(np.diff(times) > 1.5 * period) + 1
        w = self.config.window_s
        for run in np.split(np.arange(len(times)), breaks):
            start, end = times[run[0]], times[run[-1]] + period
            n = max(1, int(np.floor((end - start) / w + 1e-9)))
            starts = [start + k * w for k in range(n)]
            if end - starts[-1] - w > 1e-6:
                starts.append(end - w)
            for t0 in starts:
                idx, _ = self.data.frames(t0, w, self.config.context_s)
                movie, beh = self.data.inputs(idx)
                pred = self.model(
                    self.data.session.session_id,
                    torch.from_numpy(movie)[None],
                    None if beh is None else torch.from_numpy(beh)[None],
                )[0].numpy()
                sel = run[(times[run] >= t0 - 1e-9) & (times[run] < t0 + w)]
                pos = np.searchsorted(self.data.frame_t, times[sel], side="right") - 1
                out[sel] = pred[np.clip(pos - idx[0], 0, len(idx) - 1)]
        return out


@dataclass
class CNNBaseline:
    """A CNN fitted on several sessions; ``for_session(id).predict(times)`` as the LN model."""

    model: CNNModel
    config: CNNConfig
    sessions: dict[str, _SessionData]
    train_loss: list[float]
    validation_loss: list[tuple[int, float]]
    seconds: float

    def for_session(self, session_id: str) -> CNNPredictor:
        return CNNPredictor(self.model, self.sessions[session_id], self.config)

    def predict(self, session_id: str, times: np.ndarray) -> np.ndarray:
        return self.for_session(session_id).predict(times)


def _windows(data: _SessionData, tier: str, w: float) -> list[tuple[float, float]]:
    return [(iv.start, iv.end) for iv in data.session.intervals(tier) if iv.end - iv.start >= w]


def _batch(data: _SessionData, starts: Sequence[float], config: CNNConfig):
    movies, behs, ys, poss = [], [], [], []
    n_rows = int(np.floor(config.window_s * data.session.stream_spec(data.target).sampling_rate_hz))
    for t0 in starts:
        idx, _ = data.frames(t0, config.window_s, config.context_s)
        movie, beh = data.inputs(idx)
        rows, pos = data.target_rows(idx, t0, config.window_s)
        rows, pos = rows[:n_rows], pos[:n_rows]
        movies.append(movie), behs.append(beh), ys.append(data.targets(rows)), poss.append(pos)
    n = min(len(p) for p in poss)
    movie = torch.from_numpy(np.stack(movies))
    beh = None if behs[0] is None else torch.from_numpy(np.stack(behs))
    y = torch.from_numpy(np.stack([v[:n] for v in ys])).float()
    return movie, beh, y, torch.from_numpy(np.stack([p[:n] for p in poss]))


def _loss(model: CNNModel, sid: str, batch, config: CNNConfig) -> Tensor:
    movie, beh, y, pos = batch
    pred = model(sid, movie, beh)
    pred = torch.gather(pred, 1, pos[..., None].expand(-1, -1, pred.shape[-1]))
    ok = torch.isfinite(y)
    y = torch.nan_to_num(y)
    nll = ((pred - y * pred.log()) * ok).sum() / ok.sum().clamp(min=1)
    return nll + config.readout_l1 * model.heads[_key(sid)].features.abs().sum() / y.shape[-1]


def fit_cnn_baseline(
    sessions: Session | Sequence[Session],
    inputs: Sequence[str],
    target: str,
    normalization: Mapping[str, str],
    *,
    config: CNNConfig | None = None,
    seconds: float | None = None,
) -> CNNBaseline:
    """Fit the CNN of ``target`` from ``inputs`` (one movie-like stream ``[T, H, W(, C)]`` plus any
    behaviour streams ``[T, K]``) on the train tier of ``sessions``; ``seconds`` caps the wall time
    (the schedule is stretched over ``config.steps``, training stops early at the cap)."""
    config = config or CNNConfig()
    sessions = [sessions] if isinstance(sessions, Session) else list(sessions)
    stimulus = [n for n in inputs if sessions[0].stream_data(n).ndim >= 3]
    if len(stimulus) != 1:
        raise ValueError(
            f"the CNN needs exactly one movie-like input among {list(inputs)}; found {stimulus}"
        )
    behaviour = [n for n in inputs if n != stimulus[0]]
    data = {
        s.session_id: _SessionData(s, stimulus[0], behaviour, target, normalization)
        for s in sessions
    }
    first = next(iter(data.values()))
    n_beh = sum(x.shape[1] for _, x in first.behaviour_data)
    torch.manual_seed(config.seed)
    neurons = {s.session_id: s.stream_data(target).shape[1] for s in sessions}
    model = CNNModel(config, neurons, n_beh, 1.0 / first.rate)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, config.lr, total_steps=config.steps, pct_start=0.1
    )
    rng = np.random.default_rng(config.seed)
    train = {sid: _windows(d, "train", config.window_s) for sid, d in data.items()}
    sids = [s for s in data if train[s]]
    weight = np.array([sum(e - s for s, e in train[sid]) for sid in sids])
    val = {sid: [(s, e - config.window_s) for s, e in _windows(d, "validation", config.window_s)]
           for sid, d in data.items()}  # fmt: skip
    best, best_loss, losses, vals = None, math.inf, [], []
    start_time = time.perf_counter()
    for step in range(config.steps):
        sid = sids[rng.choice(len(sids), p=weight / weight.sum())]
        ivs = train[sid]
        picks = [ivs[i] for i in rng.integers(len(ivs), size=config.batch_size)]
        starts = [rng.uniform(s, e - config.window_s) for s, e in picks]
        model.train()
        loss = _loss(model, sid, _batch(data[sid], starts, config), config)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        timed_out = seconds is not None and time.perf_counter() - start_time > seconds
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps or timed_out:
            v = _validation(model, data, val, config)
            vals.append((step + 1, v))
            if not v > best_loss:  # also keeps the state when there is no validation tier
                best, best_loss = copy.deepcopy(model.state_dict()), v
        if timed_out:
            break
    if best is not None:
        model.load_state_dict(best)
    model.eval()
    return CNNBaseline(model, config, data, losses, vals, time.perf_counter() - start_time)


@torch.no_grad()
def _validation(model: CNNModel, data, val, config: CNNConfig) -> float:
    model.eval()
    total, count = 0.0, 0
    for sid, ivs in val.items():
        starts = [s for s, e in ivs] + [e for s, e in ivs]  # each interval's first and last window
        for k in range(0, len(starts), config.batch_size):
            total += float(
                _loss(
                    model, sid, _batch(data[sid], starts[k : k + config.batch_size], config), config
                )
            )
            count += 1
    return total / count if count else math.nan
