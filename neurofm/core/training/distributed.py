"""torch.distributed plumbing: process group from torchrun's environment, DDP / FSDP2 wrapping.

Per-session parameters (readout tables, stream embeddings, heads) are used only by the ranks whose
windows contain that session or stream. :class:`TrainStep` therefore adds ``0 * p.sum()`` for every
trainable parameter outside the backbone (the backbone is used in every step): every parameter
takes part in every step's graph on every rank, so DDP's and FSDP's gradient reductions see the
same set of parameters everywhere (no hang) and an absent session gets an exact zero gradient (no
corruption). This is also done in single-process runs, so training does not depend on the number
of processes. It is cheaper than DDP's ``find_unused_parameters=True``, which walks the autograd
graph after every forward (see docs/scale-out.md for the measurement).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from neurofm.core.data.windows import WindowSample
from neurofm.core.model.neurofm import NeuroFM
from neurofm.core.tokens.tasks import TaskSpec

__all__ = [
    "DistInfo",
    "TrainStep",
    "all_reduce_max",
    "all_reduce_sum",
    "all_reduce_sum_tensor",
    "init_distributed",
    "touched_parameters",
    "wrap_for_training",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (``world_size == 1``: not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def current(cls) -> DistInfo:
        """From the initialised process group, or single-process when there is none."""
        if dist.is_available() and dist.is_initialized():
            local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
            return cls(dist.get_rank(), dist.get_world_size(), local)
        return cls()


def init_distributed(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Join the process group that ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ...).

    Backend: NCCL when training on CUDA, gloo on CPU. Without torchrun's variables (or with
    ``WORLD_SIZE=1``) nothing is initialised. Returns the process's info and its device.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if world <= 1:
        return DistInfo(), torch.device("cuda" if use_cuda else "cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    info = DistInfo.current()
    return info, torch.device(f"cuda:{local}" if use_cuda else "cpu")


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Sum floats over ranks (identity when not distributed)."""
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t.tolist()


def all_reduce_sum_tensor(values: Tensor) -> Tensor:
    """``values`` summed over ranks, in place, without reading them on the host (identity when
    not distributed)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(values)
    return values


def all_reduce_max(value: float, device: torch.device) -> float:
    """The largest ``value`` over ranks (identity when not distributed)."""
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


class TrainStep(nn.Module):
    """The unit DDP/FSDP wrap: runs the model and returns the sum of per-target mean losses
    (in training mode plus the model's :meth:`~neurofm.core.model.neurofm.NeuroFM.penalty` per target).

    Returns ``(loss_total, n_targets)``; the trainer divides by the number of targets over all
    ranks, so the loss (and gradient) is the mean over the global batch whatever its split.

    ``touch_parameters``: while training, add 0 times the sum of every trainable parameter
    outside the backbone, so each one gets a gradient (0 where the batch does not use it) and
    DDP / FSDP see the same parameters on every rank. That is one operation per parameter,
    and the per-session parameters grow with the sessions; a single process does without it
    (:func:`wrap_for_training` sets it only when distributed), and the trainer keeps every
    gradient allocated and zeroes them instead, which gives the same gradients.
    """

    def __init__(
        self, model: NeuroFM, *, autocast_bf16: bool = False, touch_parameters: bool = True
    ) -> None:
        super().__init__()
        self.model = model
        self.autocast_bf16 = autocast_bf16
        self.touch_parameters = touch_parameters

    def forward(
        self, batch: Sequence[WindowSample], tasks: Sequence[TaskSpec], rng: np.random.Generator
    ) -> tuple[Tensor, Tensor]:
        device_type = self.model.device.type
        with torch.autocast(device_type, torch.bfloat16, enabled=self.autocast_bf16):
            out = self.model(batch, tasks, rng)
        n_targets = len(out.targets)
        if out.target_losses is not None:
            total = out.target_losses.sum()
        elif n_targets:  # a model output built without the per-target vector
            total = torch.stack([o.mean_loss() for o in out.targets]).sum()
        else:
            total = out.loss.float()
        touch = []
        if self.touch_parameters and torch.is_grad_enabled():
            touch = [p.sum() for p in touched_parameters(self.model)]
        if touch:
            total = total + 0.0 * torch.stack(touch).sum()
        count = total.new_full((), float(n_targets))  # a fill, not a host-to-device copy
        penalty = self.model.penalty() if self.training and torch.is_grad_enabled() else None
        if penalty is not None:
            # the trainer divides by the global target count C and DDP averages the W ranks'
            # gradients: penalty * c_rank summed that way is the penalty once, whatever the split
            total = total + penalty * count
        return total, count


def touched_parameters(model: NeuroFM) -> list[nn.Parameter]:
    """The parameters a distributed :class:`TrainStep` puts in every step's graph (0 times
    their sum): the trainable ones outside the backbone, which a batch may leave unused (the
    backbone's are always used)."""
    return [
        p
        for name, p in model.named_parameters()
        if p.requires_grad and not name.startswith("backbone.")
    ]


def wrap_for_training(
    model: NeuroFM,
    info: DistInfo,
    *,
    fsdp: bool = False,
    compile_backbone: bool = False,
    bf16: bool = False,
    unreduced: Sequence[str] = (),
) -> nn.Module:
    """``TrainStep(model)``, wrapped in DDP (or FSDP2 over the backbone blocks) when distributed.

    With ``fsdp`` each backbone block and then the whole step are ``fully_shard``-ed (parameters,
    gradients and optimizer state sharded over ranks); build the optimizer after this call.
    ``bf16``: autocast the forward to bfloat16 (honoured on CUDA only). ``unreduced``: names (in
    ``model``) of parameters that DDP / FSDP leave alone: per-session parameters held by one rank
    each (:mod:`neurofm.core.training.sharding`).
    """
    if compile_backbone:  # the whole backbone recompiled at every batch (packing-dependent)
        model.backbone.compile_blocks()
    step = TrainStep(
        model,
        autocast_bf16=bf16 and model.device.type == "cuda",
        touch_parameters=info.distributed,
    )
    if not info.distributed:
        return step
    if model.device.type == "cuda":
        # batch norm over the global batch (torch's SyncBatchNorm runs on accelerators only; on
        # CPU each process normalises with its own batch's statistics)
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        backbone = model.backbone
        blocks = [backbone.encoder, *backbone.layers, backbone.decoder, backbone.input_decoder]
        for block in blocks:
            if block is not None:
                fully_shard(block)
        params = dict(model.named_parameters())
        fully_shard(step, ignored_params={params[n] for n in unreduced} or None)
        return step
    if unreduced:
        nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            step, [f"model.{n}" for n in unreduced]
        )
    device_ids = [model.device.index] if model.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(step, device_ids=device_ids)
