"""Stimulus families for in-silico experiments: a plugin kind (entry-point group ``neurofm.stimuli``).

A :class:`Stimulus` is a table of *conditions* (one dict of parameters per condition) and a
renderer. For pixel encoders (movies, images) it draws each condition as contrast frames ``c`` in
``[-1, 1]`` relative to the mean luminance (the probe maps them to the stream's units as ``gray *
(1 + c)``, ``gray`` the stream's train-tier mean); for a parametric encoder it gives the
condition's parameter channels directly (:meth:`Stimulus.parameters`, optional).

Built-ins, registered through entry points like any third-party family:

- ``gratings``: full-field sinusoidal gratings over direction x spatial frequency x temporal
  frequency x contrast, static ones also at several spatial phases (the simulator's convention:
  the wave vector points along the direction; orientation is direction mod 180; screen x right,
  y up, in degrees).
- ``sparse_noise``: one light or dark square at a time on a grid of the screen.

A lab adds its own family (natural-image mixtures, another grating renderer) as a class deriving
from :class:`Stimulus` with a tagged ``Config``, declared under ``[project.entry-points.
"neurofm.stimuli"]``; ``neurofm insilico --stimulus NAME`` then uses it.

Example:
    >>> from neurofm import registry
    >>> from neurofm.insilico import Screen
    >>> gratings = registry.stimuli.get("gratings")()
    >>> screen = Screen(height=36, width=64, width_deg=120.0)
    >>> len(gratings.conditions(screen))  # 72 static at 8 phases each, 72 drifting
    648
    >>> gratings.frames(screen, [0, 1], np.arange(3) / 30.0).shape
    (2, 3, 36, 64)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from neurofm.core.config import PluginConfig
from neurofm.errors import NeurofmError

__all__ = [
    "Gratings",
    "GratingsConfig",
    "Screen",
    "SparseNoise",
    "SparseNoiseConfig",
    "Stimulus",
    "StimulusFitError",
]


class StimulusFitError(NeurofmError, ValueError):
    """A stimulus family that cannot drive the model's stimulus encoder (the message says why)."""


@dataclass(frozen=True)
class Screen:
    """The stimulus screen: ``height x width`` pixels; ``width_deg`` its horizontal extent in
    visual degrees (square pixels), or None when the geometry is not known.

    Pixel ``(row, col)`` has its centre at ``x = (col + 0.5 - width / 2) * deg_per_px`` (right)
    and ``y = -(row + 0.5 - height / 2) * deg_per_px`` (up), the simulator's convention.
    """

    height: int
    width: int
    width_deg: float | None = None

    @property
    def deg_per_px(self) -> float:
        if self.width_deg is None:
            raise StimulusFitError(
                "the screen's size in degrees is not known; pass --screen-width-deg (the "
                "horizontal extent of the screen in visual degrees) to render stimuli in degrees"
            )
        return self.width_deg / self.width

    def pixel_centres_deg(self) -> tuple[np.ndarray, np.ndarray]:
        """``x [W]`` (increasing right) and ``y [H]`` (decreasing down the rows), degrees."""
        cols = np.arange(self.width) + 0.5 - self.width / 2
        rows = np.arange(self.height) + 0.5 - self.height / 2
        return cols * self.deg_per_px, -rows * self.deg_per_px

    def pixels_to_deg(self, xy_px: np.ndarray) -> np.ndarray:
        """Pixel coordinates ``[..., 2]`` (column, row; 0 = the first pixel's centre) to degrees
        ``[..., 2]`` (x right, y up)."""
        xy = np.asarray(xy_px, np.float64)
        x = (xy[..., 0] + 0.5 - self.width / 2) * self.deg_per_px
        y = -(xy[..., 1] + 0.5 - self.height / 2) * self.deg_per_px
        return np.stack([x, y], -1)


class Stimulus(ABC):
    """Interface of a stimulus family. Subclasses set ``Config`` (a tagged :class:`PluginConfig`).

    Shape: ``frames(screen, indices [B], times [T]) -> [B, T, H, W]`` float32 contrast in
    ``[-1, 1]``, ``times`` in seconds since the stimulus onset; ``parameters(names [P], indices
    [B], times [T]) -> [B, T, P]`` float32.
    """

    Config: ClassVar[type[PluginConfig]]

    def __init__(self, config: PluginConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def conditions(self, screen: Screen) -> list[dict[str, float]]:
        """One dict of parameters per condition (the same keys for every condition)."""

    @abstractmethod
    def frames(self, screen: Screen, indices: Sequence[int], times: np.ndarray) -> np.ndarray:
        """Contrast frames of conditions ``indices`` at ``times`` after the onset."""

    def parameters(
        self, names: Sequence[str], screen: Screen, indices: Sequence[int], times: np.ndarray
    ) -> np.ndarray:
        """Parameter channels ``names`` of conditions ``indices`` (for a parametric encoder)."""
        raise StimulusFitError(
            f"stimulus family {self.config.type!r} has no parametric form; the model's stimulus "
            f"encoder reads parameter channels {list(names)}. Use a family that gives them "
            f"(built-in: 'gratings') or a model with a pixel stimulus encoder."
        )


class GratingsConfig(PluginConfig):
    """The condition grid: every combination of ``directions`` evenly spaced directions (from 0
    degrees), ``spatial_frequencies_cpd``, ``temporal_frequencies_hz`` and ``contrasts``
    (Michelson). ``phase_deg``: starting phase of the carrier. ``phases``: a static grating
    (temporal frequency 0) is shown at this many spatial phases, evenly spaced from
    ``phase_deg`` (each a condition with its ``phase_deg``); a drifting one sweeps every phase
    and is shown once.

    The default shows each grating static, at 8 phases, and drifting at 2 Hz: a simple cell's
    response to a static grating depends on where the bars fall on its receptive field, so the
    tuning experiment takes its largest over the phases (the orientation of a neuron), and
    direction needs motion (the drifting ones). BENCHMARKS.md, "In-silico experiments", measures
    what the static gratings add."""

    type: Literal["gratings"] = "gratings"
    directions: int = Field(12, ge=2)
    spatial_frequencies_cpd: list[float] = Field([0.025, 0.045, 0.08], min_length=1)
    temporal_frequencies_hz: list[float] = Field([0.0, 2.0], min_length=1)
    contrasts: list[float] = Field([0.5, 1.0], min_length=1)
    phase_deg: float = 0.0
    phases: int = Field(8, ge=1)


class Gratings(Stimulus):
    """Drifting sinusoidal gratings ``c = contrast * cos(2 pi sf (x cos d + y sin d) - phase(t))``
    with ``phase(t) = phase_deg + 360 tf t`` degrees (a temporal frequency of 0 is static)."""

    Config = GratingsConfig
    #: parameter names in the simulator's grating channels (``neurofm simulate --stimulus grating``)
    CHANNELS = (
        "orientation", "direction", "spatial_frequency_cpd", "temporal_frequency_hz",
        "contrast", "phase",
    )  # fmt: skip

    def conditions(self, screen: Screen) -> list[dict[str, float]]:
        c = self.config
        directions = np.arange(c.directions) * 360.0 / c.directions
        static = [(c.phase_deg + 360.0 * i / c.phases) % 360.0 for i in range(c.phases)]
        return [
            {
                "direction": float(d),
                "orientation": float(d % 180.0),
                "spatial_frequency_cpd": sf,
                "temporal_frequency_hz": tf,
                "contrast": k,
                "phase_deg": float(phase),
            }
            for sf in c.spatial_frequencies_cpd
            for tf in c.temporal_frequencies_hz
            for k in c.contrasts
            for phase in (static if tf == 0 else [c.phase_deg])
            for d in directions
        ]

    def frames(self, screen: Screen, indices: Sequence[int], times: np.ndarray) -> np.ndarray:
        table = self.conditions(screen)
        x, y = screen.pixel_centres_deg()
        times = np.asarray(times, np.float64)
        out = np.empty((len(indices), times.size, screen.height, screen.width), np.float32)
        for b, i in enumerate(indices):
            p = table[i]
            d = np.deg2rad(p["direction"])
            along = x[None, :] * np.cos(d) + y[:, None] * np.sin(d)  # [H, W] degrees
            phase = np.deg2rad(p["phase_deg"] + 360.0 * p["temporal_frequency_hz"] * times)
            carrier = 2 * np.pi * p["spatial_frequency_cpd"] * along[None] - phase[:, None, None]
            out[b] = p["contrast"] * np.cos(carrier)
        return out

    def parameters(
        self, names: Sequence[str], screen: Screen, indices: Sequence[int], times: np.ndarray
    ) -> np.ndarray:
        unknown = [n for n in names if n not in self.CHANNELS]
        if unknown:
            raise StimulusFitError(
                f"the model's parametric encoder reads channels {list(names)}; gratings give "
                f"{list(self.CHANNELS)} (not {unknown}). Rename the channels on import or add a "
                f"stimulus family that gives them."
            )
        table = self.conditions(screen)
        times = np.asarray(times, np.float64)
        out = np.empty((len(indices), times.size, len(names)), np.float32)
        for b, i in enumerate(indices):
            p = table[i]
            phase = (p["phase_deg"] + 360.0 * p["temporal_frequency_hz"] * times) % 360.0
            values = {**p, "phase": phase}
            for j, name in enumerate(names):
                out[b, :, j] = values[name]
        return out


class SparseNoiseConfig(PluginConfig):
    """A ``rows x columns`` grid of squares tiling the screen, each shown alone as light
    (``+contrast``) and, with ``polarities`` "both", dark (``-contrast``) on the gray screen."""

    type: Literal["sparse_noise"] = "sparse_noise"
    rows: int = Field(12, ge=1)
    columns: int = Field(21, ge=1)
    contrast: float = Field(1.0, gt=0, le=1)
    polarities: Literal["both", "light", "dark"] = "both"


class SparseNoise(Stimulus):
    """One square per condition: parameters ``row``, ``column`` (grid cell), ``polarity`` (+1 /
    -1) and the square's centre ``x_px``, ``y_px`` in pixels (column, row)."""

    Config = SparseNoiseConfig

    def _edges(self, screen: Screen) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        if c.rows > screen.height or c.columns > screen.width:
            raise StimulusFitError(
                f"sparse noise grid {c.rows}x{c.columns} is finer than the screen "
                f"{screen.height}x{screen.width} pixels; choose at most one cell per pixel"
            )
        rows = np.round(np.linspace(0, screen.height, c.rows + 1)).astype(int)
        cols = np.round(np.linspace(0, screen.width, c.columns + 1)).astype(int)
        return rows, cols

    def conditions(self, screen: Screen) -> list[dict[str, float]]:
        rows, cols = self._edges(screen)
        signs = {"both": (1.0, -1.0), "light": (1.0,), "dark": (-1.0,)}[self.config.polarities]
        return [
            {
                "row": float(r),
                "column": float(k),
                "polarity": s,
                "x_px": (cols[k] + cols[k + 1] - 1) / 2,
                "y_px": (rows[r] + rows[r + 1] - 1) / 2,
            }
            for s in signs
            for r in range(self.config.rows)
            for k in range(self.config.columns)
        ]

    def frames(self, screen: Screen, indices: Sequence[int], times: np.ndarray) -> np.ndarray:
        rows, cols = self._edges(screen)
        table = self.conditions(screen)
        out = np.zeros((len(indices), len(times), screen.height, screen.width), np.float32)
        for b, i in enumerate(indices):
            p = table[i]
            r, k = int(p["row"]), int(p["column"])
            out[b, :, rows[r] : rows[r + 1], cols[k] : cols[k + 1]] = (
                p["polarity"] * self.config.contrast
            )
        return out
