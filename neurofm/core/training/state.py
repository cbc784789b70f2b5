"""Training state for resume: weights, optimizer, scheduler, loader, RNG and step; no pickle.

A state root holds one folder per save and a pointer to the newest::

    <root>/step-00000040/   model.safetensors, optimizer.safetensors, rng.safetensors,
                            state.json, manifest.json (sha256 of each file)
    <root>/latest           "step-00000040" (replaced atomically after the folder is complete)

Each folder is written with :func:`~neurofm.core.storage.files.atomic_directory` and the pointer with an
atomic rename, so a process killed at any moment leaves the previous state loadable. After a save
only the folder just written and the one ``latest`` named before it are kept (the run's own
history, not the highest step numbers). ``latest`` must name a ``step-NNNNNNNN`` folder inside the
root; a pointer elsewhere, or a damaged state, is refused with the newest intact state named. Tensors are in
safetensors, everything else in JSON. Model and optimizer state go through
``torch.distributed.checkpoint.state_dict`` (full, unsharded state on rank 0), so the same files
serve single-process, DDP and FSDP runs; with sessions sharded over ranks
(:mod:`~neurofm.core.training.sharding`) each session's parameters and optimizer state come from
the rank that holds them, and a resume gives each rank its own again.
"""

from __future__ import annotations

import json
import re
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

from neurofm.core.storage.files import atomic_directory, atomic_write_text, disk_full_guard
from neurofm.core.storage.sealing import read_json, seal, verify
from neurofm.errors import NeurofmError

__all__ = [
    "FORMAT",
    "latest_state",
    "load_training_state",
    "newest_intact_state",
    "resume_point",
    "save_training_state",
]

FORMAT = "neurofm.training-state"
_FILES = ("model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json")
_NAME = re.compile(r"^step-(\d{8})$")


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
    shards = getattr(trainer, "shards", None)
    # sharded sessions: every session's tensors from the rank that owns it (on rank 0)
    sessions = None if shards is None else shards.gather(trainer.model, trainer.optimizer, "model.")
    loaders = [trainer.loader.state_dict()]
    if _distributed():
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, loaders[0])
        loaders = gathered
    folder = None
    if trainer.dist.is_main:
        folder = root / f"step-{trainer.step:08d}"
        opt_tensors, opt_meta = _flatten_optimizer(optim_sd)
        if sessions is not None:
            model_sd = {**model_sd, **sessions[0]}
            opt_tensors.update(sessions[1])
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
        weights = {k: v.detach().cpu().contiguous() for k, v in model_sd.items()}
        needed = sum(
            t.numel() * t.element_size() for t in [*weights.values(), *opt_tensors.values()]
        )
        previous = _pointer(root)
        with disk_full_guard(folder, needed), atomic_directory(folder, overwrite=True) as tmp:
            save_file(weights, str(tmp / "model.safetensors"))
            save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
            save_file(rng, str(tmp / "rng.safetensors"))
            (tmp / "state.json").write_text(json.dumps(state, indent=1) + "\n")
            seal(tmp, FORMAT)
        atomic_write_text(root / "latest", folder.name + "\n")
        keep = {folder.name} | ({previous} if previous else set())
        for old in root.glob("step-*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
    if _distributed():
        dist.barrier()
    return folder


def _pointer(root: Path) -> str | None:
    """The folder name ``root/latest`` holds, if it is a valid state name (else None)."""
    try:
        name = (root / "latest").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if _NAME.match(name) else None


def _step_folders(root: Path) -> list[Path]:
    """State folders under ``root``, newest (highest step) first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.match(p.name) and p.is_dir() and not p.is_symlink()]
    return sorted(found, key=lambda p: p.name, reverse=True)


def newest_intact_state(root: str | Path, exclude: Path | None = None) -> Path | None:
    """The highest-step state folder under ``root`` that passes verification (None if none)."""
    for folder in _step_folders(Path(root)):
        if exclude is not None and folder.name == exclude.name:
            continue
        try:
            verify(folder, FORMAT, _FILES)
            _read_state(folder)
        except NeurofmError:
            continue
        return folder
    return None


def _refuse(root: Path, problem: str, exclude: Path | None = None) -> NeurofmError:
    intact = newest_intact_state(root, exclude)
    if intact is None:
        advice = "no intact state is left beside it; start the run again with --overwrite"
    else:
        advice = (
            f"the newest intact state is {intact}: resume from it by adding "
            f"--resume-from {intact.name} to the command"
        )
    return NeurofmError(f"{problem}; {advice}")


def latest_state(root: str | Path) -> Path | None:
    """The state folder ``root/latest`` names (the newest complete one if there is no pointer);
    None when there is no state.

    Raises:
        NeurofmError: ``latest`` names something other than a ``step-NNNNNNNN`` folder inside
            ``root`` (an absolute path, ``..``, a link, a missing folder).
    """
    root = Path(root)
    pointer = root / "latest"
    if pointer.exists() or pointer.is_symlink():
        name = _pointer(root)
        folder = root / name if name else None
        if pointer.is_symlink() or folder is None or folder.is_symlink() or not folder.is_dir():
            try:
                text = pointer.read_text(encoding="utf-8", errors="replace").strip()[:80]
            except OSError:
                text = "?"
            raise _refuse(
                root,
                f"{pointer} names {text!r}, which is not a state folder inside {root} (expected "
                f"the name of a step-NNNNNNNN folder there)",
            )
        return folder
    folders = [p for p in _step_folders(root) if (p / "manifest.json").is_file()]
    return folders[0] if folders else None


def resume_point(root: str | Path, name: str | None = None) -> tuple[Path | None, int]:
    """The verified state folder a resume starts from and its step ((None, 0) when none).

    ``name``: a ``step-NNNNNNNN`` folder of ``root`` to start from instead of ``latest``.
    """
    root = Path(root)
    if name is not None:
        folder = root / Path(name).name
        if not _NAME.match(Path(name).name) or not folder.is_dir() or folder.is_symlink():
            raise _refuse(root, f"--resume-from {name!r} is not a state folder inside {root}")
    else:
        folder = latest_state(root)
        if folder is None:
            return None, 0
    try:
        verify(folder, FORMAT, _FILES)
        state = _read_state(folder)
    except NeurofmError as exc:
        raise _refuse(root, f"training state {folder} is damaged ({exc})", exclude=folder) from None
    return folder, state["step"]


def _read_state(folder: Path) -> dict[str, Any]:
    """``state.json`` of ``folder``, checked to have the fields a resume needs."""
    state = read_json(folder / "state.json")
    problems = []
    if not isinstance(state, dict):
        problems.append(f"it holds {type(state).__name__}, expected a mapping")
    else:
        for key in ("step", "world_size"):
            value = state.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"{key!r} is {value!r}, expected a non-negative integer")
        for key, kind in (("scheduler", dict), ("optimizer", dict), ("loaders", list)):
            if not isinstance(state.get(key), kind):
                problems.append(f"{key!r} is missing or not a {kind.__name__}")
    if problems:
        raise NeurofmError(
            f"{folder / 'state.json'} is malformed: {'; '.join(problems)}; it was edited or not "
            f"written by neurofm"
        )
    return state


def load_training_state(root: str | Path, trainer: Any, folder: str | Path | None = None) -> int:
    """Restore ``trainer`` from the newest state under ``root`` (or from ``folder``); returns its
    step.

    Raises:
        NeurofmError: no state, a state that fails verification or is malformed (naming the
            newest intact state), one saved with another number of processes (the loader's draws
            depend on it), or one whose tensors do not fit the trainer's model.
    """
    root = Path(root)
    if folder is None:
        folder = latest_state(root)
    if folder is None:
        raise NeurofmError(
            f"no training state under {root}; nothing to resume (run without --resume first)"
        )
    folder = Path(folder)
    try:
        verify(folder, FORMAT, _FILES)
        state = _read_state(folder)
    except NeurofmError as exc:
        raise _refuse(root, f"training state {folder} is damaged ({exc})", exclude=folder) from None
    if state["world_size"] != trainer.dist.world_size:
        raise NeurofmError(
            f"training state {folder} was saved by {state['world_size']} process(es); resume "
            f"with the same number (torchrun --nproc_per_node {state['world_size']})"
        )
    try:
        model_sd = load_file(str(folder / "model.safetensors"))
        opt_tensors = load_file(str(folder / "optimizer.safetensors"))
        shards = getattr(trainer, "shards", None)
        if shards is not None:  # this rank holds its own sessions' tensors only
            model_sd = shards.localise(model_sd, prefix="model.")
            opt_tensors = shards.localise(opt_tensors, prefix="model.")
        optim_sd = _unflatten_optimizer(opt_tensors, state["optimizer"])
        options = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(trainer.module, model_sd, options=options)
        set_optimizer_state_dict(trainer.module, trainer.optimizer, optim_sd, options=options)
        trainer.scheduler.load_state_dict(state["scheduler"])
        trainer.loader.load_state_dict(state["loaders"][trainer.dist.rank])
        rng = load_file(str(folder / "rng.safetensors"))
        torch.set_rng_state(rng["torch"])
        if torch.cuda.is_available() and "cuda0" in rng:
            torch.cuda.set_rng_state_all(
                [rng[f"cuda{i}"] for i in range(torch.cuda.device_count())]
            )
    except Exception as exc:  # hashes matched, but the contents do not fit this trainer
        raise NeurofmError(
            f"training state {folder} does not fit this run ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); it was saved by another model or "
            f"edited. Resume with the run's own config, or start again with --overwrite"
        ) from None
    trainer.step = state["step"]
    return trainer.step
