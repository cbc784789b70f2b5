"""A shared nonlinear convolutional core for pixel stimuli (the first half of the stimulus path).

In the style of the SENSORIUM cores: ``layers`` blocks, each a spatial 2-D convolution over every
frame, then a causal temporal 1-D convolution along the frames, batch norm and ELU. Average
pooling shrinks the frames before the core (``input_pool``) and after the first spatial
convolution (``downsample``; before the first temporal one, which then runs on 1/downsample^2 of
the positions). Every session and animal shares it; the ``movie_core`` encoder builds it from
its config.

Example:
    >>> import torch
    >>> core = FactorisedCore(CoreConfig(channels=8, layers=2, spatial_kernels=(5, 3),
    ...                                  temporal_kernels=(3, 3)), in_channels=1)
    >>> core(torch.randn(2, 10, 1, 16, 32)).shape  # [B, T, C, H, W]
    torch.Size([2, 10, 8, 8, 16])
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from neurofm.core.config import StrictModel

__all__ = ["CoreConfig", "FactorisedCore"]

_LAPLACE = torch.tensor([[0.5, 1.0, 0.5], [1.0, -6.0, 1.0], [0.5, 1.0, 0.5]]).view(1, 1, 3, 3)


class CoreConfig(StrictModel):
    """Sizes of :class:`FactorisedCore`.

    ``spatial_kernels`` / ``temporal_kernels``: one odd spatial size and one temporal length (in
    frames) per block. ``input_pool``: average-pool frames by this factor first. ``downsample``:
    average-pool by this factor after the first spatial convolution. The feature map is
    ``H / (input_pool * downsample)`` x ``W / (input_pool * downsample)`` (integer division).
    ``norm``: ``"batch"`` (batch norm; statistics of each process's batch, or of the global batch
    on CUDA, where distributed training converts it to ``torch.nn.SyncBatchNorm``) or ``"none"``
    (no normalisation: every sample's output is independent of the rest of its batch).
    ``laplace_penalty``: weight of a smoothness penalty on the first block's spatial kernels
    (:meth:`FactorisedCore.penalty`; 0: none). ``lr_scale``: the core's learning rate as a
    multiple of the training learning rate (an encoder that owns the core reports it through
    ``learning_rate_scales``): the core is small beside the backbone and must move further in
    a short run (the demo's model: BENCHMARKS.md, "The demo").
    """

    channels: int = Field(16, ge=1)
    layers: int = Field(3, ge=1)
    spatial_kernels: tuple[int, ...] = (9, 5, 5)
    temporal_kernels: tuple[int, ...] = (9, 5, 5)
    input_pool: int = Field(1, ge=1)
    downsample: int = Field(2, ge=1)
    norm: Literal["batch", "none"] = "batch"
    laplace_penalty: float = Field(0.0, ge=0)
    lr_scale: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _one_kernel_per_block(self) -> CoreConfig:
        for name in ("spatial_kernels", "temporal_kernels"):
            kernels = getattr(self, name)
            if len(kernels) != self.layers or min(kernels) < 1:
                raise ValueError(
                    f"{name} must give one size >= 1 per block ({self.layers} blocks); found "
                    f"{list(kernels)}. Set one entry per layer."
                )
        if any(k % 2 == 0 for k in self.spatial_kernels):
            raise ValueError(
                f"spatial_kernels must be odd (same padding); found {self.spatial_kernels}"
            )
        return self

    def map_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H', W')`` of the feature map for frames of ``height x width`` pixels."""
        f = self.input_pool * self.downsample
        h, w = height // f, width // f
        if h < 1 or w < 1:
            raise ValueError(
                f"frames of {height}x{width} pixels shrink to {h}x{w} after pooling by "
                f"{self.input_pool} x {self.downsample}; lower input_pool or downsample"
            )
        return h, w


class FactorisedCore(nn.Module):
    """Spatial conv (-> pooling, first block) -> causal temporal conv -> batch norm -> ELU,
    ``layers`` times.

    Spatial convolutions run as 2-D convolutions over ``B * T`` frames, temporal ones as
    ``(kt, 1)`` 2-D convolutions over ``[B, C, T, H * W]`` with ``kt - 1`` zero frames in front
    (causal: step ``t`` sees frames ``<= t``).

    Shape:
        ``[B, T, C_in, H, W]`` -> ``[B, T, channels, H', W']`` (see :meth:`CoreConfig.map_size`).
    """

    def __init__(self, config: CoreConfig, *, in_channels: int) -> None:
        super().__init__()
        self.config = config
        self.spatial = nn.ModuleList()
        self.temporal = nn.ModuleList()
        self.norm = nn.ModuleList()
        c_in = in_channels
        for k, kt in zip(config.spatial_kernels, config.temporal_kernels, strict=True):
            self.spatial.append(nn.Conv2d(c_in, config.channels, k, padding=k // 2))
            self.temporal.append(nn.Conv2d(config.channels, config.channels, (kt, 1), bias=False))
            self.norm.append(
                nn.BatchNorm2d(config.channels) if config.norm == "batch" else nn.Identity()
            )
            c_in = config.channels

    def penalty(self) -> Tensor | None:
        """``laplace_penalty`` times the mean squared 3x3 Laplacian of the first block's spatial
        kernels over their mean square: rough (pixel-noise) filters cost more than smooth ones,
        whatever the kernels' scale. None when the weight is 0."""
        weight = self.config.laplace_penalty
        if weight == 0:
            return None
        kernels = self.spatial[0].weight  # [C, C_in, k, k]
        flat = kernels.reshape(-1, 1, *kernels.shape[2:])
        laplace = F.conv2d(flat, _LAPLACE.to(flat), padding=1)
        return weight * laplace.pow(2).mean() / flat.pow(2).mean().clamp(min=1e-12)

    def forward(self, x: Tensor) -> Tensor:
        b, t = x.shape[:2]
        x = x.reshape(b * t, *x.shape[2:])  # [B*T, C, H, W]
        if self.config.input_pool > 1:
            x = F.avg_pool2d(x, self.config.input_pool)
        for i, (spatial, temporal, norm) in enumerate(
            zip(self.spatial, self.temporal, self.norm, strict=True)
        ):
            if i == 0 and self.config.downsample > 1:
                x = _pooled_conv(spatial, x, self.config.downsample)
            else:
                x = spatial(x)
            c, h, w = x.shape[1:]
            x = x.view(b, t, c, h * w).transpose(1, 2)  # [B, C, T, H*W]
            kt = temporal.kernel_size[0]
            x = F.elu(norm(temporal(F.pad(x, (0, 0, kt - 1, 0)))))
            x = x.transpose(1, 2).reshape(b * t, c, h, w)
        return x.view(b, t, *x.shape[1:])


def _pooled_conv(conv: nn.Conv2d, x: Tensor, pool: int) -> Tensor:
    """``avg_pool2d(conv(x), pool)`` for a same-padded, stride-1 ``conv``, as one convolution
    with stride ``pool`` by the kernel convolved with a ``pool x pool`` box (the same values to
    float rounding, without the full-resolution output: 3x fewer multiply-adds at the demo's
    sizes). On CPU, for an input that needs no gradient (the frames), the kernel's gradient is
    one convolution of the frames by the output's gradient, which oneDNN runs several times
    faster than its own weight gradient when the input has few channels (1 channel, 8 x 8
    kernels, stride 2, 240 frames of 18 x 32 on 2 threads: 2 ms against 10 ms)."""
    out_c, in_c, k, _ = conv.weight.shape
    flat = F.pad(conv.weight.reshape(out_c * in_c, 1, k, k), (pool - 1,) * 4)
    box = flat.new_full((1, 1, pool, pool), 1.0 / pool**2)
    kernel = F.conv2d(flat, box).view(out_c, in_c, k + pool - 1, k + pool - 1)
    bias = conv.bias if conv.bias is not None else kernel.new_zeros(out_c)
    padding = k // 2
    if (
        x.requires_grad
        or not torch.is_grad_enabled()
        or x.device.type != "cpu"
        or x.dtype != torch.float32
        or conv.groups != 1
    ):
        return F.conv2d(x, kernel, bias, stride=pool, padding=padding)
    return _ConstantInputConv.apply(x, kernel, bias, padding, pool)


class _ConstantInputConv(torch.autograd.Function):
    """2-D convolution of an input without gradient: the kernel's gradient is the correlation of
    the padded input with the output's gradient (dilated by the stride), with the batch as the
    channels."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor, padding: int, stride: int) -> Tensor:
        ctx.save_for_backward(x)
        ctx.padding, ctx.stride, ctx.size = padding, stride, weight.shape[-2:]
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        p, (kh, kw) = ctx.padding, ctx.size
        padded = F.pad(x, (p, p, p, p)).transpose(0, 1)  # [C_in, N, H + 2p, W + 2p]
        weight_grad = F.conv2d(padded, grad.transpose(0, 1), dilation=ctx.stride)
        weight_grad = weight_grad.transpose(0, 1)[:, :, :kh, :kw]  # [C_out, C_in, k, k]
        return None, weight_grad.contiguous(), grad.sum((0, 2, 3)), None, None
