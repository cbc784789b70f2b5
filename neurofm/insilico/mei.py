"""Most exciting inputs (MEIs): the stimulus that drives a neuron's predicted response most.

Gradient ascent on the neuron's evoked response (:meth:`ModelProbe.evoked`) over a contrast image
(``static``: one image shown for the whole stimulus period) or a short movie (one image per
frame), batched over neurons (each window of a batch optimises its own neuron). The stimulus
stays in a norm ball, ``RMS contrast <= norm`` (projected after every step) and inside ``[-1,
1]``; the gradient is smoothed with a Gaussian of ``blur_px`` pixels (pixel parametrisation) or
the image is parametrised by its Fourier coefficients scaled by ``1 / f`` (``fourier``), which
favours smooth, natural-looking solutions.

:func:`image_responses` shows a set of images (e.g. frames of recorded test movies) the same way,
so an MEI can be compared with the best of them; :func:`image_orientation` gives an image's
dominant orientation (a second estimate of a neuron's preferred orientation, from its MEI).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from neurofm.core.progress import progress as progress_bar
from neurofm.insilico.probe import InsilicoError, ModelProbe
from neurofm.insilico.receptive_fields import _blur, _pixels_only, _static

__all__ = ["MEIResult", "image_orientation", "image_responses", "most_exciting_inputs"]


@dataclass
class MEIResult:
    """MEIs of ``units``.

    Shape: ``images [K, H, W]`` (static) or ``[K, F, H, W]`` (movie), contrast; ``activation [K]``
    each neuron's evoked response to its MEI; ``trace [steps, K]`` the activation during ascent.
    """

    units: np.ndarray
    images: np.ndarray
    activation: np.ndarray
    trace: np.ndarray
    norm: float
    kind: str
    parametrisation: str

    def summary(self) -> dict[str, list]:
        return {"unit": self.units.tolist(), "activation": self.activation.tolist()}


def most_exciting_inputs(
    probe: ModelProbe,
    units: Sequence[int] | None = None,
    *,
    kind: Literal["static", "movie"] = "static",
    parametrisation: Literal["pixel", "fourier"] = "pixel",
    steps: int = 30,
    lr: float = 0.1,
    norm: float = 0.3,
    blur_px: float = 1.0,
    seed: int = 0,
    progress: bool = False,
) -> MEIResult:
    """MEIs of ``units`` (default: all); see the module docstring."""
    _pixels_only(probe, "most exciting inputs")
    if steps < 1 or norm <= 0 or lr <= 0:
        raise InsilicoError(f"need steps >= 1, norm > 0 and lr > 0; got {steps}, {norm}, {lr}")
    idx = probe.check_units(units)
    h, w = probe.stimulus_shape[:2]
    frames = probe.n_frames if kind == "movie" else 1
    images = np.zeros((idx.size, frames, h, w), np.float32)
    trace = np.zeros((steps, idx.size))
    bar = progress_bar(total=steps * idx.size, desc="MEI", enabled=progress, leave=False)
    gen = torch.Generator().manual_seed(seed)
    with probe.frozen():
        for start in range(0, idx.size, probe.batch_size):
            chunk = torch.from_numpy(idx[start : start + probe.batch_size])
            param = _Parametrisation(parametrisation, (len(chunk), frames, h, w), norm, gen)
            opt = torch.optim.Adam([param.weights], lr=lr)
            for step in range(steps):
                x = param.image()
                evoked = probe.evoked(_frames(probe, x, kind))[torch.arange(len(chunk)), chunk]
                opt.zero_grad()
                (-evoked.sum()).backward()
                if parametrisation == "pixel" and blur_px > 0:
                    g = param.weights.grad
                    g.copy_(torch.from_numpy(_blur(g.reshape(-1, h, w).double().numpy(),
                                                   blur_px)).reshape(g.shape))  # fmt: skip
                opt.step()
                param.project()
                trace[step, start : start + len(chunk)] = evoked.detach().numpy()
                bar.update(len(chunk))
            with torch.no_grad():
                x = param.image()
                images[start : start + len(chunk)] = x.numpy()
    bar.close()
    activation = _activation(probe, images, idx, kind)
    out = images if kind == "movie" else images[:, 0]
    return MEIResult(idx, out, activation, trace, norm, kind, parametrisation)


def image_responses(probe: ModelProbe, images: np.ndarray, *, progress: bool = False) -> np.ndarray:
    """Evoked responses ``[M, N]`` to static contrast images ``[M, H, W]`` (each shown for the
    whole stimulus period)."""
    _pixels_only(probe, "image responses")
    out = np.empty((images.shape[0], probe.n_units))
    bar = progress_bar(total=images.shape[0], desc="images", enabled=progress, leave=False)
    with probe.frozen(), torch.no_grad():
        for start in range(0, images.shape[0], probe.batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start : start + probe.batch_size]))
            out[start : start + chunk.shape[0]] = probe.evoked(_static(probe, chunk)).numpy()
            bar.update(chunk.shape[0])
    bar.close()
    return out


def image_orientation(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dominant orientation of images ``[K, H, W]``: the doubled-angle mean of their Fourier
    power over wave-vector directions (degrees in ``[0, 180)``, x right / y up, the gratings'
    convention), and its strength in ``[0, 1]`` (1: a single orientation). Square pixels."""
    x = np.asarray(images, np.float64)
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    h, w = x.shape[-2:]
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    angle = np.arctan2(-fy, fx)  # rows grow downwards, y upwards
    power = np.abs(np.fft.fft2(x)) ** 2
    vector = (power * np.exp(2j * angle)).reshape(x.shape[0], -1).sum(1)
    total = np.maximum(power.reshape(x.shape[0], -1).sum(1), 1e-300)
    return (np.rad2deg(np.angle(vector)) / 2) % 180.0, np.abs(vector) / total


def _frames(probe: ModelProbe, x: torch.Tensor, kind: str) -> torch.Tensor:
    """``x [B, 1 or F, H, W]`` as the probe's frames."""
    if kind == "static":
        return _static(probe, x[:, 0])
    if len(probe.stimulus_shape) == 3:
        x = x[..., None].expand(*x.shape, probe.stimulus_shape[2])
    return x


def _activation(probe: ModelProbe, images: np.ndarray, idx: np.ndarray, kind: str) -> np.ndarray:
    out = np.empty(idx.size)
    with torch.no_grad():
        for start in range(0, idx.size, probe.batch_size):
            x = torch.from_numpy(images[start : start + probe.batch_size])
            evoked = probe.evoked(_frames(probe, x, kind))
            out[start : start + x.shape[0]] = evoked[
                torch.arange(x.shape[0]), torch.from_numpy(idx[start : start + x.shape[0]])
            ].numpy()
    return out


class _Parametrisation:
    """The optimised image ``[B, F, H, W]``: pixels, or ``1/f``-scaled Fourier coefficients."""

    def __init__(self, kind: str, shape: tuple[int, ...], norm: float, gen: torch.Generator):
        self.kind, self.shape, self.norm = kind, shape, norm
        h, w = shape[-2:]
        if kind == "pixel":
            self.weights = (torch.randn(shape, generator=gen) * 0.01).requires_grad_(True)
        elif kind == "fourier":
            fy = torch.fft.fftfreq(h)[:, None]
            fx = torch.fft.rfftfreq(w)[None, :]
            self.scale = 1.0 / torch.sqrt(fx**2 + fy**2).clamp(min=1.0 / max(h, w))
            self.scale[0, 0] = 0.0  # no mean: contrast around gray
            size = (*shape[:-1], w // 2 + 1, 2)
            self.weights = (torch.randn(size, generator=gen) * 0.01).requires_grad_(True)
        else:
            raise InsilicoError(f"unknown parametrisation {kind!r}; choose 'pixel' or 'fourier'")

    def _raw(self) -> torch.Tensor:
        if self.kind == "pixel":
            return self.weights
        coeffs = torch.view_as_complex(self.weights) * self.scale
        return torch.fft.irfft2(coeffs, s=self.shape[-2:], norm="ortho")

    def image(self) -> torch.Tensor:
        x = self._raw()
        rms = x.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt()
        x = x * torch.clamp(self.norm / rms.clamp(min=1e-8), max=1.0)  # inside the norm ball
        return x.clamp(-1.0, 1.0)

    @torch.no_grad()
    def project(self) -> None:
        """Keep the weights where the image they give is inside the ball (so steps stay
        effective)."""
        x = self._raw()
        rms = x.pow(2).mean(dim=(-2, -1), keepdim=True).sqrt()
        factor = torch.clamp(self.norm / rms.clamp(min=1e-8), max=1.0)
        if self.kind == "pixel":
            self.weights.mul_(factor).clamp_(-1.0, 1.0)
        else:
            self.weights.mul_(factor[..., None])
