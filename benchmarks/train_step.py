"""Training step time, tokens/s, model FLOP utilisation (MFU) and operations per step.

MFU = (FLOPs of one forward + backward, counted by ``torch.utils.flop_counter``) / step time,
relative to this machine's measured fp32 matmul peak (best of square matmuls, same thread count).

Operations per step: the tensor operations one whole training step (forward, backward,
optimizer) dispatches, views and host reads of CPU scalars left out. On a GPU each is at least
one kernel launch (some microseconds of host time each), so for a small model their number,
not the arithmetic, sets the step time there; on a CPU it is counted, not timed.

    python benchmarks/train_step.py [--presets tiny,7M] [--steps 10] [--batch-size 16]
        [--sessions 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from neurofm.core.data import open_dataset
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.distributed import TrainStep


def matmul_peak(seconds: float = 1.0) -> float:
    """Best fp32 matmul FLOP/s over a few square sizes."""
    best = 0.0
    for n in (256, 512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        reps, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 4:
            a @ b
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


class OperationCount(TorchDispatchMode):
    """Counts the tensor operations dispatched inside it, views and host reads of CPU scalars
    (the optimizer's step counts) left out: the operations that launch kernels on a GPU."""

    SKIP = frozenset({"lift_fresh", "detach", "split", "unbind", "split_with_sizes",
                      "_local_scalar_dense"})  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func._schema.name.split("::")[-1] not in self.SKIP:
            self.count += 1
        return func(*args, **(kwargs or {}))


def measure(preset: str, sessions, sim, args) -> None:
    torch.manual_seed(0)
    model = build_model(
        default_model_config(
            preset, frame_size=(sim.height, sim.width), stimulus_path=args.stimulus_path
        ),
        sessions,
    )
    training = TrainingConfig(steps=args.steps + 2, batch_size=args.batch_size, warmup_steps=1,
                              eval_every=10_000, device="cpu")  # fmt: skip
    trainer = Trainer(model, sessions, training, window_s=args.window_s, progress=False)
    tokens: list[int] = []
    hook = model.backbone.register_forward_hook(
        lambda m, inp, out: tokens.append(int(inp[0].x.shape[0] + inp[1].x.shape[0]))
    )
    batch = trainer.loader.load(trainer.loader.plan.plan(10_000))
    step = TrainStep(model)
    with FlopCounterMode(display=False) as counter:
        total, _ = step(batch.samples, batch.tasks, np.random.default_rng(0))
        total.backward()
    flops = counter.get_total_flops()
    model.zero_grad(set_to_none=True)
    tokens.clear()
    trainer.train_step()  # warm-up
    with OperationCount() as operations:
        trainer.train_step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - start)
    hook.remove()
    step_s = statistics.median(times)
    n_params = sum(p.numel() for p in model.parameters())
    mean_tokens = statistics.mean(tokens[1:])
    mfu = flops / step_s / args.peak
    print(f"{preset:>5}: {n_params / 1e6:5.2f}M params | {step_s * 1e3:7.1f} ms/step | "
          f"{mean_tokens / step_s:9.0f} tokens/s ({mean_tokens:.0f} input+query tokens/step) | "
          f"{flops / 1e9:6.2f} GFLOP/step | {flops / step_s / 1e9:6.1f} GFLOP/s | MFU {mfu:.1%} | "
          f"{operations.count} operations/step")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presets", default="tiny,7M", help="comma-separated backbone presets (default tiny,7M)"
    )
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--window-s", type=float, default=2.0)
    parser.add_argument("--sessions", type=int, default=2,
                        help="simulated sessions (one animal), default 2")  # fmt: skip
    parser.add_argument(
        "--stimulus-path", action=argparse.BooleanOptionalAction, default=True,
        help="the default model (stimulus path), or the model before it (--no-stimulus-path)",
    )  # fmt: skip
    args = parser.parse_args()
    args.peak = matmul_peak()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; measured fp32 matmul "
          f"peak {args.peak / 1e9:.1f} GFLOP/s; batch {args.batch_size}, window {args.window_s} s")  # fmt: skip
    sim = SimulationConfig(n_animals=1, sessions_per_animal=args.sessions, n_train_trials=10)
    with tempfile.TemporaryDirectory() as tmp:
        sessions = open_dataset(simulate_to_disk(Path(tmp) / "data", sim, progress=False))
        for preset in args.presets.split(","):
            measure(preset, sessions, sim, args)


if __name__ == "__main__":
    main()
