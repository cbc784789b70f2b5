"""``neurofm train CONFIG --out DIR``: train a model from an experiment config."""

from __future__ import annotations

import argparse
from pathlib import Path


def train_and_save(model_config, sessions, training, window_s, out: Path, progress: bool = True):
    """Build, train and save a model; returns ``(model, TrainResult)``."""
    from neurofm.core.builder import build_model
    from neurofm.core.checkpoint import save_pretrained
    from neurofm.core.training import Trainer, resolve_device

    model = build_model(model_config, sessions).to(resolve_device(training.device))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, {len(sessions)} sessions, window {window_s} s")
    trainer = Trainer(model, sessions, training, window_s=window_s, progress=progress)
    result = trainer.fit()
    if result.validation_loss:
        print(
            f"trained {result.steps} steps in {result.seconds:.0f} s; "
            f"last validation loss {result.validation_loss[-1][1]:.4f}"
        )
    save_pretrained(model, model_config, out, extra={"window_s": window_s, "steps": trainer.step})
    return model, result


def run(args: argparse.Namespace) -> int:
    from neurofm.core.builder import ExperimentConfig
    from neurofm.core.config import load_config_file
    from neurofm.core.data import open_dataset

    config = load_config_file(args.config, ExperimentConfig)
    sessions = open_dataset(config.data.path, config.data.sessions)
    train_and_save(config.model, sessions, config.training, config.data.window_s, Path(args.out))
    print(f"checkpoint written to {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from an experiment config (JSON/YAML)")
    p.add_argument("config", help="ExperimentConfig file (.json, .yaml)")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.set_defaults(func=run)
