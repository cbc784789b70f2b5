"""``neurofm finetune CHECKPOINT --data NEW --out DIR``: fit a trained model to new sessions/animals.

The new sessions' neurons are added to the readout and only those new parameters are trained
(backbone, encoders and heads frozen); ``--unfreeze-after N`` trains everything from step N on.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from neurofm.core.commands.train import default_state_dir, note
    from neurofm.core.data import open_dataset
    from neurofm.core.model.checkpoint import load_checkpoint, save_pretrained
    from neurofm.core.storage.lock import FolderLock
    from neurofm.core.training import finetune, resolve_device
    from neurofm.core.training.config import TrainingConfig
    from neurofm.core.training.run import prepare_run_folders, run_fingerprint

    loaded = load_checkpoint(args.checkpoint)
    model, config, meta = loaded.model, loaded.config, loaded.meta
    window_s = args.window_s or float(meta.get("window_s", 2.0))
    training = TrainingConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=min(20, args.steps // 10),
        eval_every=max(args.steps // 5, 1),
        seed=args.seed,
        device=args.device,
        checkpoint_every=max(args.steps // 5, 1),
    )
    model = model.to(resolve_device(args.device))
    sessions = open_dataset(args.data, args.sessions.split(",") if args.sessions else None)
    out = Path(args.out)
    state = default_state_dir(out)
    settings = {
        "checkpoint": str(loaded.path.resolve()),
        "checkpoint_weights": loaded_weights_hash(loaded.path),
        "window_s": window_s,
        "unfreeze_after": args.unfreeze_after,
        "training": {  # the options given (the rest of the TrainingConfig follows from them)
            "steps": args.steps,
            "lr": args.lr,
            "batch_size": args.batch_size,
            "seed": args.seed,
            "device": args.device,
        },
    }
    fingerprint = run_fingerprint("finetune", settings, args.data, sessions, 1)
    with FolderLock(out, command="neurofm finetune", on_stale=lambda t: note("finetune", t)):
        prepared = prepare_run_folders(
            out,
            state,
            fingerprint,
            resume=args.resume or args.resume_from is not None,
            overwrite=args.overwrite,
            resume_from=args.resume_from,
        )
        for text in prepared.notes:
            note("finetune", text)
        result = finetune(
            model,
            training,
            sessions,
            window_s=window_s,
            unfreeze_after=args.unfreeze_after,
            progress=not args.no_progress,
            state_dir=state,
            resume=prepared.resume,
            resume_from=prepared.resume_from,
        )
        print(
            f"fine-tuned {len(result.new_parameters)} new parameter tensors for {len(sessions)} "
            f"session(s) in {result.train.seconds:.0f} s"
            + (
                f"; last validation loss {result.train.validation_loss[-1][1]:.4f}"
                if result.train.validation_loss
                else ""
            )
        )
        extra = {"window_s": window_s, "finetuned_from": str(args.checkpoint), "steps": args.steps}
        save_pretrained(model, config, out, extra=extra)
    print(f"checkpoint written to {out}")
    return 0


def loaded_weights_hash(path: Path) -> str | None:
    """The sha256 of a checkpoint's weights as its (verified) manifest records it."""
    from neurofm.core.storage.sealing import read_json

    files = read_json(path / "manifest.json").get("files", {})
    return files.get("weights.safetensors", {}).get("sha256")


def register(sub: argparse._SubParsersAction) -> None:
    from neurofm.core.commands.train import add_run_options

    p = sub.add_parser("finetune", help="fine-tune a checkpoint to new sessions or animals")
    p.add_argument("checkpoint", help="checkpoint folder to start from")
    p.add_argument("--data", required=True, help="folder of the new sessions")
    p.add_argument("--sessions", default=None, help="comma-separated session ids (default: all)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    p.add_argument("--unfreeze-after", type=int, default=None, help="train everything from step N")
    p.add_argument("--lr", type=float, default=3e-3, help="learning rate (default 3e-3)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per step (default 8)")
    p.add_argument("--window-s", type=float, default=None, help="default: the checkpoint's")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: cuda when available")  # fmt: skip
    add_run_options(
        p,
        resume_help="continue an interrupted fine-tuning run (refused if the state is another "
        "run's)",
        overwrite_help="delete an earlier run's checkpoint and state at OUT first "
        "(without it an existing OUT is refused)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
