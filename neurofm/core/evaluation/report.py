"""Evaluation report: metrics JSON, PNG figures and a printed table (model beside its baselines)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from neurofm.core.evaluation.evaluate import EvaluationResult
from neurofm.core.storage.files import atomic_write_text

__all__ = ["BASELINES", "format_table", "panel_grid", "write_report"]

BASELINES = ("ln", "persistence", "mean")
_METRICS = [
    ("single_trial_r", "r"),
    ("r_to_average", "r to average"),
    ("feve", "FEVE (FEV>=0.15)"),
    ("fraction_of_mean_ceiling", "r / ceiling"),
    ("ceiling_r", "ceiling r"),
    ("oracle_r", "oracle r"),
    ("r", "r"),
]


def panel_grid(plt, n: int, width: float, height: float, **subplots):
    """A figure of ``n`` panels, at most 4 a row (``width x height`` inches each; spare panels
    hidden): ``(fig, axes [rows, cols])``. ``subplots``: passed to ``plt.subplots``."""
    cols = max(1, min(4, n))
    rows = max(1, int(np.ceil(n / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             **subplots)  # fmt: skip
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    return fig, axes


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def format_table(result: EvaluationResult) -> str:
    """A plain-text table: one row per (task, target, metric); the model's value, then each
    baseline's value for the same metric (blank where a baseline does not apply)."""
    header = ("task", "target", "metric", "model", *BASELINES)
    rows = [header]
    for task, streams in result.tasks.items():
        for stream, m in sorted(streams.items()):
            shown = False
            for key, label in _METRICS:
                if key in m.summary:
                    # ceiling and oracle describe the data, not a predictor: model column only
                    own = key not in ("ceiling_r", "oracle_r")
                    refs = [
                        _fmt(m.baselines.get(b, {}).get(key) if own else None) for b in BASELINES
                    ]
                    rows.append((task, stream, label, _fmt(m.summary[key]), *refs))
                    shown = True
            for channel, value in m.per_channel.items():
                refs = [_fmt(m.baseline_per_channel.get(b, {}).get(channel)) for b in BASELINES]
                rows.append((task, stream, f"r[{channel}]", _fmt(value), *refs))
                shown = True
            if not shown:
                rows.append((task, stream, "-", "n/a", *[""] * len(BASELINES)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_report(result: EvaluationResult, out: str | Path, *, extra: dict | None = None) -> Path:
    """Write ``metrics.json``, ``per_neuron.json``, ``table.txt``, ``traces.png``,
    ``r_histogram.png`` and ``model_vs_baselines.png`` into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"tasks": result.to_json(), **(extra or {})}
    atomic_write_text(out / "metrics.json", json.dumps(payload, indent=2, default=float) + "\n")
    per_neuron = {
        task: {s: m.per_unit for s, m in streams.items() if m.per_unit}
        for task, streams in result.tasks.items()
    }
    atomic_write_text(out / "per_neuron.json", json.dumps(per_neuron) + "\n")
    atomic_write_text(out / "table.txt", format_table(result) + "\n")

    if result.examples:
        key, example = next(iter(result.examples.items()))
        task, session, stream = [*key.split(":"), "", "", ""][:3]
        rec = example["recorded"]
        times = example.get("times", np.arange(rec.shape[0]))
        n = min(4, rec.shape[1])
        fig, axes = plt.subplots(n, 1, figsize=(9, 1.8 * n), sharex=True, squeeze=False)
        for i in range(n):
            ax = axes[i, 0]
            ax.plot(times, rec[:, i], color="0.5", lw=1, label="recorded")
            ax.plot(times, example["model"][:, i], color="C3", lw=1.2, label="model")
            if "ln" in example:
                ax.plot(times, example["ln"][:, i], color="C0", lw=1, ls="--", label="LN baseline")
            ax.set_ylabel(f"neuron {i}")
        axes[0, 0].legend(loc="upper right", fontsize=8)
        axes[0, 0].set_title(
            f"{task.replace('_', ' ')}: {stream} of session {session}, first test trial "
            f"(normalised units)",
            fontsize=9,
        )
        axes[-1, 0].set_xlabel("time from the trial start (s)" if "times" in example else "sample")
        fig.tight_layout()
        fig.savefig(out / "traces.png", dpi=110)
        plt.close(fig)

    panels = [
        (task, stream, r[np.isfinite(r)])
        for task, streams in result.tasks.items()
        for stream, metrics in streams.items()
        for r in [np.asarray(metrics.per_unit.get("single_trial_r", []), dtype=float)]
        if np.isfinite(r).any()
    ]
    fig, axes = panel_grid(plt, len(panels), 2.6, 2.0, sharex=True)
    for ax, (task, stream, r) in zip(axes.ravel(), panels, strict=False):
        ax.hist(r, bins=25, color="C0")
        ax.axvline(float(np.median(r)), color="C3", lw=1)
        ax.set_title(f"{task.replace('_', ' ')}\n{stream}: median {np.median(r):.2f}", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("single-trial r", fontsize=7)
    fig.suptitle("per-neuron single-trial r on the test tier (one panel per task)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "r_histogram.png", dpi=110)
    plt.close(fig)
    _comparison_figure(result, out / "model_vs_baselines.png", plt)
    return out


def _comparison_figure(result: EvaluationResult, path: Path, plt) -> None:
    """Grouped bars: headline r (mean over neurons / channels) of model and baselines per task,
    with the noise ceiling (single-trial r of per-unit streams) drawn over its group."""
    labels, values, ceilings = [], [], []
    for task, streams in result.tasks.items():
        for stream, m in sorted(streams.items()):
            key = "single_trial_r" if "single_trial_r" in m.summary else "r"
            if key not in m.summary:
                continue
            labels.append(f"{task}\n{stream}")
            values.append([m.summary[key]] + [m.baselines.get(b, {}).get(key) for b in BASELINES])
            ceilings.append(m.summary.get("ceiling_r") if key == "single_trial_r" else None)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels)), 4))
    width = 0.2
    for j, name in enumerate(("model", *BASELINES)):
        xs = [i + (j - 1.5) * width for i, v in enumerate(values) if v[j] is not None]
        ys = [v[j] for v in values if v[j] is not None]
        if ys:
            ax.bar(xs, ys, width, label=name)
    drawn = False
    for i, ceiling in enumerate(ceilings):
        if ceiling is not None and np.isfinite(ceiling):
            ax.hlines(ceiling, i - 2 * width, i + 2 * width, color="k", lw=1.5,
                      label=None if drawn else "noise ceiling")  # fmt: skip
            drawn = True
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("mean r (test tier)")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
