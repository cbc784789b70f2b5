"""Per-neuron sample times: the stimulus-path model with scan-phase offsets used vs ignored.

    python benchmarks/scan_offsets.py                       # seeds 0,1, 1 thread
    python benchmarks/scan_offsets.py --steps 300 --seeds 0 --data DIR

Simulated V1 sessions imaged at a slow two-photon rate (``--rate``, 8 Hz) with a raster scan:
each neuron is sampled at its frame's time plus its scan offset (``apply_scan_offsets``; the
offsets, 0 to one frame, 125 ms at 8 Hz, are written to ``units/time_offset_s``). The same data
and seed train the default stimulus-path model (``movie_core`` + ``retinotopic``, ``tiny``
backbone) twice on ``responses_from_stimulus``: with ``unit_time_offsets`` (each neuron's calcium
tokens and stimulus reads at ``t_k + offset_n``) and without (everything at the frame times).
Reported: the mean over neurons of the correlation of predicted with expected (noise-free) calcium
on the test tier, per seed, and the paired difference.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from stimulus import train_and_score

from neurofm.core.data import open_dataset
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.model.presets import default_model_config

FRAME = (18, 32)
TASK = "responses_from_stimulus"


def model_config(preset: str, use_offsets: bool) -> ModelConfig:
    """The default stimulus-path model reduced to movie -> calcium."""
    default = default_model_config(preset, frame_size=FRAME, stimulus_path=True).model_dump()
    return ModelConfig.model_validate(
        {"backbone": default["backbone"],
         "modalities": {"movie": default["modalities"]["movie"], "calcium": {"type": "calcium"}},
         "readout": default["readout"], "heads": {"calcium": {"type": "poisson"}},
         "unit_time_offsets": use_offsets}
    )  # fmt: skip


def simulation(rate_hz: float) -> SimulationConfig:
    return SimulationConfig.tiny().model_copy(
        update=dict(stimulus="movie", neural_rate_hz=rate_hz, apply_scan_offsets=True,
                    n_train_trials=40, trial_duration_s=4.0, neurons_per_session=32,
                    n_test_clips=4)
    )  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--rate", type=float, default=8.0, help="neural (imaging) rate, Hz")
    p.add_argument("--preset", default="tiny", help="backbone preset")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None, help="simulated data folder (default: a temporary one)")
    p.add_argument("--out", default="benchmarks/results/scan_offsets", help="JSON")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(args.data or tempfile.mkdtemp()) / f"scan_offsets_{args.rate:g}hz"
    if not (root / "simulation.json").exists():
        simulate_to_disk(root, simulation(args.rate), progress=False, overwrite=True)
    sessions = open_dataset(root)
    offsets = np.concatenate([s.units.time_offset_s for s in sessions])
    print(f"{len(sessions)} sessions x {offsets.size // len(sessions)} neurons at {args.rate:g} Hz, "
          f"offsets {offsets.min() * 1e3:.0f}-{offsets.max() * 1e3:.0f} ms; {TASK}, "
          f"{args.steps} steps, lr {args.lr:g}, batch 8, {args.preset} backbone, "
          f"{args.threads} thread(s); r with expected calcium (test tier)", flush=True)  # fmt: skip
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        row: dict = {"seed": seed}
        for label, use in (("used", True), ("ignored", False)):
            torch.manual_seed(seed)
            model = build_model(model_config(args.preset, use), sessions)
            row[label], row[f"{label}_seconds"] = train_and_score(
                model, sessions, TASK, args.steps, args.lr, seed
            )
            print(f"  seed {seed}, offsets {label}: r {row[label]:.3f} "
                  f"({row[f'{label}_seconds']:.0f} s)", flush=True)  # fmt: skip
        rows.append(row)
    gain = np.array([r["used"] - r["ignored"] for r in rows])
    for label in ("used", "ignored"):
        rs = [r[label] for r in rows]
        print(
            f"offsets {label}: mean r {np.mean(rs):.3f} (sd {np.std(rs):.3f}) over {len(rs)} seeds"
        )
    print(
        f"gain (used - ignored, paired): {gain.mean():+.3f} (per seed {np.round(gain, 3).tolist()})"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"task": TASK, "rate_hz": args.rate, "steps": args.steps, "preset": args.preset,
               "threads": args.threads, "seeds": rows}  # fmt: skip
    (out / "scan_offsets.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
