"""Loader throughput vs the training step's consumption, measured in the same run.

Prints windows/s delivered by the torchdata loader alone (several worker counts) and windows/s the
training step consumes (batch / step time), and their ratio (target: >= 10x on 2 CPU cores).

    python benchmarks/loader.py [--preset tiny] [--steps 20] [--batches 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from neurofm.core.data import open_dataset
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.loader import TrainLoader


def loader_rate(sessions, norm, batch: int, workers: int, batches: int, window_s: float) -> float:
    """Windows per second the loader delivers when nothing else consumes CPU."""
    loader = TrainLoader(sessions, norm, window_s=window_s, batch_size=batch,
                         tasks={"forecast": 1.0}, num_workers=workers, prefetch=8)  # fmt: skip
    next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batches * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--window-s", type=float, default=2.0)
    parser.add_argument(
        "--stimulus-path", action=argparse.BooleanOptionalAction, default=True,
        help="the default model (stimulus path), or the model before it (--no-stimulus-path)",
    )  # fmt: skip
    args = parser.parse_args()
    sim = SimulationConfig(n_animals=1, sessions_per_animal=2, n_train_trials=20)
    with tempfile.TemporaryDirectory() as tmp:
        sessions = open_dataset(simulate_to_disk(Path(tmp) / "data", sim, progress=False))
        config = default_model_config(
            args.preset, frame_size=(sim.height, sim.width), stimulus_path=args.stimulus_path
        )
        torch.manual_seed(0)
        model = build_model(config, sessions)
        norm = model.normalization()
        print(f"data: {len(sessions)} sessions, movie {sim.height}x{sim.width}, "
              f"{sim.neurons_per_session} neurons; window {args.window_s} s, "
              f"batch {args.batch_size}; torch threads {torch.get_num_threads()}")  # fmt: skip
        for workers in (1, 2, 4):
            rate = loader_rate(sessions, norm, args.batch_size, workers, args.batches,
                               args.window_s)  # fmt: skip
            print(f"loader alone, {workers} worker thread(s): {rate:8.0f} windows/s")
        training = TrainingConfig(steps=args.steps + 2, batch_size=args.batch_size,
                                  warmup_steps=1, eval_every=10_000, device="cpu")  # fmt: skip
        trainer = Trainer(model, sessions, training, window_s=args.window_s, progress=False)
        trainer.train_step()
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        step_s = (time.perf_counter() - start) / args.steps
        consume = args.batch_size / step_s
        print(
            f"training step ({args.preset}): {step_s * 1e3:.1f} ms/step = {consume:.0f} windows/s"
        )
        best = loader_rate(sessions, norm, args.batch_size, 2, args.batches, args.window_s)
        print(f"loader (2 threads) / step consumption: {best / consume:.1f}x")


if __name__ == "__main__":
    main()
