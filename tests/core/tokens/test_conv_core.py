"""The convolutional core: its first block's convolution and pooling run as one strided
convolution, with the weight gradient computed directly when the frames need none; both give
what a convolution followed by average pooling gives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neurofm.core.tokens.conv_core import CoreConfig, FactorisedCore


def _reference(core: FactorisedCore, x: torch.Tensor) -> torch.Tensor:
    """The core's definition, step by step (spatial conv, pool, causal temporal conv, norm,
    ELU)."""
    cfg = core.config
    b, t = x.shape[:2]
    x = x.reshape(b * t, *x.shape[2:])
    if cfg.input_pool > 1:
        x = F.avg_pool2d(x, cfg.input_pool)
    for i, (spatial, temporal, norm) in enumerate(
        zip(core.spatial, core.temporal, core.norm, strict=True)
    ):
        x = spatial(x)
        if i == 0 and cfg.downsample > 1:
            x = F.avg_pool2d(x, cfg.downsample)
        c, h, w = x.shape[1:]
        x = x.view(b, t, c, h * w).transpose(1, 2)
        kt = temporal.kernel_size[0]
        x = F.elu(norm(temporal(F.pad(x, (0, 0, kt - 1, 0)))))
        x = x.transpose(1, 2).reshape(b * t, c, h, w)
    return x.view(b, t, *x.shape[1:])


@pytest.mark.parametrize(
    ("sizes", "in_channels"),
    [({"input_pool": 2, "spatial_kernels": (7, 3), "temporal_kernels": (5, 3), "layers": 2}, 1),
     ({"downsample": 3, "spatial_kernels": (5,), "temporal_kernels": (3,), "layers": 1}, 3),
     ({"downsample": 1, "spatial_kernels": (5,), "temporal_kernels": (3,), "layers": 1}, 1)],
)  # fmt: skip
@pytest.mark.parametrize("input_grad", [False, True])
def test_core_matches_its_definition(sizes: dict, in_channels: int, input_grad: bool) -> None:
    torch.manual_seed(0)
    core = FactorisedCore(CoreConfig(channels=6, **sizes), in_channels=in_channels)
    x = torch.randn(3, 7, in_channels, 20, 34)
    xa, xb = x.clone().requires_grad_(input_grad), x.clone().requires_grad_(input_grad)
    out, ref = core(xa), _reference(core, xb)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ref)
    got = torch.autograd.grad(out, [*core.parameters(), *([xa] if input_grad else [])], g)
    want = torch.autograd.grad(ref, [*core.parameters(), *([xb] if input_grad else [])], g)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        assert (a - b).abs().max() <= 1e-4 * b.abs().max().clamp(min=1e-12)
