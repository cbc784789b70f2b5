"""``neurofm finetune CHECKPOINT --data NEW --out DIR``: fit a trained model to new sessions/animals.

The new sessions' neurons are added to the readout and only those new parameters are trained
(backbone, encoders and heads frozen); ``--unfreeze-after N`` trains everything from step N on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from neurofm.core.builder import TrainingConfig
    from neurofm.core.checkpoint import load_pretrained, save_pretrained
    from neurofm.core.commands.train import default_state_dir
    from neurofm.core.data import open_dataset
    from neurofm.core.training import finetune, resolve_device

    model, config = load_pretrained(args.checkpoint)
    meta = json.loads((Path(args.checkpoint) / "meta.json").read_text())
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
    result = finetune(
        model,
        training,
        sessions,
        window_s=window_s,
        unfreeze_after=args.unfreeze_after,
        progress=not args.no_progress,
        state_dir=default_state_dir(out),
        resume=args.resume,
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


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a checkpoint to new sessions or animals")
    p.add_argument("checkpoint", help="checkpoint folder to start from")
    p.add_argument("--data", required=True, help="folder of the new sessions")
    p.add_argument("--sessions", default=None, help="comma-separated session ids (default: all)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--unfreeze-after", type=int, default=None, help="train everything from step N")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--window-s", type=float, default=None, help="default: the checkpoint's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--resume", action="store_true", help="continue an interrupted fine-tuning run")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
