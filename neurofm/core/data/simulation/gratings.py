"""Parametric stimuli and flashed images: drifting gratings, static natural-like images, and the
direction tuning that gratings reveal.

Grating convention (degrees, the screen's x right / y up): a grating with wave-vector direction
``direction`` drifts along that direction; its ``orientation`` is ``direction mod 180`` (the same
convention as the neurons' ``rf_orientation``, so a neuron's preferred orientation is its Gabor
orientation). Luminance ``127.5 * (1 + contrast * cos(2 pi sf (x cos d + y sin d) - phase))`` with
``phase(t) = phase0 + 360 tf t`` degrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofm.core.data.simulation.stimulus import MEAN_LUMINANCE, ScreenGeometry, spectral_noise

__all__ = [
    "GRATING_CHANNELS",
    "DirectionTuning",
    "direction_gain",
    "flashed_image",
    "grating_segments",
    "sample_direction_tuning",
]

GRATING_CHANNELS = (
    "orientation", "direction", "spatial_frequency_cpd", "temporal_frequency_hz", "contrast",
    "phase",
)  # fmt: skip


def flashed_image(
    rng: np.random.Generator,
    screen: ScreenGeometry,
    exponent: float,
    rms_contrast: tuple[float, float],
) -> np.ndarray:
    """One static natural-like image ``[H, W]`` float32 luminance in ``[0, 255]``."""
    field = spectral_noise(rng, 1, screen.height, screen.width, exponent)[0]
    contrast = rng.uniform(*rms_contrast)
    return np.clip(MEAN_LUMINANCE * (1 + contrast * field), 0.0, 255.0).astype(np.float32)


def grating_segments(
    rng: np.random.Generator,
    n_frames: int,
    screen: ScreenGeometry,
    frame_rate_hz: float,
    segment_s: float,
    *,
    sf_cpd: tuple[float, float],
    tf_hz: tuple[float, float],
    contrast: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Back-to-back full-field drifting gratings of ``segment_s`` each, with random direction
    (uniform in [0, 360)), spatial/temporal frequency and contrast (uniform in their ranges).

    Returns:
        frames ``[n_frames, H, W]`` float32 luminance and parameters ``[n_frames, 6]`` float32
        (``GRATING_CHANNELS``: degrees, cycles/degree, Hz, contrast, degrees).
    """
    x, y = screen.pixel_centres_deg()
    frames = np.empty((n_frames, screen.height, screen.width), dtype=np.float32)
    params = np.empty((n_frames, len(GRATING_CHANNELS)), dtype=np.float32)
    length = max(1, round(segment_s * frame_rate_hz))
    for start in range(0, n_frames, length):
        stop = min(start + length, n_frames)
        direction = rng.uniform(0.0, 360.0)
        sf, tf, c = rng.uniform(*sf_cpd), rng.uniform(*tf_hz), rng.uniform(*contrast)
        phase = rng.uniform(0.0, 360.0) + 360.0 * tf * np.arange(stop - start) / frame_rate_hz
        phase %= 360.0
        d = np.deg2rad(direction)
        along = x[None, :] * np.cos(d) + y[:, None] * np.sin(d)  # [H, W] degrees
        carrier = 2 * np.pi * sf * along[None] - np.deg2rad(phase)[:, None, None]
        frames[start:stop] = MEAN_LUMINANCE * (1 + c * np.cos(carrier))
        params[start:stop] = [direction % 180.0, direction, sf, tf, c, 0.0]
        params[start:stop, 5] = phase
    return frames, params


@dataclass(frozen=True)
class DirectionTuning:
    """Per-neuron direction preference of the gain during gratings.

    Attributes (all ``[N]``): preferred_direction_deg (the neuron's orientation or its opposite);
    selectivity ``s`` in ``[0, 1)``: the rate is multiplied by ``1 + s cos(direction - preferred)``.
    """

    preferred_direction_deg: np.ndarray
    selectivity: np.ndarray


def sample_direction_tuning(
    rng: np.random.Generator, orientation_rad: np.ndarray, selectivity: tuple[float, float]
) -> DirectionTuning:
    """Preferred direction = orientation (+ 180 degrees for half the neurons, at random)."""
    n = orientation_rad.shape[0]
    flip = rng.random(n) < 0.5
    preferred = (np.rad2deg(orientation_rad) + 180.0 * flip) % 360.0
    return DirectionTuning(preferred, rng.uniform(*selectivity, n))


def direction_gain(direction_deg: np.ndarray, tuning: DirectionTuning) -> np.ndarray:
    """Gain ``[T, N]`` from the grating direction ``[T]`` (NaN: no grating -> gain 1)."""
    delta = np.deg2rad(direction_deg[:, None] - tuning.preferred_direction_deg[None, :])
    gain = 1.0 + tuning.selectivity * np.cos(delta)
    return np.where(np.isfinite(direction_deg)[:, None], gain, 1.0)
