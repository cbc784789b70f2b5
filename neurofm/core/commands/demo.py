"""``neurofm demo``: simulate mouse V1, train, evaluate every task, write a report."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    import torch

    from neurofm.core.commands.evaluate import evaluate_and_report
    from neurofm.core.commands.train import train_and_save
    from neurofm.core.data import open_dataset
    from neurofm.core.data.simulate_to_disk import simulate_to_disk
    from neurofm.core.data.simulation import SimulationConfig
    from neurofm.core.evaluation.evaluate import DEFAULT_TASKS
    from neurofm.core.model.presets import default_model_config
    from neurofm.core.training.config import TrainingConfig
    from neurofm.core.training.trainer import StepBudget

    torch.manual_seed(args.seed)
    start = time.perf_counter()
    out = Path(args.out)
    replacing = claim_demo_folder(out)
    if replacing:
        print(f"replacing the previous demo in {out} (its data, checkpoint and report)")
    sim = SimulationConfig.tiny() if args.quick else SimulationConfig()
    sim = sim.model_copy(update={"seed": args.seed})
    print(
        f"[1/4] simulating {sim.n_animals} animals x {sim.sessions_per_animal} sessions of mouse V1 "
        f"({sim.neurons_per_session} neurons each) -> {out / 'data'}"
    )
    simulate_to_disk(out / "data", sim, overwrite=True)
    sessions = open_dataset(out / "data")
    preset = args.preset or ("tiny" if args.quick else "small")
    model_config = default_model_config(
        preset, frame_size=(sim.height, sim.width), stimulus_path=args.stimulus_path
    )
    window_s = 1.0 if args.quick else 2.0
    training = TrainingConfig(
        steps=args.steps or 30, batch_size=8 if args.quick else 16, lr=2e-3, seed=args.seed,
        device="cpu",
    )  # fmt: skip
    sized = ""
    minutes = args.minutes if args.minutes is not None else (None if args.quick else 5.0)
    if args.steps is None and minutes is not None:
        per_step = _seconds_per_step(model_config, sessions, training, window_s)
        steps = int(min(MAX_STEPS, max(MIN_STEPS, minutes * 60 / per_step)))
        sized = f", sized to {minutes:g} min at {per_step * 1000:.0f} ms per step"
        if steps == MAX_STEPS:
            sized += f", capped at {MAX_STEPS}"
        training = training.model_copy(update={"steps": steps})
    steps = training.steps
    training = training.model_copy(
        update={"warmup_steps": min(100, steps // 10), "eval_every": max(steps // 5, 1)}
    )
    path = ", stimulus path" if args.stimulus_path else ", no stimulus path"
    print(f"[2/4] training ({steps} steps{sized}, preset {preset!r}{path})")
    hooks = []
    if sized and training.warmup_steps >= RESIZE_MIN_STEP:
        # the timing above misjudges a shared machine's speed by 10-30 %: at the end of warm-up
        # the run's own step times re-fix the count, so training fills its budget
        budget = StepBudget(minutes * 60, training.warmup_steps, skip=RESIZE_SKIP,
                            min_steps=MIN_STEPS, max_steps=MAX_STEPS)  # fmt: skip
        hooks.append(budget)
    model, _ = train_and_save(
        model_config, sessions, training, window_s, out / "checkpoint", before_step=hooks
    )
    for hook in hooks:
        if hook.message is not None:
            print(f"  {hook.message}")
    print("[3/4] evaluating every task on the test tier")
    result = evaluate_and_report(
        model,
        sessions,
        DEFAULT_TASKS,
        window_s,
        out / "report",
        extra={"simulation": sim.model_dump()},
    )
    summary = result.tasks["responses_from_stimulus_behaviour"]["calcium"].summary
    print(f"[4/4] done in {time.perf_counter() - start:.0f} s")
    print(
        f"stimulus+behaviour -> responses: single-trial r = {summary['single_trial_r']:.3f}, "
        f"noise ceiling r = {summary.get('ceiling_r', float('nan')):.3f}, "
        f"fraction of ceiling = {summary.get('fraction_of_mean_ceiling', float('nan')):.3f}"
    )
    return 0


MIN_STEPS, MAX_STEPS = 20, 6000
# the step count is re-fixed at the end of warm-up from the run's steps after the first few,
# when warm-up is long enough to time (runs of at least 200 steps)
RESIZE_SKIP, RESIZE_MIN_STEP = 5, 20
MARKER = "neurofm-demo.json"  # written into the demo's folder: the folder is the demo's to replace
_WRITES = {"data", "checkpoint", "report", MARKER}


def claim_demo_folder(out: Path) -> bool:
    """Make ``out`` the demo's folder; returns whether a previous demo is being replaced.

    A folder the demo did not write is refused: one holding anything besides the demo's
    ``data/``, ``checkpoint/``, ``report/`` and marker file, or whose ``data/`` is not simulated
    (no ``simulation.json``) and that has no marker. Hidden left-overs of interrupted writes are
    ignored.
    """
    from neurofm import __version__
    from neurofm.core.storage.files import atomic_write_text
    from neurofm.errors import NeurofmError

    replacing = False
    if out.exists():
        if not out.is_dir():
            raise NeurofmError(
                f"--out {out} is a file; the demo needs a folder. Choose another --out"
            )
        entries = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        simulated = not (out / "data").exists() or (out / "data" / "simulation.json").is_file()
        marked = (out / MARKER).is_file()
        if not set(entries) <= _WRITES or (entries and not (marked or simulated)):
            shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
            raise NeurofmError(
                f"--out {out} exists and holds {shown}, which the demo did not write (no {MARKER}); "
                f"the demo replaces data/, checkpoint/ and report/ in its folder. Choose another "
                f"--out or empty this folder"
            )
        replacing = bool(entries)
    out.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    atomic_write_text(out / MARKER, json.dumps(
        {"written_by": f"neurofm {__version__} demo", "started": started}) + "\n")  # fmt: skip
    return replacing


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of steps >= 1, found {text!r}")
    return value


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of minutes > 0, found {text!r}")
    return value


def _seconds_per_step(model_config, sessions, training, window_s: float) -> float:
    """Median wall time of training steps 4-14 of a throw-away model on this machine now (a
    step's time varies with its mix of tasks; the first steps are slower)."""
    import gc
    import statistics

    from neurofm.core.model.builder import build_model
    from neurofm.core.training import Trainer

    model = build_model(model_config, sessions)
    trainer = Trainer(model, sessions, training.model_copy(update={"steps": 16}),
                      window_s=window_s, progress=False)  # fmt: skip
    times = []
    try:
        for _ in range(14):
            start = time.perf_counter()
            trainer.train_step()
            times.append(time.perf_counter() - start)
    finally:  # the real run reseeds (train_and_save), so this one's draws change nothing
        del trainer, model
        gc.collect()  # the optimizer's scheduler holds a cycle: free the model and its loader now
    return statistics.median(times[3:])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="simulate mouse V1, train, evaluate every task, write a report")
    p.add_argument("--out", default="neurofm-demo", help="output folder (default: neurofm-demo)")
    length = p.add_mutually_exclusive_group()
    length.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="training steps (default: as many as fit in --minutes; 30 with --quick)",
    )
    length.add_argument(
        "--minutes",
        type=_positive,
        default=None,
        help="training time budget when --steps is not given: the step count is fixed before "
        "training by timing a few steps on this machine and re-fixed at the end of warm-up from "
        f"the run's own step times ({MIN_STEPS} to {MAX_STEPS} steps; default 5, none with "
        "--quick)",
    )
    p.add_argument(
        "--preset", default=None, help="backbone size preset (default: small; tiny with --quick)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the training")
    p.add_argument("--quick", action="store_true", help="tiny data and few steps (a smoke test)")
    p.add_argument(
        "--stimulus-path",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the model with the retinotopic stimulus path (movie_core + retinotopic readout + "
        "gaze; docs/concepts.md; the default), or with --no-stimulus-path the model before it "
        "(tubelet movie encoder, neuron_embedding readout)",
    )
    p.set_defaults(func=run)
