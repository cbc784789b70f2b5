"""Natural-like movie clips: drifting 1/f^alpha noise scenes on a gray screen.

Screen geometry: the screen spans ``screen_width_deg`` horizontally over ``width`` pixels, pixels are
square, and (0, 0) degrees is the screen centre with x to the right and y upwards. With the defaults
(64 px over 120 degrees) one pixel is 1.875 degrees.

Each clip is a sequence of scenes of random duration. A scene is a periodic Gaussian random field
with power spectrum ``1 / f**alpha`` (``alpha = 2`` matches natural images) that translates at a
constant random velocity; frames are sampled from it by bilinear interpolation. Luminance is in
``[0, 255]`` with mean ``MEAN_LUMINANCE``; the blank screen between trials is uniform at that mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MEAN_LUMINANCE", "MovieStyle", "ScreenGeometry", "natural_movie_clip", "spectral_noise"]

MEAN_LUMINANCE = 127.5


@dataclass(frozen=True)
class ScreenGeometry:
    """Pixel grid of the screen in visual degrees.

    Attributes:
        height: rows H (pixels).
        width: columns W (pixels).
        screen_width_deg: horizontal extent of the screen in degrees.
    """

    height: int
    width: int
    screen_width_deg: float

    @property
    def deg_per_px(self) -> float:
        """Size of one (square) pixel in degrees."""
        return self.screen_width_deg / self.width

    def pixel_centres_deg(self, pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Degrees of the pixel centres of the screen grown by ``pad`` pixels on every side.

        Returns:
            x ``[W + 2 pad]`` (increasing to the right) and y ``[H + 2 pad]`` (decreasing down the
            rows, i.e. row 0 is the top of the screen), both float64 degrees.
        """
        cols = np.arange(-pad, self.width + pad) + 0.5 - self.width / 2
        rows = np.arange(-pad, self.height + pad) + 0.5 - self.height / 2
        return cols * self.deg_per_px, -rows * self.deg_per_px


@dataclass(frozen=True)
class MovieStyle:
    """Statistics of the generated movies.

    Attributes:
        spectral_exponent: alpha in the power spectrum ``1 / f**alpha``.
        scene_duration_s: (min, max) of the uniform scene duration.
        max_speed_deg_s: scenes translate at a speed drawn uniformly in ``[0, max]`` deg/s.
        rms_contrast: (min, max) of the per-scene RMS contrast (std / mean luminance).
    """

    spectral_exponent: float = 2.0
    scene_duration_s: tuple[float, float] = (1.0, 2.0)
    max_speed_deg_s: float = 20.0
    rms_contrast: tuple[float, float] = (0.25, 0.5)


def spectral_noise(
    rng: np.random.Generator, n: int, height: int, width: int, exponent: float
) -> np.ndarray:
    """``n`` periodic Gaussian fields with power spectrum ``1 / f**exponent``.

    Returns:
        ``[n, height, width]`` float64, each field with zero mean and unit standard deviation.
    """
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    amplitude = np.zeros_like(f)
    amplitude[f > 0] = f[f > 0] ** (-exponent / 2)
    white = rng.standard_normal((n, height, width))
    fields = np.fft.irfft2(np.fft.rfft2(white) * amplitude, s=(height, width))
    fields -= fields.mean(axis=(1, 2), keepdims=True)
    fields /= fields.std(axis=(1, 2), keepdims=True) + 1e-12
    return fields


def natural_movie_clip(
    rng: np.random.Generator,
    n_frames: int,
    screen: ScreenGeometry,
    frame_rate_hz: float,
    style: MovieStyle = MovieStyle(),
) -> np.ndarray:
    """One movie clip of drifting natural-like scenes; deterministic given the state of ``rng``.

    Returns:
        ``[n_frames, H, W]`` float32 luminance in ``[0, 255]``.
    """
    h, w = screen.height, screen.width
    canvas_h, canvas_w = 2 * h, 2 * w  # periodic canvas larger than the screen
    starts: list[int] = []
    t = 0
    while t < n_frames:
        starts.append(t)
        t += max(1, round(rng.uniform(*style.scene_duration_s) * frame_rate_hz))
    n_scenes = len(starts)
    frames = np.arange(n_frames)
    scene = np.searchsorted(np.asarray(starts), frames, side="right") - 1
    age = frames - np.asarray(starts)[scene]

    canvases = spectral_noise(rng, n_scenes, canvas_h, canvas_w, style.spectral_exponent)
    contrast = rng.uniform(*style.rms_contrast, size=n_scenes)
    canvases *= (contrast * MEAN_LUMINANCE)[:, None, None]

    origin = rng.uniform(0, 1, size=(n_scenes, 2)) * (canvas_h, canvas_w)
    speed_px = rng.uniform(0, style.max_speed_deg_s, n_scenes) / screen.deg_per_px / frame_rate_hz
    direction = rng.uniform(0, 2 * np.pi, n_scenes)
    velocity = speed_px[:, None] * np.stack([np.sin(direction), np.cos(direction)], axis=1)
    position = origin[scene] + velocity[scene] * age[:, None]  # [T, 2] (row, col) pixels

    rows = position[:, 0, None] + np.arange(h)  # [T, H]
    cols = position[:, 1, None] + np.arange(w)  # [T, W]
    r0 = np.floor(rows)
    c0 = np.floor(cols)
    wr = (rows - r0)[:, :, None]
    wc = (cols - c0)[:, None, :]
    r0 = r0.astype(np.int64) % canvas_h
    c0 = c0.astype(np.int64) % canvas_w
    r1 = (r0 + 1) % canvas_h
    c1 = (c0 + 1) % canvas_w
    base = (scene * canvas_h * canvas_w)[:, None, None]
    flat = canvases.reshape(-1)

    def tap(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        return flat[base + r[:, :, None] * canvas_w + c[:, None, :]]

    movie = (1 - wr) * ((1 - wc) * tap(r0, c0) + wc * tap(r0, c1)) + wr * (
        (1 - wc) * tap(r1, c0) + wc * tap(r1, c1)
    )
    movie += MEAN_LUMINANCE
    return np.clip(movie, 0.0, 255.0).astype(np.float32)
