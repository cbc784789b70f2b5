"""Behaviour of a head-fixed mouse on a treadmill: running speed, pupil diameter and gaze.

All traces are sampled on one regular grid (the behaviour rate) and are independent of the stimulus,
so repeats of the same clip meet different behaviour.

- Running: a two-state (still / running) Markov process with exponential dwell times; every running
  bout has its own target speed, modulated by a slow multiplicative fluctuation; the target is
  low-pass filtered (time constant ``speed_smoothing_s``), so speed is smooth and >= 0 (cm/s).
- Pupil: diameter (mm) = animal baseline + slow Ornstein-Uhlenbeck fluctuation + a dilation that
  follows running with a delay and a slow rise (running speed, delayed by ``pupil_lag_s`` and
  low-pass filtered with time constant ``pupil_tau_s``, times ``pupil_dilation_mm_per_cm_s``).
  Its time derivative (mm/s) is returned as well.
- Gaze: eye position (degrees, x right / y up) = fixation target that jumps at saccades (Poisson
  times, more frequent while running; mostly horizontal) + small fixational drift (OU process).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BehaviourStyle", "BehaviourTraces", "leaky_integrate", "simulate_behaviour"]


@dataclass(frozen=True)
class BehaviourStyle:
    """Parameters of the behaviour model (defaults are typical of head-fixed mice)."""

    mean_still_s: float = 12.0
    mean_running_s: float = 10.0
    bout_speed_cm_s: tuple[float, float] = (8.0, 30.0)
    speed_smoothing_s: float = 0.8
    pupil_baseline_mm: tuple[float, float] = (0.9, 1.3)
    pupil_fluctuation_mm: float = 0.12
    pupil_fluctuation_tau_s: float = 15.0
    pupil_dilation_mm_per_cm_s: float = 0.02
    pupil_lag_s: float = 0.5
    pupil_tau_s: float = 2.0
    saccade_rate_hz: tuple[float, float] = (0.15, 0.5)  # (still, running)
    fixation_spread_deg: tuple[float, float] = (6.0, 2.0)  # (x, y) standard deviation
    drift_deg: float = 0.5
    drift_tau_s: float = 1.0


@dataclass(frozen=True)
class BehaviourTraces:
    """Behaviour sampled at ``rate_hz``.

    Attributes:
        speed: ``[T]`` running speed, cm/s, >= 0.
        pupil: ``[T]`` pupil diameter, mm.
        pupil_derivative: ``[T]`` d(pupil)/dt, mm/s.
        gaze: ``[T, 2]`` eye position (x, y), degrees.
        running: ``[T]`` bool, the hidden still/running state.
        rate_hz: sampling rate.
    """

    speed: np.ndarray
    pupil: np.ndarray
    pupil_derivative: np.ndarray
    gaze: np.ndarray
    running: np.ndarray
    rate_hz: float


def leaky_integrate(drive: np.ndarray, decay: np.ndarray | float) -> np.ndarray:
    """First-order recursion ``y[t] = decay * y[t-1] + drive[t]`` with ``y[-1] = 0``.

    Shapes: drive ``[T, ...]``; decay broadcastable to ``drive[0]``; returns ``[T, ...]`` float64.
    """
    drive = np.asarray(drive, dtype=np.float64)
    decay = np.asarray(decay, dtype=np.float64)
    out = np.empty_like(drive)
    state = np.zeros_like(drive[0])
    for t in range(drive.shape[0]):
        state = decay * state + drive[t]
        out[t] = state
    return out


def _ornstein_uhlenbeck(
    rng: np.random.Generator, n: int, dt: float, tau: float, std: float, dims: int = 1
) -> np.ndarray:
    """Stationary OU process, ``[n, dims]`` with standard deviation ``std`` and time constant tau."""
    a = np.exp(-dt / tau)
    noise = rng.standard_normal((n, dims)) * std * np.sqrt(1 - a**2)
    noise[0] = rng.standard_normal(dims) * std  # start in the stationary distribution
    return leaky_integrate(noise, a)


def _running_state(rng: np.random.Generator, n: int, dt: float, style: BehaviourStyle):
    """Alternating still/running bouts; returns (state ``[n]`` bool, bout index ``[n]`` int)."""
    state = np.zeros(n, dtype=bool)
    bout = np.zeros(n, dtype=np.int64)
    t, k = 0, 0
    running = bool(
        rng.random() < style.mean_running_s / (style.mean_running_s + style.mean_still_s)
    )
    while t < n:
        mean = style.mean_running_s if running else style.mean_still_s
        length = max(1, round(rng.exponential(mean) / dt))
        state[t : t + length] = running
        bout[t : t + length] = k
        t, k, running = t + length, k + 1, not running
    return state, bout


def simulate_behaviour(
    rng: np.random.Generator,
    n_samples: int,
    rate_hz: float,
    style: BehaviourStyle = BehaviourStyle(),
) -> BehaviourTraces:
    """Simulate ``n_samples`` behaviour samples at ``rate_hz`` (deterministic given ``rng``)."""
    dt = 1.0 / rate_hz
    running, bout = _running_state(rng, n_samples, dt, style)
    bout_speed = rng.uniform(*style.bout_speed_cm_s, size=bout.max() + 1)
    wobble = np.exp(_ornstein_uhlenbeck(rng, n_samples, dt, 2.0, 0.2)[:, 0])
    target = np.where(running, bout_speed[bout] * wobble, 0.0)
    smooth = np.exp(-dt / style.speed_smoothing_s)
    speed = leaky_integrate(target * (1 - smooth), smooth)

    lag = round(style.pupil_lag_s / dt)
    delayed = np.concatenate([np.full(lag, speed[0]), speed[: n_samples - lag]])
    rise = np.exp(-dt / style.pupil_tau_s)
    dilation = leaky_integrate(delayed * (1 - rise), rise)
    dilation += speed[0] * rise ** (np.arange(n_samples) + 1)  # start at equilibrium
    fluctuation = _ornstein_uhlenbeck(
        rng, n_samples, dt, style.pupil_fluctuation_tau_s, style.pupil_fluctuation_mm
    )[:, 0]
    pupil = rng.uniform(*style.pupil_baseline_mm) + fluctuation
    pupil = np.maximum(pupil + style.pupil_dilation_mm_per_cm_s * dilation, 0.2)
    pupil_derivative = np.gradient(pupil, dt)

    saccade_rate = np.where(running, style.saccade_rate_hz[1], style.saccade_rate_hz[0])
    saccade = rng.random(n_samples) < saccade_rate * dt
    fixation_index = np.cumsum(saccade)
    targets = rng.standard_normal((fixation_index[-1] + 1, 2)) * style.fixation_spread_deg
    drift = _ornstein_uhlenbeck(rng, n_samples, dt, style.drift_tau_s, style.drift_deg, dims=2)
    gaze = targets[fixation_index] + drift

    return BehaviourTraces(
        speed=speed,
        pupil=pupil,
        pupil_derivative=pupil_derivative,
        gaze=gaze,
        running=running,
        rate_hz=rate_hz,
    )
