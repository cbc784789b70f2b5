"""The ``neurofm`` command line: demo, simulate, train, evaluate, plugins."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from neurofm.errors import NeurofmError

__all__ = ["main"]


def _cmd_plugins(args: argparse.Namespace) -> int:
    from neurofm import registry

    rows = [("kind", "name", "package", "version", "status")]
    for kind, reg in registry.REGISTRIES.items():
        for r in reg.records():
            status = "loaded" if r.status == "loaded" else f"failed: {r.error}"
            rows.append((kind, r.name, r.package, r.version, status))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4])
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from neurofm.core.config import load_config_file
    from neurofm.core.data.simulate_to_disk import simulate_to_disk
    from neurofm.core.data.simulation import SimulationConfig

    if args.config:
        config = load_config_file(args.config, SimulationConfig)
    else:
        config = SimulationConfig.tiny() if args.tiny else SimulationConfig()
    if args.seed is not None:
        config = config.model_copy(update={"seed": args.seed})
    out = simulate_to_disk(args.out, config, overwrite=args.overwrite)
    print(f"wrote {config.n_animals * config.sessions_per_animal} simulated sessions to {out}")
    return 0


def _train(model_config, sessions, training, window_s, out: Path, progress: bool = True):
    from neurofm.core.builder import build_model
    from neurofm.core.checkpoint import save_pretrained
    from neurofm.core.training import Trainer, resolve_device

    model = build_model(model_config, sessions).to(resolve_device(training.device))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, {len(sessions)} sessions, window {window_s} s")
    trainer = Trainer(model, sessions, training, window_s=window_s, progress=progress)
    result = trainer.fit()
    print(
        f"trained {result.steps} steps in {result.seconds:.0f} s; last validation loss "
        f"{result.validation_loss[-1][1]:.4f}"
        if result.validation_loss
        else ""
    )
    save_pretrained(model, model_config, out, extra={"window_s": window_s, "steps": trainer.step})
    return model, result


def _cmd_train(args: argparse.Namespace) -> int:
    from neurofm.core.builder import ExperimentConfig
    from neurofm.core.config import load_config_file
    from neurofm.core.data import open_dataset

    config = load_config_file(args.config, ExperimentConfig)
    sessions = open_dataset(config.data.path, config.data.sessions)
    _train(config.model, sessions, config.training, config.data.window_s, Path(args.out))
    print(f"checkpoint written to {args.out}")
    return 0


def _evaluate_and_report(model, sessions, tasks, window_s, out: Path, extra: dict | None = None):
    from neurofm.core.evaluation.evaluate import evaluate
    from neurofm.core.evaluation.report import format_table, write_report

    result = evaluate(model, sessions, tasks, window_s=window_s)
    write_report(result, out, extra=extra)
    print(format_table(result))
    print(f"report written to {out}")
    return result


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from neurofm.core.checkpoint import load_pretrained
    from neurofm.core.data import open_dataset

    model, _ = load_pretrained(args.checkpoint)
    meta = json.loads((Path(args.checkpoint) / "meta.json").read_text())
    window_s = args.window_s or float(meta.get("window_s", 2.0))
    sessions = open_dataset(args.data)
    unknown = [s.session_id for s in sessions if s.session_id not in model.session_units]
    if unknown:
        raise NeurofmError(
            f"sessions {unknown} are not in the checkpoint's vocabulary ({sorted(model.session_units)}); "
            f"fine-tune the model to them first"
        )
    tasks = args.tasks.split(",") if args.tasks else None
    from neurofm.core.evaluation.evaluate import DEFAULT_TASKS

    _evaluate_and_report(model, sessions, tasks or DEFAULT_TASKS, window_s, Path(args.out))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from neurofm.core.builder import TrainingConfig, default_model_config
    from neurofm.core.data import open_dataset
    from neurofm.core.data.simulate_to_disk import simulate_to_disk
    from neurofm.core.data.simulation import SimulationConfig
    from neurofm.core.evaluation.evaluate import DEFAULT_TASKS

    torch.manual_seed(args.seed)
    start = time.perf_counter()
    out = Path(args.out)
    sim = SimulationConfig.tiny() if args.quick else SimulationConfig()
    sim = sim.model_copy(update={"seed": args.seed})
    print(
        f"[1/4] simulating {sim.n_animals} animals x {sim.sessions_per_animal} sessions of mouse V1 "
        f"({sim.neurons_per_session} neurons each) -> {out / 'data'}"
    )
    simulate_to_disk(out / "data", sim, overwrite=True)
    sessions = open_dataset(out / "data")
    model_config = default_model_config(args.preset, frame_size=(sim.height, sim.width))
    steps = args.steps or (30 if args.quick else 1500)
    window_s = 1.0 if args.quick else 2.0
    training = TrainingConfig(
        steps=steps,
        batch_size=8 if args.quick else 16,
        lr=2e-3,
        warmup_steps=min(100, steps // 10),
        eval_every=max(steps // 5, 1),
        seed=args.seed,
        device="cpu",
    )
    print(f"[2/4] training ({steps} steps, preset {args.preset!r})")
    model, _ = _train(model_config, sessions, training, window_s, out / "checkpoint")
    print("[3/4] evaluating every task on the test tier")
    result = _evaluate_and_report(
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


def build_parser() -> argparse.ArgumentParser:
    from neurofm import __version__

    parser = argparse.ArgumentParser(
        prog="neurofm", description="Foundation models of neural activity."
    )
    parser.add_argument("--version", action="version", version=f"neurofm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="simulate mouse V1, train, evaluate every task, write a report")
    p.add_argument("--out", default="neurofm-demo", help="output folder (default: neurofm-demo)")
    p.add_argument(
        "--steps", type=int, default=None, help="training steps (default 1500; 30 with --quick)"
    )
    p.add_argument("--preset", default="tiny", help="backbone size preset (default: tiny)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny data and few steps (a smoke test)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("simulate", help="write a simulated mouse V1 dataset (session folders)")
    p.add_argument("out", help="output folder (must not exist unless --overwrite)")
    p.add_argument("--config", help="SimulationConfig as JSON or YAML")
    p.add_argument("--tiny", action="store_true", help="the small test-size configuration")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("train", help="train a model from an experiment config (JSON/YAML)")
    p.add_argument("config")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint on the test tier of a dataset")
    p.add_argument("checkpoint")
    p.add_argument("--data", required=True, help="folder of sessions")
    p.add_argument("--tasks", default=None, help="comma-separated task presets")
    p.add_argument("--window-s", type=float, default=None)
    p.add_argument("--out", default="neurofm-report")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("plugins", help="list every plugin: kind, name, package, version, status")
    p.set_defaults(func=_cmd_plugins)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (NeurofmError, FileExistsError) as exc:
        print(f"neurofm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
