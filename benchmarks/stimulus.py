"""The stimulus path: movie -> responses on simulated V1, for backbone variants and seeds.

    python benchmarks/stimulus.py     # latent-only decoder vs the preset, 2 seeds each (~3 min)
    python benchmarks/stimulus.py --variants '{"n_heads": 4, "n_latents": 64}' --seeds 0,1,2

Each variant (a JSON object of backbone settings over the ``small`` preset) trains a model from
the movie alone (task ``responses_from_stimulus``; with ``--behaviour``, movie and running on
``responses_from_stimulus_behaviour``) for ``--steps`` steps per seed, and reports the correlation
of predicted with expected (noise-free) calcium on the test tier (10 test clips x 5 repeats per
session, so the figure is not one clip's), with an LN model fitted to the same inputs.
``--readout`` picks the readout plugin (default ``neuron_embedding``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from modalities import FRAME, correlations

from neurofm.core.backbone.presets import get_preset
from neurofm.core.baselines.ln import fit_linear_nonlinear
from neurofm.core.builder import ModelConfig, TrainingConfig, build_model
from neurofm.core.data import open_dataset
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig
from neurofm.core.tasks import get_task
from neurofm.core.training.trainer import Trainer

MOVIE = {"type": "movie", **FRAME}


def ln_r(sessions, inputs: list[str], normalization) -> float:
    """LN model per session (``neurofm.core.baselines.ln``): mean r with expected calcium."""
    rs = []
    for s in sessions:
        ln = fit_linear_nonlinear(s, inputs, "calcium", normalization)
        ts = s.stream_timestamps("calcium")
        idx = np.concatenate(
            [np.flatnonzero((ts >= iv.start) & (ts < iv.end)) for iv in s.intervals("test")]
        )
        pred, true = ln.predict(ts[idx]), np.asarray(s.ground_truth("expected_calcium"))[idx]
        rs += [np.corrcoef(pred[:, i], true[:, i])[0, 1] for i in range(pred.shape[1])]
    return float(np.nanmean(rs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--variants", nargs="*", default=['{"decoder_reads_inputs": false}', "{}"],
        help="JSON objects of backbone settings over the small preset; {} is the preset itself",
    )  # fmt: skip
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--readout", default="neuron_embedding", help="readout plugin name")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--behaviour", action="store_true", help="movie + running -> responses")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None, help="simulated data folder (default: a temporary one)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sim = SimulationConfig.tiny().model_copy(
        update=dict(stimulus="movie", n_train_trials=80, trial_duration_s=4.0,
                    neurons_per_session=64, n_test_clips=10)
    )  # fmt: skip
    root = Path(args.data or tempfile.mkdtemp()) / "stimulus"
    if not root.exists():
        simulate_to_disk(root, sim, progress=False)
    sessions = open_dataset(root)
    streams = {"calcium": {"type": "calcium"}, "movie": MOVIE}
    if args.behaviour:
        streams["running"] = {"type": "running"}
    task = "responses_from_stimulus_behaviour" if args.behaviour else "responses_from_stimulus"
    print(f"{task}: {args.steps} steps, lr {args.lr:g}, batch 8; r with expected calcium")
    ln_printed = False
    for variant in args.variants:
        backbone = get_preset("small").model_copy(update=json.loads(variant))
        rs = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            torch.manual_seed(seed)
            config = ModelConfig.model_validate(
                {"backbone": backbone.model_dump(), "modalities": streams,
                 "readout": {"type": args.readout}, "heads": {"calcium": {"type": "poisson"}}}
            )  # fmt: skip
            model = build_model(config, sessions)
            training = TrainingConfig(
                steps=args.steps, batch_size=8, lr=args.lr, warmup_steps=20, eval_every=10**6,
                tasks={task: 1.0},
            )  # fmt: skip
            start = time.perf_counter()
            Trainer(model, sessions, training, window_s=2.0, progress=False).fit()
            rs.append(correlations(model.eval(), sessions, get_task(task), None))
            print(f"  {variant} seed {seed}: r {rs[-1]:.3f} ({time.perf_counter() - start:.0f} s)")
        print(f"{variant}: mean r {np.mean(rs):.3f} over {len(rs)} seeds", flush=True)
        if not ln_printed:
            inputs = [n for n in streams if n != "calcium"]
            print(
                f"LN ({', '.join(inputs)}): r {ln_r(sessions, inputs, model.normalization()):.3f}"
            )
            ln_printed = True


if __name__ == "__main__":
    main()
