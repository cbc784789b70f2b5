"""Figures of in-silico experiments (matplotlib, Agg): tuning curves, preferred orientation against
the truth, receptive-field maps and centres, MEI galleries."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_mei_gallery", "plot_rf_maps", "plot_scatter", "plot_tuning"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panels(n: int, width: float, height: float):
    from neurofm.core.evaluation.report import panel_grid

    return panel_grid(_plt(), n, width, height)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)


def plot_tuning(result, path: Path, truth_deg: np.ndarray | None = None, n: int = 8) -> None:
    """Orientation curves (the direction curve at the neuron's best condition) of the first
    ``n`` neurons (the true preferred orientation, where known, as dashed lines at it and its
    opposite direction)."""
    n = min(n, result.units.size)
    curves = (
        result.direction_curves if result.orientation_curves is None else result.orientation_curves
    )
    fig, axes = _panels(n, 2.6, 2.1)
    for i, ax in enumerate(axes.ravel()[:n]):
        ax.plot(result.directions, curves[i], "o-", ms=3, color="C0")
        if result.gain is not None:
            for label, key, color in (
                ("low", "responses_low", "C2"),
                ("high", "responses_high", "C3"),
            ):
                curve = _direction_curve(result, result.gain[key][:, i], i)
                ax.plot(result.directions, curve, "-", lw=1, color=color, label=f"{label}")
        if truth_deg is not None:
            for d in (truth_deg[i] % 180, truth_deg[i] % 180 + 180):
                ax.axvline(d, color="k", ls="--", lw=0.8)
        ax.set_title(f"neuron {result.units[i]}: pref {result.preferred_orientation_deg[i]:.0f} deg",
                     fontsize=8)  # fmt: skip
        ax.set_xlabel("direction (deg)", fontsize=7)
        ax.tick_params(labelsize=7)
    if result.gain is not None:
        axes[0, 0].legend(fontsize=6, title=result.gain["stream"], title_fontsize=6)
    fig.suptitle("tuning: evoked response (model); dashed: true preferred orientation", fontsize=9)
    _save(fig, path)


def _direction_curve(result, responses: np.ndarray, i: int) -> np.ndarray:
    """One neuron's direction curve from responses ``[C]`` at its best other parameters."""
    table = result.conditions
    keys = [k for k in table[0] if k not in ("direction", "orientation")]
    best = {}
    for c, r in zip(table, result.responses[:, i], strict=True):
        key = tuple(c[k] for k in keys)
        best[key] = max(best.get(key, -np.inf), r)
    want = max(best, key=best.get)
    curve = np.full(result.directions.size, np.nan)
    for c, r in zip(table, responses, strict=True):
        if tuple(c[k] for k in keys) == want:
            curve[np.searchsorted(result.directions, c["direction"])] = r
    return curve


def plot_scatter(found: np.ndarray, true: np.ndarray, path: Path, *, labels, title: str,
                 circular: float | None = None) -> None:  # fmt: skip
    """Found against true values, one panel per column of ``[K, P]`` arrays (``circular``: the
    period, e.g. 180 for orientation; points are wrapped to the nearest copy of the truth)."""
    plt = _plt()
    found, true = np.atleast_2d(found.T).T, np.atleast_2d(true.T).T
    fig, axes = plt.subplots(1, found.shape[1], figsize=(3.4 * found.shape[1], 3.2), squeeze=False)
    for j, ax in enumerate(axes[0]):
        f, t = found[:, j], true[:, j]
        if circular is not None:
            f = t + (f - t + circular / 2) % circular - circular / 2
            lo, hi = 0.0, circular
        else:
            lo, hi = float(min(t.min(), f.min())), float(max(t.max(), f.max()))
        ok = np.isfinite(f) & np.isfinite(t)
        r = np.corrcoef(f[ok], t[ok])[0, 1] if ok.sum() > 2 else np.nan
        ax.scatter(t, f, s=7, alpha=0.6)
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.7)
        ax.set_xlabel(f"true {labels[j]}", fontsize=8)
        ax.set_ylabel(f"model {labels[j]}", fontsize=8)
        ax.set_title(f"r = {r:.3f}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def plot_rf_maps(result, path: Path, truth_px: np.ndarray | None = None, n: int = 8) -> None:
    """Maps of the first ``n`` neurons with the found centre (+) and the true one (x)."""
    n = min(n, result.units.size)
    fig, axes = _panels(n, 2.8, 1.9)
    for i, ax in enumerate(axes.ravel()[:n]):
        shown = result.linear[i] if result.linear is not None else result.maps[i]
        ax.imshow(shown, cmap="RdBu_r" if result.linear is not None else "viridis",
                  extent=_extent(result.x_px, result.y_px))  # fmt: skip
        ax.plot(*result.centre_px[i], "k+", ms=8)
        if truth_px is not None:
            ax.plot(*truth_px[i], "mx", ms=6)
        ax.set_title(f"neuron {result.units[i]}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    label = "linear filter (mean gradient)" if result.linear is not None else "|response| to spots"
    fig.suptitle(f"receptive fields ({result.method}): {label}; + found, x true centre", fontsize=9)
    _save(fig, path)


def _extent(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """imshow extent in pixel coordinates for a map whose cells are centred at ``x``, ``y``."""
    dx = float(x[1] - x[0]) if x.size > 1 else 1.0
    dy = float(y[1] - y[0]) if y.size > 1 else 1.0
    return x[0] - dx / 2, x[-1] + dx / 2, y[-1] + dy / 2, y[0] - dy / 2


def plot_mei_gallery(result, path: Path, gabors: np.ndarray | None = None, n: int = 8) -> None:
    """MEIs of the first ``n`` neurons (static, or the last frame of a movie MEI), with the true
    filter below each where known."""
    plt = _plt()
    n = min(n, result.units.size)
    rows = 2 if gabors is not None else 1
    fig, axes = plt.subplots(rows, n, figsize=(1.9 * n, 1.3 * rows + 0.4), squeeze=False)
    for i in range(n):
        image = result.images[i] if result.images.ndim == 3 else result.images[i, -1]
        lim = float(np.abs(image).max()) or 1.0
        axes[0, i].imshow(image, cmap="gray", vmin=-lim, vmax=lim)
        axes[0, i].set_title(f"{result.units[i]}: {result.activation[i]:.2f}", fontsize=7)
        if gabors is not None:
            lim = float(np.abs(gabors[i]).max()) or 1.0
            axes[1, i].imshow(gabors[i], cmap="gray", vmin=-lim, vmax=lim)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    if gabors is not None:
        axes[1, 0].set_ylabel("true filter", fontsize=7)
    fig.suptitle("most exciting inputs (title: neuron, evoked response)", fontsize=9)
    _save(fig, path)
