"""Evaluation report: metrics JSON, PNG figures and a printed table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from neurofm.core.evaluation.evaluate import EvaluationResult
from neurofm.core.io import atomic_write_text

__all__ = ["format_table", "write_report"]

_COLUMNS = [
    ("single_trial_r", "r"),
    ("ceiling_r", "ceiling r"),
    ("fraction_of_mean_ceiling", "r / ceiling"),
    ("oracle_r", "oracle r"),
    ("feve", "FEVE"),
    ("persistence_r", "persistence r"),
    ("r", "r"),
]


def format_table(result: EvaluationResult) -> str:
    """A plain-text table: one row per (task, target stream), the headline metrics as columns."""
    rows = [("task", "target", "metric", "value")]
    for task, streams in result.tasks.items():
        for stream, metrics in sorted(streams.items()):
            shown = False
            for key, label in _COLUMNS:
                if key in metrics.summary:
                    rows.append((task, stream, label, f"{metrics.summary[key]:.3f}"))
                    shown = True
            for channel, value in metrics.per_channel.items():
                rows.append((task, stream, f"r[{channel}]", f"{value:.3f}"))
                shown = True
            if not shown:
                rows.append((task, stream, "-", "n/a"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_report(result: EvaluationResult, out: str | Path, *, extra: dict | None = None) -> Path:
    """Write ``metrics.json``, ``per_neuron.json``, ``traces.png`` and ``r_histogram.png`` into ``out``."""
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

    if result.examples:
        key, example = next(iter(result.examples.items()))
        pred, rec = example["predicted"], example["recorded"]
        n = min(4, pred.shape[1])
        fig, axes = plt.subplots(n, 1, figsize=(9, 1.8 * n), sharex=True, squeeze=False)
        for i in range(n):
            ax = axes[i, 0]
            ax.plot(rec[:, i], color="0.5", lw=1, label="recorded")
            ax.plot(pred[:, i], color="C3", lw=1.2, label="predicted")
            ax.set_ylabel(f"neuron {i}")
        axes[0, 0].legend(loc="upper right", fontsize=8)
        axes[0, 0].set_title(f"first test trial, {key} (normalised units)")
        axes[-1, 0].set_xlabel("sample")
        fig.tight_layout()
        fig.savefig(out / "traces.png", dpi=110)
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for task, streams in result.tasks.items():
        for stream, metrics in streams.items():
            r = np.asarray(metrics.per_unit.get("single_trial_r", []), dtype=float)
            r = r[np.isfinite(r)]
            if r.size:
                ax.hist(r, bins=30, alpha=0.5, label=f"{task} / {stream}")
    ax.set_xlabel("per-neuron single-trial r (test tier)")
    ax.set_ylabel("neurons")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "r_histogram.png", dpi=110)
    plt.close(fig)
    return out
