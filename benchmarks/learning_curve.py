"""How the stimulus-driven figures grow with training steps, for a task mix, on the demo's data.

    python benchmarks/learning_curve.py                                   # the default mix
    python benchmarks/learning_curve.py --tasks '{"responses_from_stimulus_behaviour": 1}'
    python benchmarks/learning_curve.py --steps 2400 --evals 4 --seed 1 --out curve.json

Trains the demo's model (``default_model_config("small")``, batch 16, learning rate 2e-3, 2 s
windows, one torch thread by default) on the demo's simulated data (``SimulationConfig()`` with
``--seed``; simulated into ``--data`` when that folder is absent) with the given task mix, and
evaluates stimulus+behaviour -> responses and stimulus -> responses on the test tier ``--evals``
times, evenly spaced (the schedule runs to ``--steps``, so the middle evaluations are at a higher
learning rate than the last). Prints single-trial r and its fraction of the noise ceiling at each
evaluation, and writes them as JSON with ``--out``. Unlike ``neurofm demo`` it holds no
validation intervals out (all train intervals train). Measured: BENCHMARKS.md, "In-silico
experiments".
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from neurofm.core.data import open_dataset
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig
from neurofm.core.evaluation.evaluate import evaluate
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config
from neurofm.core.storage.files import atomic_write_text
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig

TASKS = ("responses_from_stimulus_behaviour", "responses_from_stimulus")


def curve(sessions, sim: SimulationConfig, tasks: dict[str, float], args) -> list[dict]:
    torch.manual_seed(args.seed)
    model = build_model(default_model_config("small", frame_size=(sim.height, sim.width)), sessions)
    training = TrainingConfig(
        steps=args.steps, batch_size=16, lr=2e-3, seed=args.seed, device="cpu", tasks=tasks,
        warmup_steps=min(100, args.steps // 10), eval_every=10**9,
    )  # fmt: skip
    trainer = Trainer(model, sessions, training, window_s=2.0, progress=False)
    every = max(args.steps // args.evals, 1)
    rows, start = [], time.perf_counter()
    for step in range(1, args.steps + 1):
        trainer.train_step()
        if step % every and step != args.steps:
            continue
        result = evaluate(model, sessions, TASKS, window_s=2.0, progress=False, baselines=False)
        row: dict = {"step": step, "seconds": round(time.perf_counter() - start)}
        for task in TASKS:
            summary = result.tasks[task]["calcium"].summary
            row[task] = {
                "single_trial_r": summary["single_trial_r"],
                "fraction_of_ceiling": summary.get("fraction_of_mean_ceiling", float("nan")),
            }
        rows.append(row)
        sb, s = row[TASKS[0]], row[TASKS[1]]
        print(f"step {step:5d} ({row['seconds']:5d} s): stimulus+behaviour r "
              f"{sb['single_trial_r']:.3f} ({sb['fraction_of_ceiling']:.3f} of the ceiling), "
              f"stimulus alone {s['single_trial_r']:.3f}", flush=True)  # fmt: skip
        model.train()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tasks", default=None, help="JSON task -> weight (default: the default mix)"
    )
    parser.add_argument("--steps", type=int, default=830)
    parser.add_argument("--evals", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--data", default=None, help="the simulated sessions (default: a temporary folder)"
    )
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tasks = json.loads(args.tasks) if args.tasks else TrainingConfig().tasks
    sim = SimulationConfig().model_copy(update={"seed": args.seed})
    print(f"tasks {tasks}; {args.steps} steps, seed {args.seed}, {args.threads} thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "data"
        if not data.exists():
            simulate_to_disk(data, sim, progress=False)
        rows = curve(open_dataset(data), sim, tasks, args)
    if args.out:
        atomic_write_text(Path(args.out), json.dumps({"tasks": tasks, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
