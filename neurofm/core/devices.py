"""Host data on the model's device without a device synchronisation.

On a GPU, the host (Python) runs ahead of the device: it queues kernels and returns. Anything that
makes the host wait for the device stalls that queue: reading a device value (``.item()``,
``bool(t)``, ``.tolist()``, ``.cpu()``, ``nonzero``, a boolean-mask index, whose result size
depends on the data) and a blocking host-to-device copy (``t.to(device)`` of host data, or
``torch.tensor(list, device=...)``, which waits for every kernel queued before it). The model's
forward pass does neither. Its data-dependent choices (which entries are visible or targets,
which tokens an encoder keeps) are made on host data, the loader's numpy and CPU tensors, and the
indices it derives go to the device with these helpers.

Example:
    >>> import numpy as np, torch
    >>> x = torch.arange(6.0).view(3, 2)
    >>> take_rows(x, np.array([True, False, True]))
    tensor([[0., 1.],
            [4., 5.]])
    >>> to_device(np.array([2, 0]), x.device).dtype
    torch.int64
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["index_on", "take_rows", "to_device"]


def to_device(
    data: np.ndarray | Sequence | Tensor,
    device: torch.device | str,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Host data (a numpy array, a list of numbers or a CPU tensor) as a tensor on ``device``,
    copied without waiting for the device (``non_blocking``; from pageable memory CUDA stages the
    data before the call returns, so the source may be freed at once). On the CPU: no copy for a
    numpy array or tensor of the requested dtype."""
    tensor = data if isinstance(data, Tensor) else torch.as_tensor(data, dtype=dtype)
    if dtype is not None and tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    return tensor.to(device, non_blocking=True)


def index_on(keep: np.ndarray, device: torch.device | str) -> Tensor:
    """The positions where the host boolean mask ``keep`` holds, as an int64 tensor on
    ``device`` (``[keep.sum()]``)."""
    return to_device(np.flatnonzero(keep), device, torch.int64)


def take_rows(x: Tensor, keep: np.ndarray) -> Tensor:
    """The rows of ``x`` (``[n, ...]``) where the host boolean mask ``keep`` (``[n]``) holds: ``x``
    itself when every row is kept, else an ``index_select`` (no device synchronisation, unlike
    ``x[mask]`` with a device mask)."""
    if keep.shape != (x.shape[0],):
        raise ValueError(f"keep has shape {keep.shape}; expected ({x.shape[0]},), one per row")
    if keep.all():
        return x
    return x.index_select(0, index_on(keep, x.device))
