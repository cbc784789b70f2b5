"""Receptive fields of a model's neurons, two ways.

- **Sparse noise** (reverse correlation with one spot at a time): the evoked response of every
  neuron to each condition of a spot family (built-in ``sparse_noise``; any family whose
  conditions give the spot's centre ``x_px``, ``y_px`` and, optionally, ``polarity``). The map is
  the response magnitude ``|R|`` summed over polarities, so on and off subfields both count.
- **Gradient**: the squared gradient of the neuron's mean response with respect to every pixel of
  the stimulus, summed over its frames and over ``backgrounds`` static white-noise images of RMS
  contrast ``contrast`` (around gray, where a complex cell's gradient vanishes, noise gives it one).

From a map, the centre is the centroid of the part above the map's median, its background
(weights ``max(map - median, 0)``), and the size the RMS distance of that part from the centre, in
pixels (column, row) and, when the screen's size in degrees is known, in degrees (x right, y up).
On the simulator's own neurons both methods find the centres at r 0.999 (tests/insilico); the
half-maximum centroid tried first gave 0.97 there and 0.02-0.07 less on a trained model
(BENCHMARKS.md, "In-silico experiments").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from neurofm.core.progress import progress as progress_bar
from neurofm.insilico.probe import InsilicoError, ModelProbe
from neurofm.insilico.stimuli import Stimulus
from neurofm.insilico.tuning import condition_responses

__all__ = ["ReceptiveFieldResult", "gradient_receptive_fields", "map_centres",
           "sparse_noise_receptive_fields"]  # fmt: skip


@dataclass
class ReceptiveFieldResult:
    """Receptive fields of ``units`` by ``method``.

    Shape: ``maps [K, h, w]`` (sparse noise: the spot grid; gradient: pixels) with cells centred
    at pixel columns ``x_px [w]`` and rows ``y_px [h]``; ``centre_px [K, 2]``
    and ``size_px [K]`` in screen pixels (column, row); ``centre_deg [K, 2]`` / ``size_deg [K]``
    or None; ``linear [K, H, W]`` (gradient only): the mean signed gradient, the neuron's linear
    filter around the backgrounds.
    """

    method: str
    units: np.ndarray
    maps: np.ndarray
    x_px: np.ndarray
    y_px: np.ndarray
    centre_px: np.ndarray
    size_px: np.ndarray
    centre_deg: np.ndarray | None
    size_deg: np.ndarray | None
    linear: np.ndarray | None = None

    def summary(self) -> dict[str, list]:
        out = {"unit": self.units.tolist(), "centre_px": self.centre_px.tolist(),
               "size_px": self.size_px.tolist()}  # fmt: skip
        if self.centre_deg is not None:
            out["centre_deg"] = self.centre_deg.tolist()
            out["size_deg"] = self.size_deg.tolist()
        return out


def map_centres(
    maps: np.ndarray, x_px: np.ndarray, y_px: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Centroid ``[K, 2]`` above the median and RMS size ``[K]`` of ``maps [K, h, w]`` whose cells sit
    at pixel columns ``x_px [w]`` and rows ``y_px [h]`` (NaN for a flat map: no receptive field)."""
    k = maps.shape[0]
    flat = maps.reshape(k, -1).astype(np.float64)
    w = np.clip(flat - np.median(flat, axis=1, keepdims=True), 0.0, None)
    total = w.sum(1, keepdims=True)
    w = np.where(total > 0, w / np.where(total > 0, total, 1.0), np.nan)  # a flat map: no centre
    xx, yy = np.meshgrid(x_px, y_px)  # [h, w]
    cx, cy = w @ xx.ravel(), w @ yy.ravel()
    spread = w @ (xx.ravel() ** 2 + yy.ravel() ** 2) - cx**2 - cy**2
    return np.stack([cx, cy], 1), np.sqrt(np.clip(spread, 0.0, None))


def _result(method, probe, units, maps, x_px, y_px, linear=None) -> ReceptiveFieldResult:
    centre, size = map_centres(maps, x_px, y_px)
    deg = size_deg = None
    if probe.screen.width_deg is not None:
        deg = probe.screen.pixels_to_deg(centre)
        size_deg = size * probe.screen.deg_per_px
    return ReceptiveFieldResult(
        method, units, maps, x_px, y_px, centre, size, deg, size_deg, linear
    )


def sparse_noise_receptive_fields(
    probe: ModelProbe,
    stimulus: Stimulus,
    units: Sequence[int] | None = None,
    *,
    progress: bool = False,
) -> ReceptiveFieldResult:
    """Receptive fields of ``units`` (default: all) from spots (module docstring)."""
    _pixels_only(probe, "sparse-noise receptive fields")
    idx = probe.check_units(units)
    table = stimulus.conditions(probe.screen)
    if not table or not {"x_px", "y_px"} <= set(table[0]):
        raise InsilicoError(
            f"stimulus family {stimulus.config.type!r} gives no spot centres (x_px, y_px); "
            f"sparse-noise receptive fields need a spot family such as 'sparse_noise'"
        )
    responses = condition_responses(probe, stimulus, progress=progress, desc="sparse noise")
    xs = np.array(sorted({c["x_px"] for c in table}))
    ys = np.array(sorted({c["y_px"] for c in table}))
    maps = np.zeros((idx.size, ys.size, xs.size))
    for i, c in enumerate(table):
        maps[:, np.searchsorted(ys, c["y_px"]), np.searchsorted(xs, c["x_px"])] += np.abs(
            responses[i, idx]
        )
    return _result("sparse_noise", probe, idx, maps, xs, ys)


def gradient_receptive_fields(
    probe: ModelProbe,
    units: Sequence[int] | None = None,
    *,
    backgrounds: int = 4,
    contrast: float = 0.2,
    blur_px: float = 1.0,
    seed: int = 0,
    progress: bool = False,
) -> ReceptiveFieldResult:
    """Receptive fields of ``units`` (default: all) from gradients (module docstring); maps are
    smoothed with a Gaussian of ``blur_px`` pixels before their centres are taken."""
    _pixels_only(probe, "gradient receptive fields")
    if backgrounds < 1:
        raise InsilicoError(f"backgrounds must be at least 1, got {backgrounds}")
    idx = probe.check_units(units)
    h, w = probe.stimulus_shape[:2]
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((backgrounds, h, w)).astype(np.float32) * contrast
    energy = np.zeros((idx.size, h, w))
    linear = np.zeros((idx.size, h, w))
    bar = progress_bar(
        total=idx.size * backgrounds, desc="gradient RF", enabled=progress, leave=False
    )
    with probe.frozen():
        for start in range(0, idx.size, probe.batch_size):
            chunk = idx[start : start + probe.batch_size]
            for b in range(backgrounds):
                frames = _static(probe, torch.from_numpy(noise[b]).expand(len(chunk), h, w))
                frames.requires_grad_(True)
                evoked = probe.mean_response(frames)
                evoked[torch.arange(len(chunk)), torch.from_numpy(chunk)].sum().backward()
                grad = frames.grad.reshape(len(chunk), probe.n_frames, h, w, -1).sum(-1)
                energy[start : start + len(chunk)] += grad.pow(2).sum(1).numpy()
                linear[start : start + len(chunk)] += grad.sum(1).numpy() / backgrounds
                bar.update(len(chunk))
    bar.close()
    maps = _blur(energy, blur_px)
    return _result("gradient", probe, idx, maps, np.arange(w, dtype=float),
                   np.arange(h, dtype=float), linear)  # fmt: skip


def _static(probe: ModelProbe, images: torch.Tensor) -> torch.Tensor:
    """Static images ``[B, H, W]`` (contrast) as the probe's frames ``[B, F, H, W(, C)]``."""
    frames = images[:, None].expand(-1, probe.n_frames, -1, -1)
    if len(probe.stimulus_shape) == 3:
        frames = frames[..., None].expand(*frames.shape, probe.stimulus_shape[2])
    return frames.contiguous()


def _blur(maps: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return maps
    radius = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel = torch.from_numpy(kernel / kernel.sum())
    m = torch.from_numpy(maps)[:, None]
    m = F.conv2d(F.pad(m, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    m = F.conv2d(F.pad(m, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    return m[:, 0].numpy()


def _pixels_only(probe: ModelProbe, what: str) -> None:
    if probe.parametric:
        raise InsilicoError(
            f"{what} need a pixel stimulus (movie or images); the model's stimulus stream "
            f"{probe.stimulus_stream!r} gives parameters {probe.channel_names}"
        )
