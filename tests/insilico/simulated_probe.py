"""A probe whose neurons are the simulator's own (Gabor filters, simple/complex, softplus rate,
running gain): the in-silico methods must recover its known parameters."""

from __future__ import annotations

import copy
from contextlib import contextmanager

import numpy as np
import torch

from neurofm.core.data.simulation.neurons import (
    RUNNING_HALF_SPEED_CM_S,
    gabor_pair,
    sample_population,
    sample_retinotopy,
)
from neurofm.core.data.simulation.stimulus import ScreenGeometry
from neurofm.insilico.probe import InsilicoError
from neurofm.insilico.stimuli import Screen


class SimulatedProbe:
    """The :class:`~neurofm.insilico.ModelProbe` surface the experiments use, answered by ``n``
    simulated neurons on a ``height x width`` screen of ``width_deg`` degrees."""

    parametric = False
    batch_size = 32
    stimulus_stream = "movie"
    channel_names: tuple[str, ...] = ()

    def __init__(self, n=24, height=36, width=64, width_deg=120.0, n_frames=6, seed=0):
        rng = np.random.default_rng(seed)
        retinotopy = sample_retinotopy(rng)
        self.pop = sample_population(rng, n, retinotopy, np.zeros(2), frame_period_s=1 / 30)
        self.screen = Screen(height, width, width_deg)
        x, y = ScreenGeometry(height, width, width_deg).pixel_centres_deg()
        bank = gabor_pair(self.pop, x, y)  # [H, W, 2, N]
        self.even = torch.from_numpy(bank[:, :, 0]).double()
        self.odd = torch.from_numpy(bank[:, :, 1]).double()
        self.n_units, self.n_frames = n, n_frames
        self.stimulus_shape = (height, width)
        self.frame_times = np.arange(n_frames) / 30.0
        self.speed = 0.0
        self.complex = torch.from_numpy(self.pop.is_complex)
        # scale of a typical drive, so the rate's nonlinearity sits where the simulator's does
        self.scale = float(torch.linalg.norm(self.even.reshape(-1, n), dim=0).mean()) * 0.3

    def check_units(self, units):
        if units is None:
            return np.arange(self.n_units)
        idx = np.asarray(list(units))
        if ((idx < 0) | (idx >= self.n_units)).any():
            raise InsilicoError(f"neurons {idx.tolist()} do not exist")
        return idx

    @contextmanager
    def frozen(self):
        yield

    def held(self, hold):
        other = copy.copy(self)
        other.speed = float(hold["running"][0])
        return other

    def describe_hold(self):
        return {"running": [self.speed]}

    def _rate(self, frames: torch.Tensor) -> torch.Tensor:
        f = frames.double()
        e = torch.einsum("bthw,hwn->btn", f, self.even) / self.scale
        o = torch.einsum("bthw,hwn->btn", f, self.odd) / self.scale
        drive = torch.where(self.complex, torch.sqrt(e**2 + o**2 + 1e-12), e)
        threshold = torch.from_numpy(self.pop.threshold)
        rate = torch.nn.functional.softplus(drive - threshold)
        running = self.speed / (self.speed + RUNNING_HALF_SPEED_CM_S)
        gain = torch.exp(torch.from_numpy(self.pop.behaviour_gain[:, 0]) * running)
        return rate * gain

    def mean_response(self, frames: torch.Tensor) -> torch.Tensor:
        return self._rate(frames).mean(1).to(frames.dtype)

    def evoked(self, frames: torch.Tensor) -> torch.Tensor:
        gray = self.mean_response(torch.zeros(1, *frames.shape[1:], dtype=frames.dtype))
        return self.mean_response(frames) - gray

    def true_centre_deg(self) -> np.ndarray:
        return self.pop.rf_center_deg

    def true_orientation_deg(self) -> np.ndarray:
        return np.rad2deg(self.pop.orientation) % 180.0
