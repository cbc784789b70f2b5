"""Attention backends over packed variable-length samples.

Every attention call of the backbone goes through one :class:`AttentionBackend` (``reference``,
``sdpa``, ``xformers`` or ``auto``; see each class). Inputs are packed as in ``PackedSequence``;
attention never crosses samples. Queries whose sample has no (allowed) keys get zeros in every
backend, never NaN.

Example:
    >>> import torch
    >>> q = k = v = torch.randn(5, 2, 8)
    >>> get_backend("sdpa")(q, k, v, (3, 2), (3, 2)).shape
    torch.Size([5, 2, 8])
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from neurofm.core.backbone.packing import sample_offsets, take_samples, token_index
from neurofm.core.backbone.packing import tokens_of_samples as tokens_of
from neurofm.core.devices import to_device

__all__ = [
    "BACKEND_NAMES", "AttentionBackend", "AutoBackend", "BackendUnavailableError",
    "ReferenceBackend", "SdpaBackend", "XformersBackend", "get_backend",
    "time_local_mask", "xformers_available",
]  # fmt: skip

BACKEND_NAMES: Final = ("auto", "sdpa", "reference", "xformers")


class BackendUnavailableError(RuntimeError):
    """The requested attention backend cannot run here (missing package or wrong device)."""


def time_local_mask(q_times: Tensor, kv_times: Tensor) -> Tensor:
    """Time-local attention: a query attends to keys whose ``[start, end)`` span overlaps its own.

    Shape:
        q_times ``[..., n_q, 2]``, kv_times ``[..., n_kv, 2]`` -> bool ``[..., n_q, n_kv]``.
    """
    q_start, q_end = q_times[..., :, None, 0], q_times[..., :, None, 1]
    k_start, k_end = kv_times[..., None, :, 0], kv_times[..., None, :, 1]
    return (k_start < q_end) & (q_start < k_end)


@functools.cache
def xformers_available() -> bool:
    """Whether ``xformers.ops`` imports (checked once, on first call; never at module import)."""
    try:
        import xformers.ops  # noqa: F401
    except Exception:
        return False
    return True


class AttentionBackend(ABC):
    """Multi-head attention over packed samples; one instance serves every attention call.

    Args of ``__call__``:
        q, k, v: packed per-head queries, keys, values.
        q_seqlens, kv_seqlens: tokens per sample (same number of samples; entries may be 0).
        q_times, kv_times: token spans ``(start, end)`` in seconds; required when ``local=True``.
        local: a query attends only to keys of its sample whose span overlaps its own.

    Shape:
        - q: ``[total_q, H, Dh]``; k, v: ``[total_kv, H, Dh]``
        - q_times: ``[total_q, 2]``; kv_times: ``[total_kv, 2]``
        - output: ``[total_q, H, Dh]``
    """

    name: str

    def __call__(
        self, q: Tensor, k: Tensor, v: Tensor, q_seqlens: Sequence[int], kv_seqlens: Sequence[int],
        *, q_times: Tensor | None = None, kv_times: Tensor | None = None, local: bool = False,
    ) -> Tensor:  # fmt: skip
        q_seqlens, kv_seqlens = tuple(q_seqlens), tuple(kv_seqlens)
        if q.dim() != 3 or k.shape != v.shape or k.dim() != 3 or q.shape[1:] != k.shape[1:]:
            raise ValueError(
                "expected q [total_q, H, Dh] and k, v [total_kv, H, Dh], found "
                f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
            )
        n_q, n_kv = sum(q_seqlens), sum(kv_seqlens)
        if len(q_seqlens) != len(kv_seqlens) or (n_q, n_kv) != (q.shape[0], k.shape[0]):
            raise ValueError(
                f"need one length per sample for queries and keys, summing to the token counts "
                f"{q.shape[0]} / {k.shape[0]}; found seqlens {q_seqlens} / {kv_seqlens}"
            )
        if local and (q_times is None or kv_times is None):
            raise ValueError("local=True needs q_times and kv_times")
        return self.attend(q, k, v, q_seqlens, kv_seqlens, q_times, kv_times, local)

    @abstractmethod
    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, q_seqlens: tuple[int, ...],
        kv_seqlens: tuple[int, ...], q_times: Tensor | None, kv_times: Tensor | None, local: bool,
    ) -> Tensor:  # fmt: skip
        """Backend-specific attention on validated inputs (see class docstring for shapes)."""


class ReferenceBackend(AttentionBackend):
    """Explicit ``softmax(q k^T / sqrt(d)) v`` per sample in float32: the ground truth for tests."""

    name = "reference"

    def attend(self, q, k, v, q_seqlens, kv_seqlens, q_times, kv_times, local):
        scale = 1.0 / math.sqrt(q.shape[-1])
        qs, ks, vs = q.split(q_seqlens), k.split(kv_seqlens), v.split(kv_seqlens)
        no_times = [None] * len(q_seqlens)
        qts = q_times.split(q_seqlens) if local and q_times is not None else no_times
        kts = kv_times.split(kv_seqlens) if local and kv_times is not None else no_times
        outs = []
        for qi, ki, vi, qt, kt in zip(qs, ks, vs, qts, kts, strict=True):
            if ki.shape[0] == 0:
                outs.append(torch.zeros_like(qi))
                continue
            scores = torch.einsum("qhd,khd->hqk", qi.float(), ki.float()) * scale
            if qt is not None and kt is not None:
                mask, has_key = _local_mask(qt, kt)
                scores = scores.masked_fill(~mask, float("-inf"))
            out = torch.einsum("hqk,khd->qhd", scores.softmax(dim=-1), vi.float())
            if qt is not None:
                out = out.masked_fill(~has_key[..., None], 0.0)
            outs.append(out.to(q.dtype))
        return torch.cat(outs, dim=0)


def _local_mask(q_times: Tensor, kv_times: Tensor) -> tuple[Tensor, Tensor]:
    """Time-local mask whose rows without keys are opened (their output is zeroed by the caller).

    Shape: ``[..., n_q, 2]``, ``[..., n_kv, 2]`` -> ``[..., n_q, n_kv]``, ``[..., n_q, 1]``.
    """
    allowed = time_local_mask(q_times, kv_times)
    has_key = allowed.any(dim=-1, keepdim=True)
    return allowed | ~has_key, has_key


class SdpaBackend(AttentionBackend):
    """``scaled_dot_product_attention``, batching samples of equal ``(n_q, n_kv)`` into one call.

    Works on CPU and CUDA. Uniform packings (e.g. latents) are a reshape, with no copy; otherwise
    each group of equal-length samples is gathered into ``[G, n, H, Dh]``. No ``total x total``
    mask is ever built; time-local masks are ``[G, 1, n_q, n_kv]`` per group.
    """

    name = "sdpa"

    def attend(self, q, k, v, q_seqlens, kv_seqlens, q_times, kv_times, local):
        if not local:
            q_times = kv_times = None
        groups: dict[tuple[int, int], list[int]] = {}
        for i, lengths in enumerate(zip(q_seqlens, kv_seqlens, strict=True)):
            groups.setdefault(lengths, []).append(i)
        if len(groups) == 1 and q_seqlens[0] > 0 and kv_seqlens[0] > 0:  # uniform: a reshape
            return self._batched(q, k, v, q_times, kv_times, q_seqlens[0], kv_seqlens[0])
        q_off, kv_off = sample_offsets(q_seqlens), sample_offsets(kv_seqlens)
        pieces, order = [], []
        for (nq, nkv), samples in groups.items():
            if nq == 0:
                continue
            order.extend(samples)
            if nkv == 0:
                pieces.append(q.new_zeros(len(samples) * nq, *q.shape[1:]))
                continue
            # one index per side (queries; keys, values and their times), sent once
            many = len(samples) > 1
            qi = token_index(q_off, samples, nq, q.device) if many else None
            ki = token_index(kv_off, samples, nkv, k.device) if many else None
            qs, qt = (take_samples(x, q_off, samples, nq, qi) for x in (q, q_times))
            ks, vs, kt = (take_samples(x, kv_off, samples, nkv, ki) for x in (k, v, kv_times))
            pieces.append(self._batched(qs, ks, vs, qt, kt, nq, nkv))  # type: ignore[arg-type]
        if not pieces:
            return q.new_zeros(q.shape)
        out = torch.cat(pieces, dim=0)
        if order == sorted(order):  # groups came out in sample order (e.g. all lengths differ)
            return out
        # back into sample order: where each sample's rows landed, inverted on the host
        position = np.concatenate(
            [np.arange(q_off[i], q_off[i] + q_seqlens[i], dtype=np.int64) for i in order]
        )
        inverse = np.empty_like(position)
        inverse[position] = np.arange(position.size, dtype=np.int64)
        return out.index_select(0, to_device(inverse, out.device))

    @staticmethod
    def _batched(
        q: Tensor, k: Tensor, v: Tensor, qt: Tensor | None, kt: Tensor | None, nq: int, nkv: int
    ) -> Tensor:
        """Samples of equal lengths; times given means time-local.

        Shape: q ``[G * nq, H, Dh]``, k/v ``[G * nkv, H, Dh]``, times ``[G * n, 2]`` -> like q.
        """
        mask = has_key = None
        if qt is not None and kt is not None:
            mask, has_key = _local_mask(qt.unflatten(0, (-1, nq)), kt.unflatten(0, (-1, nkv)))
            mask = mask[:, None]  # [G, 1, nq, nkv], broadcast over heads
        qb, kb, vb = (
            x.unflatten(0, (-1, n)).transpose(1, 2) for x, n in ((q, nq), (k, nkv), (v, nkv))
        )
        out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask).transpose(1, 2)
        if has_key is not None:
            out = out.masked_fill(~has_key[..., None], 0.0)
        return out.flatten(0, 1)


_INSTALL_HINT = (
    "install it on a CUDA machine with `pip install neurofm[cuda]`, "
    'or choose attention="sdpa" (works on CPU and CUDA)'
)


def _cuda_only(device: torch.device) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"attention='xformers' runs on CUDA only, found {device}: {_INSTALL_HINT}"
    )


class XformersBackend(AttentionBackend):
    """xformers ``memory_efficient_attention`` with one ``BlockDiagonalMask`` over the packed batch.

    CUDA only; xformers is imported on first use, never at module import. Samples with no queries or
    no keys are left out of the mask (their queries get zeros). Time-local calls are delegated to
    :class:`SdpaBackend` (per-group masks): a block-diagonal bias cannot express them.
    """

    name = "xformers"

    def __init__(self) -> None:
        if not xformers_available():
            raise BackendUnavailableError(f"xformers does not import: {_INSTALL_HINT}")
        import xformers.ops

        self._ops: Any = xformers.ops
        self._local = SdpaBackend()

    def attend(self, q, k, v, q_seqlens, kv_seqlens, q_times, kv_times, local):
        if q.device.type != "cuda":
            raise _cuda_only(q.device)
        if local:
            return self._local.attend(q, k, v, q_seqlens, kv_seqlens, q_times, kv_times, local)
        flags = [bool(a and b) for a, b in zip(q_seqlens, kv_seqlens, strict=True)]
        pairs = [(a, b) for a, b, f in zip(q_seqlens, kv_seqlens, flags, strict=True) if f]
        if not pairs:
            return q.new_zeros(q.shape)
        q_idx = None
        if len(pairs) < len(q_seqlens):  # leave out samples without queries or keys
            active = torch.tensor(flags)
            q_idx = tokens_of(active, q_seqlens, q.device)
            kv_idx = tokens_of(active, kv_seqlens, k.device)
            q, k, v = q.index_select(0, q_idx), k.index_select(0, kv_idx), v.index_select(0, kv_idx)
        q_lens, kv_lens = ([p[j] for p in pairs] for j in (0, 1))
        bias = self._ops.fmha.attn_bias.BlockDiagonalMask.from_seqlens(q_lens, kv_lens)
        out = self._ops.memory_efficient_attention(q[None], k[None], v[None], attn_bias=bias)[0]
        if q_idx is None:
            return out
        return out.new_zeros(sum(q_seqlens), *out.shape[1:]).index_copy(0, q_idx, out)


class AutoBackend(AttentionBackend):
    """``xformers`` when it imports and tensors are on CUDA, else ``sdpa``; decided at each call."""

    name = "auto"

    def __init__(self) -> None:
        self._sdpa = SdpaBackend()
        self._xformers: XformersBackend | None = None

    def attend(self, q, k, v, q_seqlens, kv_seqlens, q_times, kv_times, local):
        backend: AttentionBackend = self._sdpa
        if q.device.type == "cuda" and xformers_available():
            if self._xformers is None:
                self._xformers = XformersBackend()
            backend = self._xformers
        return backend.attend(q, k, v, q_seqlens, kv_seqlens, q_times, kv_times, local)


def get_backend(name: str = "auto", device: torch.device | str | None = None) -> AttentionBackend:
    """The attention backend called ``name``: ``auto``, ``sdpa``, ``reference`` or ``xformers``.

    With a ``device``, ``auto`` is resolved now and ``xformers`` is checked against it; without one,
    ``auto`` decides per call from the tensors' device.
    """
    if name not in BACKEND_NAMES:
        known = ", ".join(BACKEND_NAMES)
        raise ValueError(f"unknown attention backend {name!r}; known backends: {known}")
    dev = None if device is None else torch.device(device)
    if name == "auto" and dev is not None:
        name = "xformers" if dev.type == "cuda" and xformers_available() else "sdpa"
    if name == "xformers" and dev is not None and dev.type != "cuda":
        raise _cuda_only(dev)
    backends: dict[str, type[AttentionBackend]] = {
        "reference": ReferenceBackend, "sdpa": SdpaBackend, "xformers": XformersBackend,
        "auto": AutoBackend,
    }  # fmt: skip
    return backends[name]()
