"""Run in-silico experiments on a checkpoint and write arrays, JSON and figures
(``neurofm insilico``).

One folder per session under ``out``: ``tuning.npz`` / ``rf_sparse_noise.npz`` /
``rf_gradient.npz`` / ``mei.npz`` with the full arrays, figures (``tuning.png``,
``orientation.png``, ``rf_*.png``, ``mei.png``), and one ``summary.json`` for the run with the
settings, timings, per-neuron results and, for sessions that carry the simulator's ground truth
(``neurofm simulate``; docs/simulator.md), the comparison with it. The folder appears only when
every experiment finished (a failed or interrupted run leaves nothing at ``out``).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neurofm.insilico.probe import InsilicoError, ModelProbe

__all__ = ["KINDS", "InsilicoSettings", "run_insilico", "true_filters"]

KINDS = ("tuning", "rf", "mei", "all")


@dataclass
class InsilicoSettings:
    """What to run and how (the ``neurofm insilico`` options)."""

    kind: str = "all"
    sessions: Sequence[str] | None = None
    units: Sequence[int] | None = None
    screen_width_deg: float | None = None
    hold: Mapping[str, Sequence[float]] = field(default_factory=dict)
    gain: tuple[str, Sequence[float], Sequence[float]] | None = None
    gratings: str = "gratings"
    gratings_config: Mapping[str, object] = field(default_factory=dict)
    spots: str = "sparse_noise"
    spots_config: Mapping[str, object] = field(default_factory=dict)
    mei_steps: int = 30
    mei_kind: str = "static"
    mei_parametrisation: str = "pixel"
    natural_frames: int = 1000
    window_s: float | None = None
    device: str = "cpu"
    progress: bool = True


def run_insilico(checkpoint, data, out, settings: InsilicoSettings, *, overwrite: bool = False):
    """Run ``settings.kind`` on every (chosen) session of ``data`` the checkpoint knows; returns
    the summary written to ``out/summary.json``."""
    from neurofm import registry
    from neurofm.core.data import open_dataset
    from neurofm.core.model.checkpoint import load_checkpoint
    from neurofm.core.storage.files import atomic_directory, atomic_write_bytes, atomic_write_text

    if settings.kind not in KINDS:
        raise InsilicoError(f"unknown experiment {settings.kind!r}; choose one of {list(KINDS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another --out or pass --overwrite")
    loaded = load_checkpoint(checkpoint)
    model = loaded.model.eval().to(settings.device)
    window_s = settings.window_s or float(loaded.meta.get("window_s", 2.0))
    sessions = open_dataset(data)
    chosen = _choose_sessions(sessions, model, settings.sessions)
    width_deg = settings.screen_width_deg or _simulated_screen_width(Path(data))
    kinds = ("tuning", "rf", "mei") if settings.kind == "all" else (settings.kind,)
    gratings = _family(registry.stimuli.get(settings.gratings), settings.gratings_config)
    spots = _family(registry.stimuli.get(settings.spots), settings.spots_config)
    summary: dict = {
        "checkpoint": str(checkpoint), "data": str(data), "experiments": list(kinds),
        "window_s": window_s, "screen_width_deg": width_deg, "sessions": {},
    }  # fmt: skip
    files: dict[str, bytes] = {}
    probes = [
        ModelProbe(model, s, screen_width_deg=width_deg, hold=settings.hold, window_s=window_s)
        for s in chosen
    ]
    if settings.kind in ("rf", "mei") and any(p.parametric for p in probes):
        raise InsilicoError(
            f"{settings.kind} experiments need a pixel stimulus (movie or images); the model's "
            f"stimulus stream gives parameters. Run 'tuning' (or 'all', which skips the rest)"
        )
    for session, probe in zip(chosen, probes, strict=True):
        units = probe.check_units(settings.units)
        if settings.gain is not None:  # refuse a bad stream or value count before any work
            for values in settings.gain[1:]:
                probe.held({settings.gain[0]: values})
        record = {"hold": probe.describe_hold(), "stimulus_stream": probe.stimulus_stream,
                  "response_stream": probe.response_stream, "units": units.tolist()}  # fmt: skip
        truth = _truth(session)
        sid = session.session_id
        record["_screen"] = probe.screen
        if "tuning" in kinds:
            record["tuning"] = _tuning(probe, gratings, units, settings, truth, files, sid)
        pixels = [k for k in kinds if k in ("rf", "mei")]
        if probe.parametric and pixels:
            record["skipped"] = {k: "needs a pixel stimulus (movie or images)" for k in pixels}
        if "rf" in kinds and not probe.parametric:
            record["rf"] = _rf(probe, spots, units, settings, truth, files, sid)
        if "mei" in kinds and not probe.parametric:
            record["mei"] = _mei(probe, units, settings, truth, files, sid)
        summary["sessions"][sid] = record
    with atomic_directory(out, overwrite=overwrite) as tmp:
        for name, payload in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(tmp / name, payload)
        _figures(summary, tmp)
        atomic_write_text(
            tmp / "summary.json", json.dumps(_public(summary), indent=2, allow_nan=False) + "\n"
        )
    return _public(summary)


# -- experiments ------------------------------------------------------------------------------
def _tuning(probe, gratings, units, settings, truth, files, sid) -> dict:
    from neurofm.insilico.tuning import tuning_curves

    start = time.perf_counter()
    gain_stream, lo, hi = settings.gain if settings.gain is not None else (None, None, None)
    result = tuning_curves(
        probe, gratings, units, gain_stream=gain_stream,
        gain_values=None if gain_stream is None else (lo, hi), progress=settings.progress,
    )  # fmt: skip
    record = {"seconds": time.perf_counter() - start, "conditions": len(result.conditions),
              "per_neuron": result.summary()}  # fmt: skip
    arrays = {"units": result.units, "responses": result.responses,
              "directions": result.directions, "direction_curves": result.direction_curves,
              "orientation_curves": result.orientation_curves,
              "preferred_orientation_deg": result.preferred_orientation_deg,
              "preferred_direction_deg": result.preferred_direction_deg,
              "osi": result.osi, "dsi": result.dsi,
              "conditions": json.dumps(result.conditions)}  # fmt: skip
    for key, (values, curve) in result.curves.items():
        arrays[f"{key}_values"], arrays[f"{key}_curves"] = values, curve
    if result.gain is not None:
        arrays["responses_low"] = result.gain["responses_low"]
        arrays["responses_high"] = result.gain["responses_high"]
        arrays["log_gain"] = result.log_gain
        record["gain"] = {k: result.gain[k] for k in ("stream", "low", "high")}
    if "rf_orientation" in truth:
        true_deg = np.rad2deg(truth["rf_orientation"][units]) % 180.0
        err = np.abs(result.preferred_orientation_deg - true_deg)
        err = np.minimum(err, 180.0 - err)
        record["_true_deg"] = true_deg
        record["truth"] = {"orientation_error_deg": err.tolist(),
                           "fraction_within_22_5_deg": float(np.mean(err <= 22.5)),
                           "median_error_deg": float(np.median(err))}  # fmt: skip
    column = {"running": 0, "pupil": 1}.get(gain_stream or "")
    if result.log_gain is not None and column is not None and "behaviour_gain" in truth:
        w = truth["behaviour_gain"][units, column]
        record.setdefault("truth", {})["log_gain_r"] = _r(result.log_gain, w)
    files[f"{sid}/tuning.npz"] = _npz(arrays)
    record["_result"] = result
    return record


def _rf(probe, spots, units, settings, truth, files, sid) -> dict:
    from neurofm.insilico.receptive_fields import (
        gradient_receptive_fields,
        sparse_noise_receptive_fields,
    )

    record = {}
    for method, fn in (
        ("sparse_noise", lambda: sparse_noise_receptive_fields(
            probe, spots, units, progress=settings.progress)),
        ("gradient", lambda: gradient_receptive_fields(probe, units, progress=settings.progress)),
    ):  # fmt: skip
        start = time.perf_counter()
        result = fn()
        entry = {"seconds": time.perf_counter() - start, "per_neuron": result.summary()}
        if "rf_center_deg" in truth and result.centre_deg is not None:
            true = truth["rf_center_deg"][units]
            entry["_true_deg"] = true
            entry["truth"] = {"centre_r_x": _r(result.centre_deg[:, 0], true[:, 0]),
                              "centre_r_y": _r(result.centre_deg[:, 1], true[:, 1])}  # fmt: skip
        arrays = {"units": result.units, "maps": result.maps, "x_px": result.x_px,
                  "y_px": result.y_px, "centre_px": result.centre_px, "size_px": result.size_px}  # fmt: skip
        if result.centre_deg is not None:
            arrays["centre_deg"], arrays["size_deg"] = result.centre_deg, result.size_deg
        if result.linear is not None:
            arrays["linear"] = result.linear
        files[f"{sid}/rf_{method}.npz"] = _npz(arrays)
        entry["_result"] = result
        record[method] = entry
    return record


def _mei(probe, units, settings, truth, files, sid) -> dict:
    from neurofm.insilico.mei import image_orientation, image_responses, most_exciting_inputs

    start = time.perf_counter()
    natural = _natural_frames(probe, settings.natural_frames)
    norm = 0.3
    record: dict = {}
    if natural is not None:
        rms = np.sqrt((natural**2).mean((1, 2)))
        norm = float(np.median(rms))
        best = image_responses(probe, natural, progress=settings.progress).max(0)[units]
        record["natural_frames"] = int(natural.shape[0])
        record["best_natural_response"] = best.tolist()
    result = most_exciting_inputs(
        probe, units, kind=settings.mei_kind, parametrisation=settings.mei_parametrisation,
        steps=settings.mei_steps, norm=norm, progress=settings.progress,
    )  # fmt: skip
    record.update(seconds=time.perf_counter() - start, norm_rms_contrast=norm,
                  steps=settings.mei_steps, kind=settings.mei_kind,
                  parametrisation=settings.mei_parametrisation,
                  per_neuron=result.summary())  # fmt: skip
    image = result.images if result.images.ndim == 3 else result.images[:, -1]
    orientation, strength = image_orientation(image)
    record["per_neuron"]["orientation_deg"] = orientation.tolist()
    record["per_neuron"]["orientation_strength"] = strength.tolist()
    arrays = {"units": result.units, "images": result.images, "activation": result.activation,
              "trace": result.trace, "orientation_deg": orientation}  # fmt: skip
    if natural is not None:
        best = np.asarray(record["best_natural_response"])
        ratio = np.where(best > 0, result.activation / np.where(best > 0, best, 1.0), np.nan)
        record["ratio_to_best_natural"] = ratio.tolist()
        record["median_ratio_to_best_natural"] = float(np.nanmedian(ratio))
    filters = true_filters(truth, probe, units)
    if filters is not None:
        even, odd = filters
        r_even = np.array([_r(image[k].ravel(), even[k].ravel()) for k in range(units.size)])
        r_odd = np.array([_r(image[k].ravel(), odd[k].ravel()) for k in range(units.size)])
        record["truth"] = {"gabor_r_even": r_even.tolist(),
                           "gabor_r_phase_invariant": np.hypot(r_even, r_odd).tolist(),
                           "median_gabor_r_phase_invariant": float(np.median(np.hypot(r_even, r_odd)))}  # fmt: skip
        if "rf_orientation" in truth:
            err = np.abs(orientation - np.rad2deg(truth["rf_orientation"][units]) % 180.0)
            err = np.minimum(err, 180.0 - err)
            record["truth"]["orientation_error_deg"] = err.tolist()
            record["truth"]["orientation_within_22_5_deg"] = float(np.mean(err <= 22.5))
        arrays["true_filter_even"] = even
    files[f"{sid}/mei.npz"] = _npz(arrays)
    record["_result"] = result
    record["_filters"] = filters
    return record


def true_filters(truth: dict, probe: ModelProbe, units: np.ndarray):
    """The simulator's even and odd Gabor filters ``([K, H, W], [K, H, W])`` of ``units`` on the
    probe's screen (at zero gaze), or None without that ground truth or the screen's size."""
    keys = ("rf_center_deg", "rf_orientation", "rf_spatial_frequency_cpd", "rf_phase",
            "rf_sigma_deg")  # fmt: skip
    if probe.screen.width_deg is None or not all(k in truth for k in keys):
        return None
    x, y = probe.screen.pixel_centres_deg()
    c = truth["rf_center_deg"][units]
    dx = x[None, None, :] - c[:, 0, None, None]
    dy = y[None, :, None] - c[:, 1, None, None]
    theta = truth["rf_orientation"][units][:, None, None]
    along = dx * np.cos(theta) + dy * np.sin(theta)
    sigma = truth["rf_sigma_deg"][units][:, None, None]
    envelope = np.exp(-(dx**2 + dy**2) / (2 * sigma**2))
    sf = truth["rf_spatial_frequency_cpd"][units][:, None, None]
    carrier = 2 * np.pi * sf * along + truth["rf_phase"][units][:, None, None]
    return envelope * np.cos(carrier), envelope * np.sin(carrier)


def _natural_frames(probe: ModelProbe, count: int) -> np.ndarray | None:
    """``count`` frames ``[M, H, W]`` (contrast) of the session's recorded stimulus on its test
    tier (else its whole recording), evenly spaced; None for parametric streams or none left."""
    if probe.parametric or count <= 0:
        return None
    session, name = probe.session, probe.stimulus_stream
    ts = session.stream_timestamps(name)
    intervals = session.intervals("test") or session.intervals()
    idx = np.concatenate(
        [np.flatnonzero((ts >= iv.start) & (ts < iv.end)) for iv in intervals] or [np.arange(0)]
    )
    if idx.size == 0:
        return None
    pick = idx[np.linspace(0, idx.size - 1, min(count, idx.size)).round().astype(int)]
    raw = np.asarray(session.stream_data(name)[np.unique(pick)], np.float64)
    if raw.ndim == 4:
        raw = raw.mean(-1)
    stats = session.stream_spec(name).statistics
    gray = float(np.mean(stats.mean)) if stats else float(np.nanmean(raw))
    frames = raw / gray - 1.0
    return np.nan_to_num(frames[np.isfinite(frames).all((1, 2))]).astype(np.float32)


# -- helpers -----------------------------------------------------------------------------------
def _family(cls, options: Mapping[str, object]):
    """A stimulus family with ``options`` over its config's defaults (validated)."""
    from neurofm.core.config import validate_config

    name = cls.Config().type
    data = {**dict(options), "type": name}
    return cls(validate_config(cls.Config, data, source=f"stimulus family {name!r} options"))


def _choose_sessions(sessions, model, wanted):
    known = [s for s in sessions if s.session_id in model.session_units]
    if wanted:
        by_id = {s.session_id: s for s in known}
        missing = [w for w in wanted if w not in by_id]
        if missing:
            raise InsilicoError(
                f"sessions {missing} are not both in the data and in the checkpoint's vocabulary; "
                f"choose from {sorted(by_id)}"
            )
        return [by_id[w] for w in wanted]
    if not known:
        raise InsilicoError(
            f"none of the data's sessions ({[s.session_id for s in sessions]}) is in the "
            f"checkpoint's vocabulary ({sorted(model.session_units)}); fine-tune the model first"
        )
    return known


def _simulated_screen_width(data: Path) -> float | None:
    """The screen width in degrees recorded by ``neurofm simulate`` (``simulation.json``)."""
    path = data / "simulation.json"
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get("screen_width_deg")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) else None


def _truth(session) -> dict[str, np.ndarray]:
    names = ("rf_center_deg", "rf_orientation", "rf_spatial_frequency_cpd", "rf_phase",
             "rf_sigma_deg", "behaviour_gain")  # fmt: skip
    have = session.manifest.ground_truth or {}
    return {n: np.asarray(session.ground_truth(n), np.float64) for n in names if n in have}


def _r(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() == 0 or b[ok].std() == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _npz(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def _public(value):
    """The summary without its in-memory results (keys starting with ``_``), NaN as None (strict
    JSON)."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list | tuple):
        return [_public(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _figures(summary: dict, folder: Path) -> None:
    from neurofm.insilico import figures

    for sid, record in summary["sessions"].items():
        where = folder / sid
        where.mkdir(parents=True, exist_ok=True)
        if "tuning" in record:
            result, true = record["tuning"]["_result"], record["tuning"].get("_true_deg")
            figures.plot_tuning(result, where / "tuning.png", true)
            if true is not None:
                figures.plot_scatter(
                    result.preferred_orientation_deg[:, None], true[:, None],
                    where / "orientation.png", labels=["preferred orientation (deg)"],
                    title=f"{sid}: preferred orientation, model vs simulator", circular=180.0,
                )  # fmt: skip
        for method, entry in record.get("rf", {}).items():
            result, true = entry["_result"], entry.get("_true_deg")
            true_px = None
            if true is not None:
                true_px = _deg_to_px(true, record["_screen"])
                figures.plot_scatter(
                    result.centre_deg, true, where / f"rf_{method}_centres.png",
                    labels=["RF centre x (deg)", "RF centre y (deg)"],
                    title=f"{sid}: receptive-field centres ({method}) vs simulator",
                )  # fmt: skip
            figures.plot_rf_maps(result, where / f"rf_{method}.png", true_px)
        if "mei" in record:
            entry = record["mei"]
            filters = entry.get("_filters")
            figures.plot_mei_gallery(
                entry["_result"], where / "mei.png", None if filters is None else filters[0]
            )


def _deg_to_px(deg: np.ndarray, screen) -> np.ndarray:
    """Degrees ``[K, 2]`` (x right, y up) to pixel coordinates (column, row)."""
    col = deg[:, 0] / screen.deg_per_px + screen.width / 2 - 0.5
    row = -deg[:, 1] / screen.deg_per_px + screen.height / 2 - 0.5
    return np.stack([col, row], 1)
