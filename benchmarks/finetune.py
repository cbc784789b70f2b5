"""Zero-shot vs fine-tuned vs from-scratch on a held-out simulated animal.

Simulates 3 animals, trains on animals 0 and 1, then on animal 2 compares: the pretrained model
with the new neurons added but untrained (zero-shot), the pretrained model fine-tuned (new neurons
only, optionally unfrozen), and a model trained from scratch on animal 2 for the same steps.
Figures: validation loss (Poisson, lower is better) and single-trial correlation r of
stimulus+behaviour -> responses on the test tier.

    python benchmarks/finetune.py [--pretrain-steps 300] [--steps 150] [--unfreeze-after 100]
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
from neurofm.core.evaluation.evaluate import evaluate
from neurofm.core.model.builder import build_model
from neurofm.core.model.neurofm import NeuroFM
from neurofm.core.model.presets import default_model_config
from neurofm.core.tokens.tasks import TaskSampler
from neurofm.core.training import Trainer, finetune
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.distributed import TrainStep
from neurofm.core.training.finetune import add_sessions
from neurofm.core.training.trainer import validation_loss

TASK = "responses_from_stimulus_behaviour"
TASKS = {TASK: 2.0, "behaviour_from_responses": 1.0, "forecast": 1.0}


def figures(model: NeuroFM, sessions, window_s: float) -> tuple[float, float]:
    model.eval()
    loss = validation_loss(TrainStep(model), sessions, TaskSampler.from_mapping({TASK: 1}).tasks,
                           window_s)  # fmt: skip
    result = evaluate(model, sessions, [TASK], window_s=window_s, progress=False)
    return loss, result.tasks[TASK]["calcium"].summary["single_trial_r"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--unfreeze-after", type=int, default=None)
    parser.add_argument("--window-s", type=float, default=1.0)
    parser.add_argument(
        "--stimulus-path", action=argparse.BooleanOptionalAction, default=True,
        help="the default model (stimulus path), or the model before it (--no-stimulus-path)",
    )  # fmt: skip
    args = parser.parse_args()
    sim = SimulationConfig.tiny().model_copy(update={"n_animals": 3, "n_train_trials": 8})
    w = args.window_s

    def config(steps: int, lr: float) -> TrainingConfig:
        return TrainingConfig(steps=steps, batch_size=8, lr=lr, warmup_steps=steps // 10,
                              eval_every=10**6, device="cpu", tasks=TASKS)  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        sessions = open_dataset(simulate_to_disk(Path(tmp) / "data", sim, progress=False))
        held = [s for s in sessions if s.animal_id == sessions[-1].animal_id]
        seen = [s for s in sessions if s not in held]
        model_config = default_model_config(
            "tiny", frame_size=(sim.height, sim.width), stimulus_path=args.stimulus_path
        )
        start = time.perf_counter()
        torch.manual_seed(0)
        model = build_model(model_config, seen)
        Trainer(model, seen, config(args.pretrain_steps, 3e-3), window_s=w, progress=False).fit()
        model.save_pretrained(Path(tmp) / "pretrained")
        print(f"pretrained on {len(seen)} sessions of 2 animals ({args.pretrain_steps} steps, "
              f"{time.perf_counter() - start:.0f} s); held-out animal: {len(held)} sessions")  # fmt: skip

        zero = NeuroFM.from_pretrained(Path(tmp) / "pretrained")
        add_sessions(zero, held)
        rows = [("zero-shot (new neurons untrained)", *figures(zero, held, w))]
        tuned = NeuroFM.from_pretrained(Path(tmp) / "pretrained")
        finetune(tuned, config(args.steps, 1e-2), held, window_s=w,
                 unfreeze_after=args.unfreeze_after)  # fmt: skip
        label = "fine-tuned (new neurons only)" if args.unfreeze_after is None else (
            f"fine-tuned (unfrozen after {args.unfreeze_after})")  # fmt: skip
        rows.append((label, *figures(tuned, held, w)))
        torch.manual_seed(0)
        scratch = build_model(model_config, held)
        Trainer(scratch, held, config(args.steps, 3e-3), window_s=w, progress=False).fit()
        rows.append((f"from scratch ({args.steps} steps)", *figures(scratch, held, w)))
        print(f"{'model':<36} {'val loss':>9} {'test r':>7}")
        for name, loss, r in rows:
            print(f"{name:<36} {loss:9.4f} {r:7.3f}")


if __name__ == "__main__":
    main()
