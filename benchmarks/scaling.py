"""Data and model scaling in miniature: held-out-animal quality after fine-tuning, as the number of
pretraining sessions (one animal each) and the backbone size grow, with power-law fits.

For each number of pretraining sessions ``n`` (and each backbone size at the largest ``n``): a fresh
model is pretrained for the same number of steps on the sessions of the first ``n`` animals, then
fine-tuned to a held-out animal with :func:`neurofm.core.training.finetune.finetune` (only the new
neurons' readout parameters train; backbone, encoders and heads frozen), then scored on the held-out
animal's test tier (stimulus+behaviour -> responses: single-trial r and r / noise ceiling). ``n = 0``
(a random, frozen backbone; readout only) is the no-pretraining reference. The fit is
``1 - r/ceiling = a * x^-b`` over ``x`` = sessions (or backbone parameters).

    python benchmarks/scaling.py --quick                      # smoke run, < 3 min
    python benchmarks/scaling.py --sessions 1,2,4,8 --sizes tiny,small,1.6M

Writes ``scaling.json`` and ``scaling.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from quality import dataset, model_config, quiet_loss_monitor, simulation, train_neurofm

from neurofm.core.backbone.presets import DEPRECATED_ALIASES
from neurofm.core.evaluation.evaluate import evaluate
from neurofm.core.model.builder import build_model
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.finetune import finetune

# backbone sizes: a named preset and optional overrides of its numbers
SIZES = {
    "tiny": ("tiny", None),
    "small": ("small", None),
    "1.6M": ("1.6M", None),
}


def power_law(x: np.ndarray, y: np.ndarray) -> dict[str, float] | None:
    """Least-squares fit of ``y = a * x^-b`` in log-log space (positive pairs only)."""
    ok = (x > 0) & (y > 0) & np.isfinite(y)
    if ok.sum() < 2:
        return None
    slope, intercept = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    return {"a": float(np.exp(intercept)), "b": float(-slope)}


def held_out_quality(model, held_out, args) -> dict[str, float]:
    """Fine-tune ``model`` to the held-out session (readout only), score its test tier."""
    config = TrainingConfig(
        steps=args.finetune_steps, batch_size=8, lr=5e-3, warmup_steps=5, eval_every=10**9,
        checkpoint_every=10**9, device="cpu", num_workers=1, prefetch=2, seed=args.seed,
    )  # fmt: skip
    start = time.perf_counter()
    finetune(model, config, [held_out], window_s=args.window)
    tuned_s = time.perf_counter() - start
    result = evaluate(
        model, [held_out], ["responses_from_stimulus_behaviour"], window_s=args.window,
        progress=False, baselines=False,
    )  # fmt: skip
    summary = result.tasks["responses_from_stimulus_behaviour"]["calcium"].summary
    return {
        "single_trial_r": summary["single_trial_r"],
        "fraction_of_ceiling": summary.get("fraction_of_mean_ceiling", float("nan")),
        "feve": summary.get("feve", float("nan")),
        "finetune_seconds": tuned_s,
    }


def run_one(sessions, held_out, sim, size: str, args, untrained_on=None) -> dict:
    """Pretrain on ``sessions`` (or build untrained on ``untrained_on``), fine-tune, score."""
    preset, backbone = SIZES[size]
    if sessions:
        model, info = train_neurofm(
            sessions, sim, preset=preset, backbone=backbone, seconds=1e9, window_s=args.window,
            seed=args.seed, max_steps=args.pretrain_steps,
        )  # fmt: skip
    else:  # no pretraining: a random backbone, frozen while the held-out readout trains
        torch.manual_seed(args.seed)
        model = build_model(model_config(sim, preset, backbone), untrained_on)
        info = {"steps": 0, "parameters": sum(p.numel() for p in model.parameters())}
    out = {"size": size, "sessions": len(sessions), "pretrain_steps": info["steps"],
           "parameters": info["parameters"],
           "backbone_parameters": sum(p.numel() for p in model.backbone.parameters()),
           **held_out_quality(model, held_out, args)}  # fmt: skip
    print(f"  {size:6s} n={len(sessions):2d}: r={out['single_trial_r']:.3f} "
          f"r/ceiling={out['fraction_of_ceiling']:.3f} ({info['steps']} pretrain steps)")  # fmt: skip
    return out


def plot(runs: list[dict], fits: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    for size in sorted({r["size"] for r in runs}):
        pts = sorted((r["sessions"], r["fraction_of_ceiling"]) for r in runs if r["size"] == size)
        pretrained = [(n, y) for n, y in pts if n > 0]
        if len(pretrained) > 1:
            a.plot(*zip(*pretrained, strict=True), "o-", label=f"{size}")
        for n, y in pts:
            if n == 0:
                a.axhline(y, ls=":", color="gray", label=f"{size}, no pretraining")
    if fits.get("sessions"):
        x = np.geomspace(1, max(r["sessions"] for r in runs), 50)
        f = fits["sessions"]
        a.plot(
            x,
            1 - f["a"] * x ** -f["b"],
            "k--",
            lw=0.8,
            label=f"fit: 1 - {f['a']:.2f} n^{-f['b']:.2f}",
        )
    a.set_xscale("log", base=2)
    a.set_xlabel("pretraining sessions (animals)")
    a.set_ylabel("held-out r / noise ceiling")
    a.legend(fontsize=7)
    largest = max(r["sessions"] for r in runs)
    pts = sorted((r["backbone_parameters"], r["fraction_of_ceiling"], r["size"]) for r in runs
                 if r["sessions"] == largest)  # fmt: skip
    b.plot([p[0] for p in pts], [p[1] for p in pts], "o-")
    for x, y, s in pts:
        b.annotate(s, (x, y), fontsize=7)
    if fits.get("parameters"):
        x = np.geomspace(pts[0][0], pts[-1][0], 50)
        f = fits["parameters"]
        b.plot(x, 1 - f["a"] * x ** -f["b"], "k--", lw=0.8, label=f"fit: b = {f['b']:.3f}")
        b.legend(fontsize=7)
    b.set_xscale("log")
    b.set_xlabel(f"backbone parameters ({largest} pretraining sessions)")
    b.set_ylabel("held-out r / noise ceiling")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="default benchmarks/results/scaling[_quick]")
    p.add_argument(
        "--data",
        default=None,
        help="simulated data folder (default runs/benchmark-data/scaling[-quick])",
    )
    p.add_argument("--quick", action="store_true", help="small data, few steps (< 3 min)")
    p.add_argument("--sessions", default=None, help="pretraining session counts (default 1,2,4,8)")
    known = ", ".join(SIZES)
    p.add_argument(
        "--sizes", default=None,
        help=f"backbone sizes at the largest count, comma-separated ({known}; old preset names "
        "such as 1M are accepted as deprecated aliases; default tiny,small,1.6M)",
    )  # fmt: skip
    p.add_argument("--size", default="small", help=f"backbone size of the session sweep ({known})")
    p.add_argument("--pretrain-steps", type=int, default=None)
    p.add_argument("--finetune-steps", type=int, default=None)
    p.add_argument("--window", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    quiet_loss_monitor()
    counts = [int(c) for c in (args.sessions or ("1,2,4" if args.quick else "1,2,4,8")).split(",")]
    sizes = (args.sizes or ("tiny,small" if args.quick else "tiny,small,1.6M")).split(",")
    sizes = [DEPRECATED_ALIASES.get(s, s) for s in sizes]
    args.size = DEPRECATED_ALIASES.get(args.size, args.size)
    args.pretrain_steps = args.pretrain_steps or (300 if args.quick else 1500)
    args.finetune_steps = args.finetune_steps or (100 if args.quick else 300)
    out = Path(args.out or f"benchmarks/results/scaling{'_quick' * args.quick}")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    sim = simulation(
        args.quick, args.seed, n_animals=max(counts) + 1, sessions_per_animal=1,
        neurons_per_session=24 if args.quick else 32, n_train_trials=8 if args.quick else 16,
    )  # fmt: skip
    data = args.data or f"runs/benchmark-data/scaling{'-quick' * args.quick}"
    sessions = dataset(Path(data), sim)
    pretrain, held_out = sessions[:-1], sessions[-1]
    print(f"held-out animal {held_out.animal_id}; pretraining on up to {len(pretrain)} animals")
    runs = [run_one([], held_out, sim, args.size, args, untrained_on=pretrain[:1])]
    runs += [run_one(pretrain[:n], held_out, sim, args.size, args) for n in counts]
    runs += [
        run_one(pretrain[: max(counts)], held_out, sim, s, args) for s in sizes if s != args.size
    ]
    session_runs = [r for r in runs if r["size"] == args.size and r["sessions"] > 0]
    size_runs = [r for r in runs if r["sessions"] == max(counts)]
    fits = {
        "sessions": power_law(np.array([r["sessions"] for r in session_runs], float),
                              1 - np.array([r["fraction_of_ceiling"] for r in session_runs])),
        "parameters": power_law(np.array([r["backbone_parameters"] for r in size_runs], float),
                                1 - np.array([r["fraction_of_ceiling"] for r in size_runs])),
    }  # fmt: skip
    payload = {
        "runs": runs, "fits": fits, "simulation": sim.model_dump(),
        "pretrain_steps": args.pretrain_steps, "finetune_steps": args.finetune_steps,
        "window_s": args.window, "threads": args.threads,
        "machine": f"{platform.machine()} {platform.system()}, torch {torch.__version__}",
        "total_seconds": time.perf_counter() - start,
        "command": "python benchmarks/scaling.py " + " ".join(sys.argv[1:]),
    }  # fmt: skip
    (out / "scaling.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    plot(runs, fits, out / "scaling.png")
    print(f"{'size':6s} {'sessions':>8s} {'params':>9s} {'r':>6s} {'r/ceil':>7s}")
    for r in runs:
        print(f"{r['size']:6s} {r['sessions']:8d} {r['backbone_parameters']:9d} "
              f"{r['single_trial_r']:6.3f} {r['fraction_of_ceiling']:7.3f}")  # fmt: skip
    for key, f in fits.items():
        print(
            f"fit over {key}: 1 - r/ceiling = {f['a']:.3f} x^{-f['b']:.3f} (b = {f['b']:.3f})"
            if f
            else f"fit over {key}: n/a"
        )
    print(f"wrote {out}/scaling.json, scaling.png in {payload['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
