"""Evaluation report: metrics JSON, PNG figures and a printed table (model beside its baselines)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from neurofm.core.evaluation.evaluate import EvaluationResult
from neurofm.core.io import atomic_write_text

__all__ = ["BASELINES", "format_table", "write_report"]

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
        rec = example["recorded"]
        n = min(4, rec.shape[1])
        fig, axes = plt.subplots(n, 1, figsize=(9, 1.8 * n), sharex=True, squeeze=False)
        for i in range(n):
            ax = axes[i, 0]
            ax.plot(rec[:, i], color="0.5", lw=1, label="recorded")
            ax.plot(example["model"][:, i], color="C3", lw=1.2, label="model")
            if "ln" in example:
                ax.plot(example["ln"][:, i], color="C0", lw=1, ls="--", label="LN baseline")
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
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "r_histogram.png", dpi=110)
    plt.close(fig)
    _comparison_figure(result, out / "model_vs_baselines.png", plt)
    return out


def _comparison_figure(result: EvaluationResult, path: Path, plt) -> None:
    """Grouped bars: headline r (mean over neurons / channels) of model and baselines per task."""
    labels, values = [], []
    for task, streams in result.tasks.items():
        for stream, m in sorted(streams.items()):
            key = "single_trial_r" if "single_trial_r" in m.summary else "r"
            if key not in m.summary:
                continue
            labels.append(f"{task}\n{stream}")
            values.append([m.summary[key]] + [m.baselines.get(b, {}).get(key) for b in BASELINES])
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(labels)), 4))
    width = 0.2
    for j, name in enumerate(("model", *BASELINES)):
        xs = [i + (j - 1.5) * width for i, v in enumerate(values) if v[j] is not None]
        ys = [v[j] for v in values if v[j] is not None]
        if ys:
            ax.bar(xs, ys, width, label=name)
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("mean r (test tier)")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
