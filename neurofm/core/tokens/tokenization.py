"""Helpers plugins use to cut streams into tokens (composition, not inheritance)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from neurofm.core.devices import take_rows

__all__ = [
    "TemporalPatches",
    "check_unit_stream",
    "frames_hwc",
    "groups_with_valid",
    "patch_grid",
    "patch_spans",
    "patches_with_valid",
    "same_length_groups",
    "series_tokens",
    "series_tokens_batch",
    "temporal_patches",
]


class TemporalPatches(tuple):
    """``(values [n, P, C], valid [n, P, C], spans [n, 2])`` returned by :func:`temporal_patches`."""

    __slots__ = ()

    @property
    def values(self) -> Tensor:
        return self[0]

    @property
    def valid(self) -> Tensor:
        return self[1]

    @property
    def spans(self) -> Tensor:
        return self[2]


def temporal_patches(
    values: Tensor, valid: Tensor, times: Tensor, patch: int, period_s: float
) -> TemporalPatches:
    """Group consecutive samples into patches of ``patch`` samples (the last one padded as invalid).

    Shape:
        values, valid: ``[T, C]``; times: ``[T]`` -> values/valid ``[ceil(T / patch), patch, C]``,
        spans ``[ceil(T / patch), 2]`` (start of the first sample, end of the last real sample).
    """
    t, c = values.shape
    n = math.ceil(t / patch)
    pad = n * patch - t
    if pad:
        values = nn.functional.pad(values, (0, 0, 0, pad))
        valid = nn.functional.pad(valid, (0, 0, 0, pad), value=False)
    spans = patch_spans(times, patch, period_s)
    return TemporalPatches((values.reshape(n, patch, c), valid.reshape(n, patch, c), spans))


def patch_spans(times: Tensor, patch: int, period_s: float) -> Tensor:
    """Spans of the patches of :func:`temporal_patches`: the start of each patch's first sample
    and the end of its last real sample.

    Shape: times ``[..., T]`` -> ``[..., ceil(T / patch), 2]``.
    """
    t = times.shape[-1]
    n = math.ceil(t / patch)
    if t == 0:
        return times.new_zeros(*times.shape[:-1], 0, 2)
    starts = times[..., ::patch]
    ends = times[..., patch - 1 :: patch]  # the last sample of every full patch (a view)
    if ends.shape[-1] < n:  # a partial last patch ends at the last sample
        ends = torch.cat([ends, times[..., -1:]], dim=-1)
    return torch.stack([starts, ends + period_s], dim=-1)


def same_length_groups(streams) -> list[list[int]]:
    """Indices of ``streams`` grouped by (number of samples, sampling period), in order of first
    appearance: the streams of one group can be stacked and tokenised at once."""
    groups: dict[tuple[int, float], list[int]] = {}
    for i, stream in enumerate(streams):
        groups.setdefault((stream.n_samples, stream.period_s), []).append(i)
    return list(groups.values())


def series_tokens(embed: nn.Module, channels: int, patch: int, stream, what: str):
    """Tokens of a ``[T, channels]`` series: each patch of ``patch`` samples, with its validity flags,
    goes through ``embed`` (input width ``2 * patch * channels``). Patches with no valid sample are
    dropped; invalid samples are 0 in the values and flagged, never silently imputed.

    Returns:
        :class:`~neurofm.core.interfaces.Tokens` with ``[ceil(T / patch) - dropped, d_model]`` features.
    """
    from neurofm.core.interfaces import Tokens

    values, valid = stream.values, stream.valid
    if values.ndim != 2 or values.shape[1] != channels:
        raise ValueError(
            f"{what} encoder expects data [T, {channels}], found {tuple(values.shape)}; "
            f"set `channels` in its config to the stream's channel count"
        )
    p = temporal_patches(values, valid, stream.times, patch, stream.period_s)
    keep = patches_with_valid(stream.host_valid(), patch)  # [n], on the host
    x = take_rows(
        torch.cat([p.values.flatten(1), p.valid.flatten(1).to(values.dtype)], dim=1), keep
    )
    return Tokens(embed(x), take_rows(p.spans, keep))


def series_tokens_batch(embed: nn.Module, channels: int, patch: int, streams, what: str) -> list:
    """:func:`series_tokens` of several streams, the streams of one length stacked: one
    ``embed`` call per group instead of one per stream (same tokens)."""
    from neurofm.core.interfaces import Tokens

    out: list = [None] * len(streams)
    for group in same_length_groups(streams):
        members = [streams[i] for i in group]
        t = members[0].n_samples
        if t == 0 or len(members) == 1:
            for i, stream in zip(group, members, strict=True):
                out[i] = series_tokens(embed, channels, patch, stream, what)
            continue
        for stream in members:
            if stream.values.ndim != 2 or stream.values.shape[1] != channels:
                series_tokens(embed, channels, patch, stream, what)  # raises the shape error
        values = torch.stack([s.values for s in members])  # [G, T, C]
        valid = torch.stack([s.valid.reshape(t, -1).expand(t, channels) for s in members])
        n = math.ceil(t / patch)
        pad = n * patch - t
        values = nn.functional.pad(values, (0, 0, 0, pad)).view(len(members), n, patch * channels)
        valid = nn.functional.pad(valid, (0, 0, 0, pad), value=False)
        valid = valid.view(len(members), n, patch * channels)
        features = embed(torch.cat([values, valid.to(values.dtype)], dim=-1))  # [G, n, d]
        spans = patch_spans(torch.stack([s.times for s in members]), patch, members[0].period_s)
        keep = np.stack([patches_with_valid(s.host_valid(), patch) for s in members])  # [G, n]
        for g, i in enumerate(group):
            out[i] = Tokens(take_rows(features[g], keep[g]), take_rows(spans[g], keep[g]))
    return out


def groups_with_valid(valid: np.ndarray, size: int, axis: int = 0) -> np.ndarray:
    """Whether each group of ``size`` consecutive entries along ``axis`` of a host mask holds a
    valid one (the last group may be shorter): which tokens an encoder keeps, decided on the
    host (``StreamTensor.host_valid()``; docs/backbone.md, "The forward pass on a GPU").

    Shape: ``axis`` of length ``T`` becomes ``ceil(T / size)``; the other axes stay.
    """
    valid = np.moveaxis(valid, axis, 0)
    t = valid.shape[0]
    n = -(-t // size)
    padded = np.zeros((n * size, *valid.shape[1:]), dtype=bool)
    padded[:t] = valid
    return np.moveaxis(padded.reshape(n, size, *valid.shape[1:]).any(1), 0, axis)


def patches_with_valid(valid: np.ndarray, patch: int) -> np.ndarray:
    """Which patches of :func:`temporal_patches` hold a valid sample, from the stream's validity
    on the host.

    Shape: valid ``[T]`` or ``[T, C]`` -> ``[ceil(T / patch)]`` bool (any column counts).
    """
    any_column = valid if valid.ndim == 1 else valid.any(axis=tuple(range(1, valid.ndim)))
    return groups_with_valid(any_column, patch)


def patch_grid(
    what: str, height: int, width: int, patch_height: int, patch_width: int
) -> tuple[int, int]:
    """``(rows, cols)`` of patches tiling a ``height x width`` frame; ValueError if they do not."""
    if height % patch_height or width % patch_width:
        raise ValueError(
            f"{what} {height}x{width} is not divisible into patches of "
            f"{patch_height}x{patch_width}; choose patch sizes that divide the {what}"
        )
    return height // patch_height, width // patch_width


def frames_hwc(frames: Tensor, height: int, width: int, channels: int, what: str) -> Tensor:
    """Frames ``[T, H, W]`` or ``[T, H, W, C]`` as ``[T, H, W, C]``, checked against the config.

    Raises:
        ValueError: the frame size differs from the configured one (says which config fields to set).
    """
    if frames.ndim == 3:
        frames = frames.unsqueeze(-1)
    if tuple(frames.shape[1:]) != (height, width, channels):
        raise ValueError(
            f"{what} encoder expects frames of {height}x{width}x{channels} (height, width, "
            f"channels), found {tuple(frames.shape[1:])}; set height/width/channels in its config"
        )
    return frames


def check_unit_stream(
    values: Tensor, unit_embeddings: Tensor | None, d_model: int, what: str
) -> int:
    """Check a per-unit stream ``[T, N]`` and its unit identities ``[N, d_model]``; returns ``N``.

    Raises:
        ValueError: the data is not 2-D, or the identities are missing or of the wrong shape.
    """
    if values.ndim != 2:
        raise ValueError(f"{what} encoder expects data [T, N], found {tuple(values.shape)}")
    n_units = values.shape[1]
    if unit_embeddings is None or unit_embeddings.shape != (n_units, d_model):
        found = None if unit_embeddings is None else tuple(unit_embeddings.shape)
        raise ValueError(
            f"{what} encoder needs unit_embeddings of shape ({n_units}, {d_model}) "
            f"(one per unit column), found {found}"
        )
    return n_units
