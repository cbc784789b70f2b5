"""Image encoder with the shared convolutional core: flashed images on the stimulus path.

An image stream holds one frame per presentation at its onset (see :mod:`.image`). For the core
and the readout's temporal filter a presentation is not one instant but a stretch of time, so the
encoder first lays the presentations onto a regular grid of ``step_s`` steps: step ``j`` (at
``t_0 + j * step_s``, ``t_0`` the first onset in the window) shows the image on screen at that
time (the last onset at or before it; an onset between steps counts from the next step; a zero, that is mean-luminance, frame once ``duration_s``
has passed since that onset). The stepped frames then take the path of the ``movie_core`` encoder:
one batched core call gives each sample's :class:`~neurofm.FeatureMap` at the step times, whose
causal temporal convolutions see each image's onset, and pooled tokens for the backbone.

Steps before the first onset of a window are not rendered (what was shown before it is not in the
sample); the last presentation lasts ``duration_s``, or else the stream's sampling period (as the
``image`` encoder's last token), at most ``max_last_s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from neurofm.core.devices import to_device
from neurofm.core.interfaces import PositionedOutput, StreamTensor
from neurofm.plugins.modalities.movie_core import MovieCoreConfig, MovieCoreEncoder

__all__ = ["ImageCoreConfig", "ImageCoreEncoder"]

_SNAP = 1e-4  # in steps: float32 onsets that fall on a step stay on it


class ImageCoreConfig(MovieCoreConfig):
    """The ``movie_core`` settings plus how presentations become steps. Frames ``[K, H, W]`` (or
    ``[K, H, W, C]``), one per presentation."""

    type: Literal["image_core"] = "image_core"  # type: ignore[assignment]
    step_s: float = Field(0.05, gt=0, description="time between the core's steps (seconds)")
    duration_s: float | None = Field(
        None, gt=0, description="on-screen time of each image; None: until the next onset"
    )
    max_last_s: float = Field(
        2.0, gt=0, description="longest the last presentation of a window is rendered (seconds)"
    )


class ImageCoreEncoder(MovieCoreEncoder):
    """Image presentations -> stepped frames -> core feature maps and tokens (as ``movie_core``).

    Shape:
        stream.values ``[K, H, W]`` or ``[K, H, W, C]`` (K presentations) -> features
        ``[T', core.channels, H', W']`` at ``T'`` steps of ``step_s`` (see the module docstring;
        divided by ``frame_pool``) and tokens as :class:`MovieCoreEncoder` gives them.
    """

    Config = ImageCoreConfig

    def encode_batch(self, streams: Sequence[StreamTensor]) -> list[PositionedOutput]:
        return super().encode_batch([self.render(s) for s in streams])

    def render(self, stream: StreamTensor) -> StreamTensor:
        """The presentations of ``stream`` on the regular grid of ``step_s`` steps."""
        c = self.config
        onsets = stream.times
        if stream.n_samples == 0:
            return StreamTensor(stream.values, stream.valid, onsets, c.step_s)
        last = min(c.duration_s or stream.period_s, c.max_last_s)  # of the last presentation
        # the step layout depends on the onsets: worked out on the host (the onsets' host copy,
        # in float32 as the device would), so rendering never waits for the device.
        # An image appears at the first step at or after its onset (causal: a step never shows
        # an image that is not yet on screen); the grid covers [first onset, last onset + last)
        on = stream.host_times().astype(np.float32)
        step, snap = np.float32(c.step_s), np.float32(_SNAP)
        first = np.ceil((on - on[0]) / step - snap).astype(np.int64)  # [K]
        span = float(on[-1] - on[0] + np.float32(last))
        steps = max(1, math.ceil(span / c.step_s - _SNAP))
        index = np.arange(steps)
        shown = np.searchsorted(first, index, side="right") - 1  # [T'] >= 0
        on_screen = np.ones(steps, dtype=bool)
        if c.duration_s is not None:
            on_screen = index < first[shown] + max(1, math.ceil(c.duration_s / c.step_s - _SNAP))
        valid = stream.host_valid().reshape(stream.n_samples, -1).all(1)[shown]
        device = stream.values.device
        times = onsets[0] + to_device(index, device).to(onsets.dtype) * c.step_s
        expand = (-1,) + (1,) * (stream.values.ndim - 1)
        shown_on = to_device(shown, device)
        visible = to_device(on_screen, device, stream.values.dtype).view(expand)
        frames = stream.values.index_select(0, shown_on) * visible
        times_host = on[0] + index.astype(np.float32) * step
        return StreamTensor(
            frames, to_device(valid, device), times, c.step_s,
            valid_host=valid, times_host=times_host,
        )  # fmt: skip
