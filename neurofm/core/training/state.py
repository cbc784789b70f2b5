"""Training state for resume: weights, optimizer, scheduler, loader, RNG and step; no pickle.

A state root holds one folder per save and a pointer to the newest::

    <root>/step-00000040/   model.safetensors, optimizer.safetensors, rng.safetensors,
                            state.json, manifest.json (sha256 of each file)
    <root>/latest           "step-00000040" (replaced atomically after the folder is complete)

Each folder is written with :func:`~neurofm.core.io.atomic_directory` and the pointer with an
atomic rename, so a process killed at any moment leaves the previous state loadable. Tensors are in
safetensors, everything else in JSON. Model and optimizer state go through
``torch.distributed.checkpoint.state_dict`` (full, unsharded state on rank 0), so the same files
serve single-process, DDP and FSDP runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from neurofm.core.io import atomic_directory, atomic_write_text
from neurofm.core.sealing import read_json, seal, verify
from neurofm.errors import NeurofmError

__all__ = ["FORMAT", "latest_state", "load_training_state", "save_training_state"]

FORMAT = "neurofm.training-state"
_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json")
_KEEP = 2


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for fqn, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{fqn}\t{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(fqn, {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, dict[str, Any]] = {}
    for name, value in tensors.items():
        fqn, key = name.split("\t")
        state.setdefault(fqn, {})[key] = value
    for fqn, entry in meta["scalars"].items():
        state.setdefault(fqn, {}).update(entry)
    groups = [
        {k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def save_training_state(root: str | Path, trainer: Any) -> Path | None:
    """Save ``trainer``'s full state under ``root`` (collective: every rank must call it).

    Returns the folder written (rank 0) or None (other ranks).
    """
    root = Path(root)
    options = StateDictOptions(full_state_dict=True, cpu_offload=_distributed())
    model_sd = get_model_state_dict(trainer.module, options=options)
    optim_sd = get_optimizer_state_dict(trainer.module, trainer.optimizer, options=options)
    loaders = [trainer.loader.state_dict()]
    if _distributed():
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, loaders[0])
        loaders = gathered
    folder = None
    if trainer.dist.is_main:
        folder = root / f"step-{trainer.step:08d}"
        opt_tensors, opt_meta = _flatten_optimizer(optim_sd)
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
        state = {
            "step": trainer.step,
            "world_size": trainer.dist.world_size,
            "scheduler": trainer.scheduler.state_dict(),
            "optimizer": opt_meta,
            "loaders": loaders,
            "training": trainer.config.model_dump(mode="json"),
        }
        with atomic_directory(folder, overwrite=True) as tmp:
            weights = {k: v.detach().cpu().contiguous() for k, v in model_sd.items()}
            save_file(weights, str(tmp / "model.safetensors"))
            save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
            save_file(rng, str(tmp / "rng.safetensors"))
            (tmp / "state.json").write_text(json.dumps(state, indent=1) + "\n")
            seal(tmp, FORMAT)
        atomic_write_text(root / "latest", folder.name + "\n")
        for old in sorted(root.glob("step-*"))[:-_KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    if _distributed():
        dist.barrier()
    return folder


def latest_state(root: str | Path) -> Path | None:
    """The newest complete state folder under ``root`` (None when there is none)."""
    root = Path(root)
    pointer = root / "latest"
    if pointer.is_file():
        folder = root / pointer.read_text().strip()
        if folder.is_dir():
            return folder
    folders = sorted(p for p in root.glob("step-*") if (p / "manifest.json").is_file())
    return folders[-1] if folders else None


def load_training_state(root: str | Path, trainer: Any) -> int:
    """Restore ``trainer`` from the newest state under ``root``; returns its step.

    Raises:
        NeurofmError: no state, a state that fails verification, or one saved with another
            number of processes (the loader's draws depend on it).
    """
    folder = latest_state(root)
    if folder is None:
        raise NeurofmError(
            f"no training state under {root}; nothing to resume (run without --resume first)"
        )
    verify(folder, FORMAT, _FILES)
    state = read_json(folder / "state.json")
    if state["world_size"] != trainer.dist.world_size:
        raise NeurofmError(
            f"training state {folder} was saved by {state['world_size']} process(es); resume "
            f"with the same number (torchrun --nproc_per_node {state['world_size']})"
        )
    model_sd = load_file(str(folder / "model.safetensors"))
    optim_sd = _unflatten_optimizer(
        load_file(str(folder / "optimizer.safetensors")), state["optimizer"]
    )
    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(trainer.module, model_sd, options=options)
    set_optimizer_state_dict(trainer.module, trainer.optimizer, optim_sd, options=options)
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.loader.load_state_dict(state["loaders"][trainer.dist.rank])
    rng = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and "cuda0" in rng:
        torch.cuda.set_rng_state_all([rng[f"cuda{i}"] for i in range(torch.cuda.device_count())])
    trainer.step = int(state["step"])
    return trainer.step
