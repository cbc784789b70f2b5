"""``neurofm evaluate CHECKPOINT --data DIR``: run task presets on the test tier and write a report."""

from __future__ import annotations

import argparse
from pathlib import Path

from neurofm.errors import NeurofmError


def evaluate_and_report(
    model,
    sessions,
    tasks,
    window_s,
    out: Path,
    extra: dict | None = None,
    *,
    baselines: bool = True,
    progress: bool = True,
    context_s: float | None = None,
):
    """Evaluate the model and its baselines, write the report folder, print the table; returns
    the EvaluationResult. ``context_s``: overlap of consecutive windows for whole-window tasks
    (:func:`~neurofm.core.evaluation.evaluate.evaluate`; default half the window)."""
    from neurofm.core.evaluation.evaluate import evaluate
    from neurofm.core.evaluation.report import format_table, write_report

    result = evaluate(
        model, sessions, tasks, window_s=window_s, baselines=baselines, progress=progress,
        context_s=context_s,
    )  # fmt: skip
    write_report(result, out, extra=extra)
    print(format_table(result))
    print(f"report written to {out}")
    return result


def default_report_folder(checkpoint: Path) -> Path:
    """``<checkpoint>-report`` beside the checkpoint folder (``run/checkpoint`` ->
    ``run/checkpoint-report``), so a report lands next to what it evaluates."""
    checkpoint = checkpoint.resolve()
    return checkpoint.parent / f"{checkpoint.name}-report"


def run(args: argparse.Namespace) -> int:

    from neurofm.core.data import open_dataset
    from neurofm.core.evaluation.evaluate import DEFAULT_TASKS
    from neurofm.core.model.checkpoint import load_checkpoint

    loaded = load_checkpoint(args.checkpoint)
    model, meta = loaded.model, loaded.meta
    window_s = args.window_s or float(meta.get("window_s", 2.0))
    sessions = open_dataset(args.data)
    unknown = [s.session_id for s in sessions if s.session_id not in model.session_units]
    if unknown:
        raise NeurofmError(
            f"sessions {unknown} are not in the checkpoint's vocabulary "
            f"({sorted(model.session_units)}); fine-tune the model to them first"
        )
    from neurofm.core.tokens.tasks import PRESETS

    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else list(DEFAULT_TASKS)
    unknown_tasks = [t for t in tasks if t not in PRESETS]
    if unknown_tasks:
        raise NeurofmError(f"unknown task presets {unknown_tasks}; known: {', '.join(PRESETS)}")
    out = Path(args.out) if args.out else default_report_folder(Path(args.checkpoint))
    if args.context_s is not None and not 0 <= args.context_s < window_s:
        raise NeurofmError(
            f"--context-s {args.context_s:g} must be at least 0 and shorter than the window "
            f"({window_s:g} s)"
        )
    evaluate_and_report(
        model, sessions, tasks, window_s, out, baselines=not args.no_baselines,
        progress=not args.quiet, context_s=args.context_s,
    )  # fmt: skip
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint on the test tier of a dataset")
    p.add_argument("checkpoint", help="checkpoint folder (e.g. the demo's checkpoint/)")
    p.add_argument("--data", required=True, help="folder of sessions the checkpoint knows")
    p.add_argument(
        "--tasks", default=None, help="comma-separated task presets (default: every preset)"
    )
    p.add_argument("--no-baselines", action="store_true", help="skip LN/persistence/mean")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--window-s", type=float, default=None,
        help="window length in seconds (default: the checkpoint's training window)",
    )  # fmt: skip
    p.add_argument(
        "--context-s", type=float, default=None,
        help="overlap in seconds of consecutive windows for tasks that show and predict whole "
        "windows (each time is scored from the window it sits nearer the centre of; default: "
        "half the window; 0: windows side by side)",
    )  # fmt: skip
    p.add_argument(
        "--out", default=None,
        help="report folder (default: <checkpoint>-report beside the checkpoint folder)",
    )  # fmt: skip
    p.set_defaults(func=run)
