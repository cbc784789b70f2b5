"""Quality against reference models at equal data: neurofm vs an LN model vs a SENSORIUM-style CNN.

All three are trained on the train tier of the same simulated multi-animal dataset (same windows,
same normalisation) and scored with neurofm's metrics on the test tier (repeated clips, noise
ceiling from the simulator's ground truth ``expected_calcium``):

- stimulus+behaviour -> responses, stimulus -> responses: single-trial r, r / noise ceiling, FEVE;
- behaviour from responses: r per behaviour channel (neurofm vs LN ridge decoder);
- forecast (second half of the window from the first half): r (neurofm vs persistence / mean).

    python benchmarks/quality.py --quick                       # smoke run, < 3 min
    python benchmarks/quality.py                               # the run in BENCHMARKS.md (~11 min)

Writes ``quality.json``, ``quality.png`` and ``table.txt`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from neurofm.core.baselines.cnn import CNNConfig, fit_cnn_baseline
from neurofm.core.baselines.ln import fit_linear_nonlinear
from neurofm.core.data import open_dataset
from neurofm.core.data.session import Session
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig
from neurofm.core.data.windows import normalise_stream
from neurofm.core.evaluation.accumulate import PredictorState, finish, pool
from neurofm.core.evaluation.evaluate import evaluate
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.model.neurofm import NeuroFM
from neurofm.core.model.presets import default_model_config
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig

TASKS = (
    "responses_from_stimulus_behaviour",
    "responses_from_stimulus",
    "behaviour_from_responses",
    "forecast",
)
RESPONSE_METRICS = (
    ("single_trial_r", "single-trial r"),
    ("fraction_of_mean_ceiling", "r / noise ceiling"),
    ("feve", "FEVE"),
)
PREDICTORS = ("neurofm", "ln", "cnn", "persistence", "mean")


def simulation(quick: bool, seed: int = 0, **overrides) -> SimulationConfig:
    """The benchmark dataset: 2 animals x 2 sessions (quick: 2 x 1, smaller and shorter)."""
    if quick:
        base = dict(
            n_animals=2, sessions_per_animal=1, neurons_per_session=24, n_train_trials=10,
            n_validation_trials=2, n_test_clips=2, trial_duration_s=4.0, height=18, width=32,
        )  # fmt: skip
    else:
        base = dict(
            n_animals=2, sessions_per_animal=2, neurons_per_session=48, n_train_trials=24,
            n_validation_trials=4, n_test_clips=3, trial_duration_s=6.0, height=18, width=32,
        )  # fmt: skip
    return SimulationConfig(seed=seed, **{**base, **overrides})


def dataset(root: Path, sim: SimulationConfig) -> list[Session]:
    """Simulate ``sim`` into ``root`` (reused when ``root/simulation.json`` matches)."""
    saved = root / "simulation.json"
    if not (saved.exists() and SimulationConfig.model_validate_json(saved.read_text()) == sim):
        simulate_to_disk(root, sim, overwrite=True, progress=False)
    return open_dataset(root)


def quiet_loss_monitor() -> None:
    """Silence the trainer's loss-spike warnings: the loss here (Poisson NLL without the constant
    term, plus regression losses) sits near zero and changes sign, so a ratio to its running
    median flags ordinary steps."""
    logging.getLogger("neurofm.training").setLevel(logging.ERROR)


def model_config(
    sim: SimulationConfig,
    preset: str,
    backbone: dict | None = None,
    stimulus_path: bool = True,
    readout: dict | None = None,
) -> ModelConfig:
    """The built-in mouse V1 model for ``sim``'s frame size (``stimulus_path`` False: the model
    before the stimulus path, backbone alone); ``backbone`` overrides preset numbers,
    ``readout`` the readout's settings."""
    config = default_model_config(
        preset, frame_size=(sim.height, sim.width), stimulus_path=stimulus_path
    )
    if backbone:
        config = config.model_copy(update={"backbone": config.backbone.model_copy(update=backbone)})
    if readout:
        data = config.model_dump()
        data["readout"].update(readout)
        config = ModelConfig.model_validate(data)
    return config


def train_neurofm(
    sessions: Sequence[Session],
    sim: SimulationConfig,
    *,
    preset: str | None = None,
    backbone: dict | None = None,
    seconds: float,
    window_s: float,
    batch_size: int = 8,
    lr: float = 2e-3,
    seed: int = 0,
    max_steps: int = 100_000,
    stimulus_path: bool = True,
    readout: dict | None = None,
) -> tuple[NeuroFM, dict]:
    """Train a fresh model for about ``seconds`` of wall time (steps fixed after timing 5 steps
    that follow 2 untimed ones, so the learning-rate schedule runs to its end; the first steps
    pay one-off costs that would make the estimate too slow)."""
    config = model_config(sim, preset or "tiny", backbone, stimulus_path, readout)
    torch.manual_seed(seed)
    model = build_model(config, sessions)
    training = TrainingConfig(
        steps=max_steps, batch_size=batch_size, lr=lr, warmup_steps=10, eval_every=10**9,
        checkpoint_every=10**9, seed=seed, device="cpu", num_workers=1, prefetch=2,
    )  # fmt: skip
    trainer = Trainer(model, sessions, training, window_s=window_s, progress=False)
    start = time.perf_counter()
    for _ in range(2):
        trainer.train_step()
    timed = time.perf_counter()
    for _ in range(5):
        trainer.train_step()
    per_step = (time.perf_counter() - timed) / 5
    steps = int(min(max_steps, max(10, (seconds - (timed - start)) / per_step + 2)))
    warmup = min(100, steps // 10)
    # the schedule reads the config each step: fixing the length now gives a full cosine decay
    trainer.config = training.model_copy(update={"steps": steps, "warmup_steps": warmup})
    losses = [trainer.train_step() for _ in range(steps - 7)]
    model.eval()
    info = {
        "steps": steps,
        "seconds": time.perf_counter() - start,
        "parameters": sum(p.numel() for p in model.parameters()),
        "backbone": config.backbone.model_dump(),
        "final_train_loss": float(np.mean(losses[-20:])) if losses else float("nan"),
    }
    return model, info


def score(
    sessions: Sequence[Session],
    predict: Callable[[Session, np.ndarray], np.ndarray],
    target: str,
    mode: str,
) -> dict[str, float]:
    """Metrics of a predictor of whole test intervals, exactly as :func:`evaluate` pools them."""
    pooled: dict = defaultdict(list)
    for session in sessions:
        state = PredictorState(per_unit=True)
        intervals = session.intervals("test")
        left = Counter(iv.stimulus_id for iv in intervals)
        ts = session.stream_timestamps(target)
        for iv in intervals:
            sl = slice(*map(int, np.searchsorted(ts, [iv.start, iv.end], side="left")))
            raw = np.asarray(session.stream_data(target)[sl], np.float64)
            rec = normalise_stream(session, target, raw.reshape(raw.shape[0], -1), mode)
            exp = None
            if f"expected_{target}" in session.manifest.ground_truth:
                e = np.asarray(session.ground_truth(f"expected_{target}")[sl], np.float64)
                exp = normalise_stream(session, target, e, mode)
            left[iv.stimulus_id] -= 1
            pred = predict(session, ts[sl])
            state.add_interval(pred, rec, exp, iv.stimulus_id, left[iv.stimulus_id] == 0)
        pool(state, None, pooled, {})
    return finish(pooled, {})[0]


def collect(result, cnn: dict[str, dict[str, float]]) -> dict:
    """``{task: {metric: {predictor: value}}}`` from neurofm's evaluation and the CNN's scores."""
    table: dict = {}
    for task, streams in result.tasks.items():
        rows: dict = {}
        for stream, m in sorted(streams.items()):
            if stream == "calcium":
                for key, label in RESPONSE_METRICS:
                    if key in m.summary:
                        row = {"neurofm": m.summary[key]}
                        row.update({b: v[key] for b, v in m.baselines.items() if key in v})
                        if task in cnn and key in cnn[task]:
                            row["cnn"] = cnn[task][key]
                        rows[label] = row
                if "ceiling_r" in m.summary:
                    rows["noise ceiling r"] = {"neurofm": m.summary["ceiling_r"]}
            for channel, value in m.per_channel.items():
                row = {"neurofm": value}
                row.update({b: v[channel] for b, v in m.baseline_per_channel.items()})
                rows[f"r [{stream}.{channel}]"] = row
        table[task] = rows
    return table


def format_table(table: dict) -> str:
    lines = [f"{'task':36s} {'metric':28s} " + " ".join(f"{p:>11s}" for p in PREDICTORS)]
    lines.append("-" * len(lines[0]))
    for task, rows in table.items():
        for metric, row in rows.items():
            cells = [f"{row[p]:11.3f}" if p in row else f"{'':11s}" for p in PREDICTORS]
            lines.append(f"{task:36s} {metric:28s} " + " ".join(cells))
    return "\n".join(lines)


def plot(table: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(t, m) for t, rows in table.items() for m in rows if m != "noise ceiling r"]
    cols = 4
    fig, axes = plt.subplots(
        -(-len(panels) // cols), cols, figsize=(3.2 * cols, 2.6 * -(-len(panels) // cols))
    )
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    colours = dict(zip(PREDICTORS, ["C0", "C1", "C2", "C7", "C8"], strict=True))
    for ax, (task, metric) in zip(axes.flat, panels, strict=False):
        row = table[task][metric]
        names = [p for p in PREDICTORS if p in row]
        ax.bar(names, [row[p] for p in names], color=[colours[p] for p in names])
        ax.set_title(f"{task.replace('_', ' ')}\n{metric}", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.axhline(0, color="k", lw=0.5)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help="default benchmarks/results/quality[_quick]")
    p.add_argument(
        "--data",
        default=None,
        help="simulated data folder (default runs/benchmark-data/quality[-quick])",
    )
    p.add_argument("--quick", action="store_true", help="small data and budgets (< 3 min)")
    p.add_argument(
        "--preset", default=None, help="neurofm backbone preset (default small; quick: tiny)"
    )
    p.add_argument("--minutes", type=float, default=None, help="neurofm training budget (wall)")
    p.add_argument(
        "--cnn-minutes", type=float, default=None, help="training budget of each CNN fit (wall)"
    )
    p.add_argument("--window", type=float, default=2.0, help="window length in seconds")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--stimulus-path", action=argparse.BooleanOptionalAction, default=True,
        help="the default model with the retinotopic stimulus path (movie_core + retinotopic), or "
        "with --no-stimulus-path the model before it (backbone alone)",
    )  # fmt: skip
    p.add_argument("--save", default=None, help="also save the trained neurofm model there")
    p.add_argument("--readout", default="{}", help="JSON: readout settings over the default's")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    quiet_loss_monitor()
    preset = args.preset or ("tiny" if args.quick else "small")
    minutes = args.minutes if args.minutes is not None else (0.5 if args.quick else 5.0)
    cnn_minutes = args.cnn_minutes if args.cnn_minutes is not None else (0.5 if args.quick else 3.5)
    out = Path(args.out or f"benchmarks/results/quality{'_quick' * args.quick}")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    sim = simulation(args.quick, args.seed)
    data = args.data or f"runs/benchmark-data/quality{'-quick' * args.quick}"
    sessions = dataset(Path(data), sim)
    print(f"data: {len(sessions)} sessions x {sim.neurons_per_session} neurons, "
          f"{sim.n_train_trials} train trials of {sim.trial_duration_s} s each")  # fmt: skip

    model, info = train_neurofm(
        sessions, sim, preset=preset, seconds=60 * minutes, window_s=args.window, seed=args.seed,
        stimulus_path=args.stimulus_path, readout=json.loads(args.readout),
    )  # fmt: skip
    print(f"neurofm ({preset}, {info['parameters'] / 1e6:.2f}M parameters): "
          f"{info['steps']} steps in {info['seconds']:.0f} s")  # fmt: skip
    if args.save:
        model.save_pretrained(args.save, extra={"window_s": args.window, "steps": info["steps"]})
    norm = model.normalization()
    t0 = time.perf_counter()
    result = evaluate(model, sessions, TASKS, window_s=args.window, progress=False)
    eval_s = time.perf_counter() - t0

    # the CNN sees half a window of the movie before each window it predicts (trained and scored
    # so), as neurofm's whole-window tasks are scored from overlapping windows (`evaluate`)
    cnn_config = CNNConfig(window_s=args.window, context_s=args.window / 2, steps=100_000,
                           eval_every=50, seed=args.seed)  # fmt: skip
    cnn_scores, cnn_info = {}, {}
    for task, inputs in (
        ("responses_from_stimulus_behaviour", ["movie", "running", "pupil"]),
        ("responses_from_stimulus", ["movie"]),
    ):
        # a step budget rather than an open-ended one: time 5 steps, then size the schedule
        probe = fit_cnn_baseline(
            sessions, inputs, "calcium", norm,
            config=cnn_config.model_copy(update={"steps": 5, "eval_every": 10**6}),
        )  # fmt: skip
        steps = max(20, int(60 * cnn_minutes / (probe.seconds / 5)))
        config = CNNConfig(
            **{**cnn_config.__dict__, "steps": steps, "eval_every": max(steps // 8, 1)}
        )
        fit = fit_cnn_baseline(sessions, inputs, "calcium", norm, config=config)
        cnn_scores[task] = score(
            sessions, lambda s, t, f=fit: f.predict(s.session_id, t), "calcium", norm["calcium"]
        )
        cnn_info[task] = {"steps": len(fit.train_loss), "seconds": fit.seconds,
                          "parameters": sum(p.numel() for p in fit.model.parameters())}  # fmt: skip
        print(f"cnn ({task}): {len(fit.train_loss)} steps in {fit.seconds:.0f} s")
    # cross-check: the LN model scored by `score` matches the `ln` column of the evaluation
    ln = {
        s.session_id: fit_linear_nonlinear(s, ["movie", "running", "pupil"], "calcium", norm)
        for s in sessions
    }
    ln_check = score(sessions, lambda s, t: ln[s.session_id].predict(t), "calcium", norm["calcium"])

    table = collect(result, cnn_scores)
    text = format_table(table)
    print(text)
    payload = {
        "table": table,
        "simulation": sim.model_dump(),
        "neurofm": {"preset": preset, "stimulus_path": args.stimulus_path, **info,
                    "evaluation_seconds": eval_s},
        "cnn": cnn_info,
        "cnn_config": cnn_config.__dict__,
        "ln_rescored_single_trial_r": ln_check.get("single_trial_r"),
        "budget_minutes": {"neurofm": minutes, "cnn": cnn_minutes},
        "window_s": args.window,
        "threads": args.threads,
        "machine": f"{platform.machine()} {platform.system()}, torch {torch.__version__}",
        "total_seconds": time.perf_counter() - t_start,
        "command": "python benchmarks/quality.py " + " ".join(
            f"{a}" for a in __import__("sys").argv[1:]),
    }  # fmt: skip
    (out / "quality.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    (out / "table.txt").write_text(text + "\n")
    plot(table, out / "quality.png", f"neurofm ({preset}) vs LN vs CNN, equal data")
    print(f"wrote {out}/quality.json, quality.png, table.txt in {payload['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
