"""Packed variable-length sequences: the batch layout of the backbone.

A batch mixes samples (time windows of different sessions) with different token counts. Instead of
padding every sample to the longest one, their tokens are concatenated along dim 0 and the
per-sample lengths are kept alongside. Attention backends use the lengths to keep attention inside
each sample.

Example:
    >>> import torch
    >>> a, b = torch.zeros(3, 8), torch.ones(0, 8)
    >>> ta, tb = torch.zeros(3, 2), torch.zeros(0, 2)
    >>> packed = PackedSequence.pack([a, b], [ta, tb])
    >>> packed.seqlens, packed.x.shape, packed.offsets.tolist()
    ((3, 0), torch.Size([3, 8]), [0, 3, 3])
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neurofm.core.devices import index_on, to_device

__all__ = [
    "PackedSequence", "sample_offsets", "take_samples", "token_index", "tokens_of_samples",
]  # fmt: skip


@dataclass(frozen=True)
class PackedSequence:
    """Variable-length sequences of B samples concatenated along dim 0 (no padding).

    Attributes:
        x: token features of all samples, sample after sample.
        times: token time spans ``(start, end)`` in seconds, float32, relative to each sample's
            window start.
        seqlens: number of tokens of each sample (a sample may have 0 tokens).

    Shape:
        - x: ``[total, d]``
        - times: ``[total, 2]``
        - seqlens: ``B`` ints summing to ``total``
    """

    x: Tensor
    times: Tensor
    seqlens: tuple[int, ...]

    def __post_init__(self) -> None:
        seqlens = tuple(int(n) for n in self.seqlens)
        object.__setattr__(self, "seqlens", seqlens)
        if any(n < 0 for n in seqlens):
            raise ValueError(f"seqlens must be >= 0, found {seqlens}")
        total = sum(seqlens)
        if self.x.shape[0] != total:
            raise ValueError(
                f"x has {self.x.shape[0]} tokens but seqlens {seqlens} sum to {total}; "
                "pack samples with PackedSequence.pack"
            )
        if self.times.shape != (total, 2):
            raise ValueError(
                f"times must have shape [{total}, 2] (start, end per token), "
                f"found {tuple(self.times.shape)}"
            )

    @property
    def batch_size(self) -> int:
        """Number of samples B."""
        return len(self.seqlens)

    @property
    def offsets(self) -> Tensor:
        """Cumulative token offsets; sample ``i`` is ``x[offsets[i]:offsets[i+1]]``.

        Shape:
            ``[B + 1]``, int64, on the device of ``x``.
        """
        return to_device(np.cumsum((0, *self.seqlens)), self.x.device, torch.int64)

    def split(self) -> list[Tensor]:
        """Per-sample token features (views of ``x``).

        Shape:
            B tensors ``[seqlens[i], d]``.
        """
        return list(torch.split(self.x, list(self.seqlens), dim=0))

    def split_times(self) -> list[Tensor]:
        """Per-sample time spans (views of ``times``).

        Shape:
            B tensors ``[seqlens[i], 2]``.
        """
        return list(torch.split(self.times, list(self.seqlens), dim=0))

    def with_x(self, x: Tensor) -> PackedSequence:
        """The same packing (times, seqlens) with new token features.

        Shape:
            x: ``[total, d_new]``.
        """
        return PackedSequence(x=x, times=self.times, seqlens=self.seqlens)

    @staticmethod
    def pack(xs: Sequence[Tensor], times: Sequence[Tensor]) -> PackedSequence:
        """Concatenate per-sample tokens and time spans.

        Args:
            xs: B tensors ``[n_i, d]`` (``n_i`` may be 0).
            times: B tensors ``[n_i, 2]`` of ``(start, end)`` seconds.

        Shape:
            Returns x ``[sum n_i, d]``, times ``[sum n_i, 2]`` (float32).
        """
        if len(xs) != len(times):
            raise ValueError(f"got {len(xs)} feature tensors but {len(times)} time tensors")
        if len(xs) == 0:
            raise ValueError("cannot pack an empty batch: pass at least one sample")
        for i, (x, t) in enumerate(zip(xs, times, strict=True)):
            if x.dim() != 2 or t.shape != (x.shape[0], 2):
                raise ValueError(
                    f"sample {i}: expected x [n, d] and times [n, 2], "
                    f"found x {tuple(x.shape)} and times {tuple(t.shape)}"
                )
        x = torch.cat(list(xs), dim=0)
        t = torch.cat([ti.to(dtype=torch.float32) for ti in times], dim=0)
        return PackedSequence(x=x, times=t, seqlens=tuple(int(xi.shape[0]) for xi in xs))


def sample_offsets(seqlens: Sequence[int]) -> list[int]:
    """Cumulative token offsets as Python ints. Shape: ``B`` lengths -> ``B + 1`` offsets."""
    return list(itertools.accumulate(seqlens, initial=0))


def token_index(
    offsets: Sequence[int], samples: Sequence[int], n: int, device: torch.device
) -> Tensor:
    """Packed indices of the first ``n`` tokens of each listed sample, sample after sample,
    computed on the host and sent in one non-blocking copy.

    Shape:
        ``[len(samples) * n]`` int64.
    """
    starts = np.asarray([offsets[i] for i in samples], dtype=np.int64)
    return to_device(np.add.outer(starts, np.arange(n, dtype=np.int64)).reshape(-1), device)


def take_samples(
    x: Tensor | None,
    offsets: Sequence[int],
    samples: Sequence[int],
    n: int,
    index: Tensor | None = None,
) -> Tensor | None:
    """The ``n`` tokens of each listed sample: a view for one sample, a gather for several
    (by ``index``, their :func:`token_index`, where the caller has it already).

    Shape:
        x ``[total, ...]`` -> ``[len(samples) * n, ...]`` (``None`` passes through).
    """
    if x is None:
        return None
    if len(samples) == 1:
        return x.narrow(0, offsets[samples[0]], n)
    if index is None:
        index = token_index(offsets, samples, n, x.device)
    return x.index_select(0, index)


def tokens_of_samples(active: Tensor, seqlens: Sequence[int], device: torch.device) -> Tensor:
    """Packed indices of all tokens of the samples flagged in ``active``.

    Shape:
        active ``[B]`` bool -> ``[n_active_tokens]`` int64.
    """
    keep = np.repeat(active.cpu().numpy(), np.asarray(seqlens, dtype=np.int64))
    return index_on(keep, device)
