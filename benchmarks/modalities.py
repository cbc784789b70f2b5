"""Per modality: response-prediction r (predicted vs expected calcium, test tier) with vs without
that modality, on simulated data; and orientation recovery from gratings.

    python benchmarks/modalities.py [--steps 600]

Each comparison trains two tiny models from the same seed that differ only in one input stream.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from neurofm.core.builder import ModelConfig, TrainingConfig, build_model
from neurofm.core.data import open_dataset
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig
from neurofm.core.data.windows import load_window, tile_intervals
from neurofm.core.tasks import get_task
from neurofm.core.training.trainer import Trainer

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "plugins" / "modalities"))
from test_parametric_signal import preferred_orientation

FRAME = {"height": 18, "width": 32, "patch_height": 6, "patch_width": 8}
CASES = {  # modality -> (stimulus, encoder config, task)
    "movie": ("movie", {"type": "movie", **FRAME}, "responses_from_stimulus_behaviour"),
    "image": ("image", {"type": "image", **FRAME}, "responses_from_stimulus_behaviour"),
    "parametric": ("grating", {"type": "parametric"}, "responses_from_stimulus_behaviour"),
    "running": ("movie", {"type": "running"}, "responses_from_stimulus_behaviour"),
    "pupil": ("movie", {"type": "pupil"}, "responses_from_stimulus_behaviour"),
    "gaze": ("movie", {"type": "gaze"}, "responses_from_stimulus_behaviour"),
    "spikes": ("movie", {"type": "spikes"}, "forecast"),
}
BASE = {"movie": {"type": "movie", **FRAME}, "running": {"type": "running"}}


def _r(model, sessions, task) -> float:
    model.eval()
    rs = []
    for s in sessions:
        pred, true = [], []
        for t0, _ in tile_intervals(s, "test", 2.0):
            w = load_window(s, t0, 2.0, model.normalization(), ground_truth=["expected_calcium"])
            with torch.no_grad():
                out = next(o for o in model([w], [task]).targets if o.stream == "calcium")
            idx = ((out.times * 30).round().long()).clamp(
                max=w.truth["expected_calcium"].shape[0] - 1
            )
            pred.append(model.head("calcium").predict(out.raw).numpy())
            true.append(w.truth["expected_calcium"][idx].numpy())
        p, y = np.concatenate(pred), np.concatenate(true)
        rs += [np.corrcoef(p[:, i], y[:, i])[0, 1] for i in range(p.shape[1])]
    return float(np.nanmean(rs))


def _train(sessions, modalities, task, steps) -> object:
    torch.manual_seed(0)
    heads = {"calcium": {"type": "poisson"}}
    config = ModelConfig.model_validate(
        {"modalities": modalities, "readout": {"type": "neuron_embedding"}, "heads": heads}
    )
    model = build_model(config, sessions)
    training = TrainingConfig(
        steps=steps, batch_size=8, lr=3e-3, warmup_steps=20, eval_every=10**6, tasks={task: 1.0}
    )
    Trainer(model, sessions, training, window_s=2.0, progress=False).fit()
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--only", nargs="*", default=list(CASES))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    print(f"{'modality':<11} {'r with':>7} {'r without':>9}   ({args.steps} steps, tiny backbone)")
    for name in args.only:
        stimulus, encoder, task_name = CASES[name]
        sim = SimulationConfig.tiny().model_copy(
            update=dict(stimulus=stimulus, include_spikes=True, n_train_trials=20,
                        trial_duration_s=4.0, neurons_per_session=24)
        )  # fmt: skip
        data = root / stimulus
        if not data.exists():
            simulate_to_disk(data, sim, progress=False)
        sessions = open_dataset(data)
        base = {"calcium": {"type": "calcium"}}
        base |= {k: v for k, v in BASE.items() if stimulus == "movie" and k != name}
        task = get_task(task_name)
        with_it = _r(
            _train(sessions, base | {name: encoder}, task_name, args.steps), sessions, task
        )
        without = _r(_train(sessions, base, task_name, args.steps), sessions, task)
        print(f"{name:<11} {with_it:7.3f} {without:9.3f}")
        if name == "parametric":
            model = _train(sessions, base | {name: encoder}, task_name, args.steps)
            errors = []
            for s in sessions:
                est = preferred_orientation(model, s.session_id, len(s.units))
                true = np.asarray(s.ground_truth("preferred_orientation_deg"))
                errors.append(np.abs((est - true + 90) % 180 - 90))
            e = np.concatenate(errors)
            print(f"  orientation within 22.5 deg: {(e < 22.5).mean():.2f} (chance 0.25)")


if __name__ == "__main__":
    main()
