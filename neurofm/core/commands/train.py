"""``neurofm train CONFIG --out DIR [--resume | --overwrite]``: train a model from an experiment
config.

Runs in one process, or in several under ``torchrun --nproc_per_node N -m neurofm train ...``
(DDP; FSDP2 with ``training.fsdp``). The training state is saved every
``training.checkpoint_every`` steps to ``--state`` (default ``DIR.state``), with the run's
fingerprint (``run.json``); ``--resume`` continues from the newest state if it is this run's
(:mod:`neurofm.core.training.run`). The finished model is written to ``DIR`` as a checkpoint
folder. ``DIR.lock`` is held for the run, so a second run on the same ``DIR`` is refused.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from neurofm.core.data import Session
    from neurofm.core.training.config import ExperimentConfig


def default_state_dir(out: Path) -> Path:
    """Where the training state of a run writing checkpoint ``out`` lives by default."""
    return out.with_name(out.name + ".state")


def train_and_save(
    model_config,
    sessions,
    training,
    window_s,
    out: Path,
    progress: bool = True,
    *,
    resume: bool = False,
    state_dir: Path | None = None,
    session_weights: dict[str, float] | None = None,
    validation_fraction: float = 0.1,
    resume_from: Path | None = None,
    before_step: Sequence[Callable] = (),
):
    """Build, train (resuming if asked) and save a model; returns ``(model, TrainResult)``.

    ``before_step``: hooks added to the trainer's :attr:`~neurofm.core.training.Trainer.before_step`
    (e.g. a :class:`~neurofm.core.training.trainer.StepBudget`).

    When no session has a validation tier, ``validation_fraction`` of each session's train
    intervals is held out as validation (:mod:`neurofm.core.data.validation`; recorded in the
    checkpoint); with 0 the model trains without validation. Under torchrun every rank calls
    this; rank 0 prints and writes the checkpoint.
    """
    import torch
    import torch.distributed as dist

    from neurofm.core.data.validation import hold_out_validation, validation_note
    from neurofm.core.model.builder import build_model
    from neurofm.core.model.checkpoint import save_pretrained
    from neurofm.core.training import Trainer, resolve_device
    from neurofm.core.training.distributed import init_distributed
    from neurofm.core.training.state import latest_state

    info, device = init_distributed(training.device)
    if not info.distributed:
        device = resolve_device(training.device)
    say = print if info.is_main else (lambda *a, **k: None)
    sessions, split = hold_out_validation(sessions, validation_fraction, window_s=window_s)
    if (text := validation_note(sessions, split, validation_fraction, window_s)) is not None:
        say(text)
    torch.manual_seed(training.seed)
    model = build_model(model_config, sessions).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    say(
        f"model: {n_params / 1e6:.2f}M parameters, {len(sessions)} sessions, window {window_s} s, "
        f"{info.world_size} process(es) x batch {training.batch_size}"
    )
    trainer = Trainer(
        model,
        sessions,
        training,
        window_s=window_s,
        progress=progress,
        session_weights=session_weights,
        state_dir=state_dir,
    )
    trainer.before_step.extend(before_step)
    if trainer.shards is not None:
        say(f"sessions sharded over {info.world_size} processes:")
        for line in trainer.shards.describe(model, sessions):
            say(f"  {line}")
    if resume and state_dir is not None and resume_from is not None:
        say(f"resuming from step {trainer.resume(resume_from)} ({resume_from})")
    elif resume and state_dir is not None and latest_state(state_dir) is not None:
        say(f"resuming from step {trainer.resume()} ({latest_state(state_dir)})")
    elif resume:
        say(f"no training state under {state_dir}; starting from step 0")
    result = trainer.fit()
    if result.validation_loss:
        say(
            f"trained {result.steps} steps in {result.seconds:.0f} s; "
            f"last validation loss {result.validation_loss[-1][1]:.4f}"
        )
    weights = None
    if info.distributed:  # the full (unsharded) weights, gathered on rank 0
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        full = get_model_state_dict(trainer.module, options=options)
        weights = {k.removeprefix("model."): v for k, v in full.items()}
        sessions_weights = trainer.gather_sessions()  # sharded sessions: all of them on rank 0
        if sessions_weights is not None:
            weights.update(sessions_weights)
    if info.is_main:
        extra = {"window_s": window_s, "steps": trainer.step}
        if split is not None:
            extra["validation_split"] = split.to_json()
        save_pretrained(model, model_config, out, extra=extra, weights=weights)
    if info.distributed:
        dist.barrier()
        dist.destroy_process_group()
    return model, result


def experiment_fingerprint(
    config: ExperimentConfig, sessions: list[Session], world_size: int
) -> dict[str, Any]:
    """The run fingerprint of ``neurofm train`` with ExperimentConfig ``config``."""
    from neurofm.core.training.run import run_fingerprint

    settings = config.model_dump(mode="json")
    settings["data"].pop("path")  # recorded resolved, with the session ids opened
    return run_fingerprint("train", settings, config.data.path, sessions, world_size)


def note(command: str, text: str) -> None:
    """A line of information about the run on stderr (not an error)."""
    print(f"neurofm {command}: note: {text}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from neurofm.core.config import load_config_file
    from neurofm.core.data import open_dataset
    from neurofm.core.data.coverage import check_stream_coverage
    from neurofm.core.storage.lock import FolderLock
    from neurofm.core.training.config import ExperimentConfig
    from neurofm.core.training.run import prepare_run_folders

    config = load_config_file(args.config, ExperimentConfig)
    sessions = open_dataset(config.data.path, config.data.sessions)
    check_stream_coverage(list(config.model.modalities), sessions, strict=True)
    out = Path(args.out)
    state = Path(args.state) if args.state else default_state_dir(out)
    main = os.environ.get("RANK", "0") == "0"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    fingerprint = experiment_fingerprint(config, sessions, world_size)
    resume = args.resume or args.resume_from is not None
    resume_from = None
    locks = contextlib.ExitStack()
    with locks:
        if main:
            for folder in dict.fromkeys([out, state]):  # one lock per output folder
                if folder == state and state == default_state_dir(out):
                    continue  # the default state folder belongs to OUT: its lock covers it
                locks.enter_context(
                    FolderLock(folder, command="neurofm train", on_stale=lambda t: note("train", t))
                )
            prepared = prepare_run_folders(
                out,
                state,
                fingerprint,
                resume=resume,
                overwrite=args.overwrite,
                resume_from=args.resume_from,
            )
            for text in prepared.notes:
                note("train", text)
            resume, resume_from = prepared.resume, prepared.resume_from
        elif args.resume_from is not None:
            resume_from = state / Path(args.resume_from).name
        train_and_save(
            config.model,
            sessions,
            config.training,
            config.data.window_s,
            out,
            progress=not args.no_progress,
            resume=resume,
            state_dir=state,
            session_weights=config.data.session_weights,
            validation_fraction=config.data.validation_fraction,
            resume_from=resume_from,
        )
    if main:
        print(f"checkpoint written to {args.out}")
    return 0


def add_run_options(p: argparse.ArgumentParser, *, resume_help: str, overwrite_help: str) -> None:
    """``--resume`` / ``--resume-from`` / ``--overwrite`` (one of them at most) of a command that
    writes a checkpoint and its training state to OUT
    (``neurofm.core.training.run.prepare_run_folders`` acts on them)."""
    how = p.add_mutually_exclusive_group()
    how.add_argument("--resume", action="store_true", help=resume_help)
    how.add_argument(
        "--resume-from",
        default=None,
        metavar="STEP_FOLDER",
        help="like --resume, from the named state folder (e.g. step-00000040) instead of the newest",
    )
    how.add_argument("--overwrite", action="store_true", help=overwrite_help)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from an experiment config (JSON/YAML); "
        "torchrun --nproc_per_node N -m neurofm train ... for several processes",
    )
    p.add_argument("config", help="ExperimentConfig file (.json, .yaml)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--state", default=None, help="training-state folder (default: OUT.state)")
    add_run_options(
        p,
        resume_help="continue this run from its newest training state (refused if the state is "
        "another run's: a different config, data or number of processes)",
        overwrite_help="delete an earlier run's checkpoint and training state at OUT first "
        "(without it an existing OUT is refused)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
