"""Model V1 neurons: Gabor receptive fields, firing rates with behavioural gain, GCaMP-like calcium.

The pipeline for one session (all neurons at once):

1. ``spatial_responses``: contrast frames ``(L - 127.5) / 127.5`` are projected onto each neuron's
   quadrature pair of Gabor filters. The receptive field is fixed on the retina, so in screen
   coordinates it sits at ``rf_center_deg + gaze`` (gaze rounded to whole pixels per frame).
2. ``temporal_filter``: a biphasic temporal kernel per neuron (peak ~50-80 ms, negative lobe
   ~100-160 ms, 0.4 s support), applied causally along frames.
3. ``stimulus_drive``: simple cells use the even filter output, complex cells the energy
   ``sqrt(even^2 + odd^2)``; both standardised by their RMS during stimulus presentation
   (contrast adaptation), so the drive ``d`` has roughly zero mean and unit variance.
4. ``firing_rate``: ``rate = (base_rate + rate_gain * softplus(d - threshold)) * gain(t)`` in Hz with
   ``log gain = w_run * s / (s + 5 cm/s) + w_pupil * (pupil - 1.2 mm) / 0.3 mm``.
5. ``sample_calcium``: Poisson spike counts per calcium frame, calcium
   ``F = F0 + A * sum_k exp(-k dt / tau) * spikes[t - k]``, observed as ``F * Gamma(k, 1/k)``
   (multiplicative, mean 1), so ``expected_calcium`` is exactly the conditional mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofm.core.data.simulation.behaviour import leaky_integrate
from neurofm.core.data.simulation.stimulus import MEAN_LUMINANCE, ScreenGeometry

__all__ = [
    "NeuronPopulation",
    "Retinotopy",
    "behavioural_gain",
    "expected_calcium",
    "firing_rate",
    "gabor_pair",
    "sample_calcium",
    "sample_population",
    "sample_retinotopy",
    "spatial_responses",
    "stimulus_drive",
    "temporal_filter",
    "temporal_kernels",
]

RAYLEIGH_MEAN = float(np.sqrt(np.pi / 2))  # mean of sqrt(e^2 + o^2) for unit-variance e, o
RAYLEIGH_STD = float(np.sqrt(2 - np.pi / 2))
RUNNING_HALF_SPEED_CM_S = 5.0
PUPIL_REFERENCE_MM = 1.2
PUPIL_SCALE_MM = 0.3
KERNEL_SUPPORT_S = 0.4


@dataclass(frozen=True)
class Retinotopy:
    """Animal-specific linear map from cortical (x, y) in µm to visual (x, y) in degrees.

    ``rf_center_deg = position_um[:, :2] @ matrix.T + offset_deg`` (plus per-neuron scatter).
    Shapes: matrix ``[2, 2]`` deg/µm, offset_deg ``[2]``.
    """

    matrix: np.ndarray
    offset_deg: np.ndarray


def sample_retinotopy(rng: np.random.Generator, deg_per_um: float = 0.035) -> Retinotopy:
    """A rotated (±25 degrees) isotropic map of ``deg_per_um`` and a random visual offset."""
    angle = rng.uniform(-25, 25) * np.pi / 180
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    offset = rng.standard_normal(2) * (10.0, 4.0)
    return Retinotopy(matrix=deg_per_um * rotation, offset_deg=offset)


@dataclass(frozen=True)
class NeuronPopulation:
    """Parameters of N neurons (every array has leading dimension N; angles in radians)."""

    position_um: np.ndarray  # [N, 3] cortical x, y, depth
    rf_center_deg: np.ndarray  # [N, 2] at gaze (0, 0)
    orientation: np.ndarray  # [N] direction of the carrier wave vector, [0, pi)
    spatial_frequency_cpd: np.ndarray  # [N] cycles per degree
    phase: np.ndarray  # [N]
    sigma_deg: np.ndarray  # [N] Gaussian envelope standard deviation
    is_complex: np.ndarray  # [N] bool
    latency_s: np.ndarray  # [N] temporal kernel scale a (first lobe peaks at 2a)
    rebound: np.ndarray  # [N] relative size of the negative lobe
    threshold: np.ndarray  # [N] in units of standardised drive
    base_rate_hz: np.ndarray  # [N]
    rate_gain_hz: np.ndarray  # [N]
    behaviour_gain: np.ndarray  # [N, 2] (w_run, w_pupil)
    calcium_tau_s: np.ndarray  # [N]
    calcium_amplitude: np.ndarray  # [N] F per spike
    calcium_baseline: np.ndarray  # [N] F0
    noise_shape: np.ndarray  # [N] Gamma shape k of the multiplicative noise
    scan_offset_s: np.ndarray  # [N] acquisition time within a calcium frame


def sample_population(
    rng: np.random.Generator,
    n: int,
    retinotopy: Retinotopy,
    fov_center_um: np.ndarray,
    *,
    frame_period_s: float,
    fov_size_um: float = 500.0,
    rf_scatter_deg: float = 2.0,
    fraction_complex: float = 0.4,
    rate_gain_hz: float = 6.0,
    running_gain: float = 0.5,
    pupil_gain: float = 0.1,
    calcium_tau_s: tuple[float, float] = (0.5, 1.0),
    noise_shape: tuple[float, float] = (15.0, 50.0),
) -> NeuronPopulation:
    """Draw N layer-2/3 neurons in a square field of view centred at ``fov_center_um`` ``[2]``."""
    xy = fov_center_um + rng.uniform(-0.5, 0.5, size=(n, 2)) * fov_size_um
    depth = rng.uniform(150.0, 350.0, size=(n, 1))
    rf_center = xy @ retinotopy.matrix.T + retinotopy.offset_deg
    rf_center += rng.standard_normal((n, 2)) * rf_scatter_deg
    sf = np.clip(np.exp(rng.normal(np.log(0.045), 0.35, n)), 0.02, 0.1)
    sigma = np.clip(rng.uniform(0.3, 0.5, n) / sf, 4.0, 15.0)
    # raster scan: rows of the field of view are acquired top to bottom within a frame
    scan = np.clip((xy[:, 1] - fov_center_um[1]) / fov_size_um + 0.5, 0.0, 1.0) * frame_period_s
    return NeuronPopulation(
        position_um=np.concatenate([xy, depth], axis=1),
        rf_center_deg=rf_center,
        orientation=rng.uniform(0, np.pi, n),
        spatial_frequency_cpd=sf,
        phase=rng.uniform(0, 2 * np.pi, n),
        sigma_deg=sigma,
        is_complex=rng.random(n) < fraction_complex,
        latency_s=rng.uniform(0.025, 0.04, n),
        rebound=rng.uniform(0.4, 0.8, n),
        threshold=rng.uniform(0.0, 1.0, n),
        base_rate_hz=rng.uniform(0.3, 1.0, n),
        rate_gain_hz=rate_gain_hz * np.exp(rng.normal(0.0, 0.3, n)),
        behaviour_gain=np.stack(
            [rng.normal(running_gain, 0.25, n), rng.normal(pupil_gain, 0.15, n)], axis=1
        ),
        calcium_tau_s=rng.uniform(*calcium_tau_s, n),
        calcium_amplitude=np.exp(rng.normal(np.log(0.3), 0.3, n)),
        calcium_baseline=rng.uniform(0.7, 1.3, n),
        noise_shape=rng.uniform(*noise_shape, n),
        scan_offset_s=scan,
    )


def gabor_pair(pop: NeuronPopulation, x_deg: np.ndarray, y_deg: np.ndarray) -> np.ndarray:
    """Even and odd Gabor filters of every neuron on the grid ``x_deg [W'] x y_deg [H']``.

    The Gaussian envelope is truncated to zero where it falls below 1e-6.

    Returns:
        ``[H', W', 2, N]`` float32 (last-but-one axis: even, odd).
    """
    dx = x_deg[None, :, None] - pop.rf_center_deg[:, 0]
    dy = y_deg[:, None, None] - pop.rf_center_deg[:, 1]
    along = dx * np.cos(pop.orientation) + dy * np.sin(pop.orientation)
    envelope = np.exp(-(dx**2 + dy**2) / (2 * pop.sigma_deg**2))
    envelope[envelope < 1e-6] = 0.0  # truncate at ~5.3 sigma (avoids float32 subnormals)
    carrier = 2 * np.pi * pop.spatial_frequency_cpd * along + pop.phase
    return np.stack([envelope * np.cos(carrier), envelope * np.sin(carrier)], axis=2).astype(
        np.float32
    )


def spatial_responses(
    movie: np.ndarray,
    gaze_deg: np.ndarray,
    pop: NeuronPopulation,
    screen: ScreenGeometry,
    chunk: int = 1024,
) -> np.ndarray:
    """Project every frame onto the Gabor pairs, with receptive fields moved by the eye position.

    Moving the RF by the gaze is done by placing each contrast frame, offset by minus the gaze
    (whole pixels), in a zero canvas as large as the screen plus the largest shift, and projecting
    the canvas onto the unshifted filters (one large matrix product per ``chunk`` frames).

    Shapes: movie ``[T, H, W]`` luminance; gaze_deg ``[T, 2]`` (x, y) at the frame times.
    Returns ``[T, 2, N]`` float32 (even, odd).
    """
    shift = np.rint(gaze_deg / screen.deg_per_px).astype(np.int64)  # [T, 2] pixels (x, y)
    pad = int(np.abs(shift).max(initial=0))
    x_deg, y_deg = screen.pixel_centres_deg(pad)
    h, w, n = screen.height, screen.width, pop.orientation.shape[0]
    bank = gabor_pair(pop, x_deg, y_deg).reshape(x_deg.size * y_deg.size, 2 * n)
    bank /= np.float32(MEAN_LUMINANCE)  # luminance -> contrast
    out = np.empty((movie.shape[0], 2 * n), dtype=np.float32)
    for start in range(0, movie.shape[0], chunk):
        frames = movie[start : start + chunk]
        placed = np.zeros((frames.shape[0], y_deg.size, x_deg.size), dtype=np.float32)
        unique, group = np.unique(shift[start : start + chunk], axis=0, return_inverse=True)
        for g, (sx, sy) in enumerate(unique):
            # screen pixel (i, j) meets the filter value at canvas (i + sy, j - sx) + pad
            same = np.flatnonzero(group.reshape(-1) == g)
            rows, cols = slice(pad + sy, pad + sy + h), slice(pad - sx, pad - sx + w)
            placed[same, rows, cols] = frames[same] - np.float32(MEAN_LUMINANCE)
        out[start : start + frames.shape[0]] = placed.reshape(frames.shape[0], -1) @ bank
    return out.reshape(-1, 2, n)


def temporal_kernels(pop: NeuronPopulation, frame_rate_hz: float) -> np.ndarray:
    """Biphasic kernels ``g(t; a) - rebound * g(t; 2a)``, ``g`` a shape-3 gamma density.

    Returns ``[N, L]`` at lags ``l / frame_rate_hz``, l = 0..L-1, each scaled to unit L2 norm.
    """
    lag = np.arange(int(np.ceil(KERNEL_SUPPORT_S * frame_rate_hz)))[None, :] / frame_rate_hz
    a = pop.latency_s[:, None]

    def gamma3(scale: np.ndarray) -> np.ndarray:
        return lag**2 * np.exp(-lag / scale) / (2 * scale**3)

    kernel = gamma3(a) - pop.rebound[:, None] * gamma3(2 * a)
    return kernel / np.linalg.norm(kernel, axis=1, keepdims=True)


def temporal_filter(responses: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Causal filtering along time. Shapes: responses ``[T, C, N]``, kernels ``[N, L]``."""
    out = np.zeros_like(responses)
    for lag in range(kernels.shape[1]):
        out[lag:] += kernels[:, lag].astype(responses.dtype) * responses[: responses.shape[0] - lag]
    return out


def stimulus_drive(filtered: np.ndarray, pop: NeuronPopulation, on: np.ndarray) -> np.ndarray:
    """Standardised drive ``[T, N]`` from filtered responses ``[T, 2, N]``.

    ``on`` ``[T]`` bool marks samples during stimulus presentation, used for the RMS.
    """
    even, odd = filtered[:, 0].astype(np.float64), filtered[:, 1].astype(np.float64)
    rms_even = np.sqrt(np.mean(even[on] ** 2, axis=0)) + 1e-12
    rms_pair = np.sqrt(np.mean((even[on] ** 2 + odd[on] ** 2) / 2, axis=0)) + 1e-12
    simple = even / rms_even
    energy = (np.sqrt(even**2 + odd**2) / rms_pair - RAYLEIGH_MEAN) / RAYLEIGH_STD
    return np.where(pop.is_complex, energy, simple)


def behavioural_gain(speed: np.ndarray, pupil: np.ndarray, pop: NeuronPopulation) -> np.ndarray:
    """Multiplicative gain ``[T, N]`` from speed (cm/s) and pupil diameter (mm), each ``[T]`` (one
    time per frame) or ``[T, N]`` (each neuron at its own sample time)."""
    speed = speed[:, None] if speed.ndim == 1 else speed
    pupil = pupil[:, None] if pupil.ndim == 1 else pupil
    running = speed / (speed + RUNNING_HALF_SPEED_CM_S)
    dilation = (pupil - PUPIL_REFERENCE_MM) / PUPIL_SCALE_MM
    w = pop.behaviour_gain
    return np.exp(running * w[:, 0] + dilation * w[:, 1])


def firing_rate(drive: np.ndarray, gain: np.ndarray, pop: NeuronPopulation) -> np.ndarray:
    """Firing rate ``[T, N]`` in Hz from drive and behavioural gain (both ``[T, N]``)."""
    softplus = np.logaddexp(0.0, drive - pop.threshold)
    return (pop.base_rate_hz + pop.rate_gain_hz * softplus) * gain


def _calcium_decay(pop: NeuronPopulation, dt: float) -> np.ndarray:
    return np.exp(-dt / pop.calcium_tau_s)


def expected_calcium(rate: np.ndarray, dt: float, pop: NeuronPopulation) -> np.ndarray:
    """``E[F | rate]`` ``[T, N]`` for rates ``[T, N]`` (Hz) on frames ``dt`` seconds apart."""
    kernel_sum = leaky_integrate(rate * dt, _calcium_decay(pop, dt))
    return pop.calcium_baseline + pop.calcium_amplitude * kernel_sum


def sample_calcium(
    rate: np.ndarray, dt: float, pop: NeuronPopulation, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draw spikes and observed calcium, both ``[T, N]``; calcium >= 0, mean ``expected_calcium``.

    Returns (calcium float64, spike counts float64).
    """
    spikes = rng.poisson(rate * dt).astype(np.float64)
    clean = pop.calcium_baseline + pop.calcium_amplitude * leaky_integrate(
        spikes, _calcium_decay(pop, dt)
    )
    noise = rng.gamma(pop.noise_shape, 1.0 / pop.noise_shape, size=clean.shape)
    return clean * noise, spikes
