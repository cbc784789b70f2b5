"""Tuning curves: responses to a grid of gratings, per-neuron preferences and selectivity, and the
behavioural gain read from tuning under two behavioural states.

For every condition of the stimulus family (built-in ``gratings``: direction x spatial frequency x
temporal frequency x contrast, static gratings also x spatial phase) the probe gives each neuron's
evoked response (mean response over the response period minus the response to the gray screen).
A static grating shown at several phases counts as one condition, with the neuron's largest
response over the phases (:func:`best_over_phases`: a simple cell responds only where the bars
fall on its receptive field's subfields). A neuron's orientation curve is its direction curve at
its best combination of the other parameters, its direction curve the same at its best drifting
combination (direction needs motion; the orientation curve when no grating drifts); from them:

- preferred orientation ``arg(sum_k r_k e^{2 i theta_k}) / 2`` and direction ``arg(sum_k r_k
  e^{i theta_k})`` with ``r = R - min R`` (vector averages, finer than the grid);
- ``osi = |sum r e^{2 i theta}| / sum r`` and ``dsi = (R_pref - R_opp) / (R_pref + R_opp)``
  (``R`` at the best grid direction and the opposite one, ``R - min R``).

The gain: with ``gain_stream`` held at two values (e.g. running speed 0 and 20 cm/s), the slope
``s = sum hi * lo / sum lo^2`` of the evoked responses at the high value against those at the low
one, over all conditions; ``log s`` is the neuron's log-gain between the two states (a
multiplicative gain scales every evoked response alike).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from neurofm.core.progress import progress as progress_bar
from neurofm.insilico.probe import InsilicoError, ModelProbe
from neurofm.insilico.stimuli import Stimulus

__all__ = ["TuningResult", "best_over_phases", "condition_responses", "tuning_curves"]


@dataclass
class TuningResult:
    """Per-neuron tuning of ``units``.

    Shape: ``responses [C, K]`` evoked responses to the ``conditions`` (``C`` dicts; a static
    grating shown at several phases is one condition, its response the largest over them);
    ``orientation_curves [K, D]`` at ``directions [D]`` (degrees), at each neuron's best
    condition (preferred orientation and OSI come from it); ``direction_curves [K, D]`` at its
    best drifting condition (preferred direction and DSI; the same curve without drifting
    conditions); ``preferred_direction_deg``, ``preferred_orientation_deg``, ``osi``, ``dsi``
    ``[K]``; ``curves``: parameter name -> ``(values [V], responses [K, V])`` at each neuron's
    preferred other parameters; ``log_gain [K]`` (None without a gain stream).
    """

    units: np.ndarray
    conditions: list[dict[str, float]]
    responses: np.ndarray
    directions: np.ndarray
    direction_curves: np.ndarray
    preferred_direction_deg: np.ndarray
    preferred_orientation_deg: np.ndarray
    osi: np.ndarray
    dsi: np.ndarray
    orientation_curves: np.ndarray | None = None
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    gain: dict | None = None
    log_gain: np.ndarray | None = None

    def summary(self) -> dict[str, list]:
        out = {
            "unit": self.units.tolist(),
            "preferred_direction_deg": self.preferred_direction_deg.tolist(),
            "preferred_orientation_deg": self.preferred_orientation_deg.tolist(),
            "osi": self.osi.tolist(),
            "dsi": self.dsi.tolist(),
        }
        if self.log_gain is not None:
            out["log_gain"] = self.log_gain.tolist()
        return out


def condition_responses(
    probe: ModelProbe,
    stimulus: Stimulus,
    indices: Sequence[int] | None = None,
    *,
    progress: bool = False,
    desc: str = "conditions",
) -> np.ndarray:
    """Evoked responses ``[C, N]`` of every neuron to conditions ``indices`` (default: all)."""
    table = stimulus.conditions(probe.screen)
    indices = list(range(len(table))) if indices is None else list(indices)
    out = np.empty((len(indices), probe.n_units), np.float64)
    bar = progress_bar(total=len(indices), desc=desc, enabled=progress, leave=False)
    with probe.frozen(), torch.no_grad():
        for start in range(0, len(indices), probe.batch_size):
            chunk = indices[start : start + probe.batch_size]
            frames = render(probe, stimulus, chunk)
            out[start : start + len(chunk)] = probe.evoked(frames).cpu().numpy()
            bar.update(len(chunk))
    bar.close()
    return out


def render(probe: ModelProbe, stimulus: Stimulus, indices: Sequence[int]) -> torch.Tensor:
    """Conditions ``indices`` as the probe's stimulus input ``[B, F, ...]`` (contrast frames, or
    parameters for a parametric encoder)."""
    if probe.parametric:
        values = stimulus.parameters(probe.channel_names, probe.screen, indices, probe.frame_times)
        return torch.from_numpy(values)
    frames = stimulus.frames(probe.screen, indices, probe.frame_times)
    shape = probe.stimulus_shape
    if frames.shape[2:] != shape[:2]:
        raise InsilicoError(
            f"stimulus family {stimulus.config.type!r} rendered frames of "
            f"{frames.shape[2]}x{frames.shape[3]} pixels; the model's {probe.stimulus_stream!r} "
            f"stream has {shape[0]}x{shape[1]}. Render on the probe's screen"
        )
    x = torch.from_numpy(frames)
    if len(shape) == 3:  # colour channels: the same contrast in each
        x = x[..., None].expand(*x.shape, shape[2])
    return x


def tuning_curves(
    probe: ModelProbe,
    stimulus: Stimulus,
    units: Sequence[int] | None = None,
    *,
    gain_stream: str | None = None,
    gain_values: tuple[Sequence[float], Sequence[float]] | None = None,
    progress: bool = False,
) -> TuningResult:
    """Tuning of ``units`` (default: all) to ``stimulus`` (conditions with ``direction`` and
    optionally ``spatial_frequency_cpd``, ``temporal_frequency_hz``, ``contrast`` keys).

    With ``gain_stream`` and ``gain_values`` (low, high raw values), the conditions are shown twice
    more with that stream held at each value (the other streams as the probe holds them) and the
    log-gain between the two states is estimated (module docstring).
    """
    idx = probe.check_units(units)
    table = stimulus.conditions(probe.screen)
    if not table or "direction" not in table[0]:
        raise InsilicoError(
            f"stimulus family {stimulus.config.type!r} has no 'direction' parameter; tuning "
            f"curves need gratings (or a family with direction, spatial_frequency_cpd, ...)"
        )
    responses = condition_responses(probe, stimulus, progress=progress, desc="tuning")[:, idx]
    result = _summarise(table, responses, idx)
    if gain_stream is not None:
        if gain_values is None:
            raise InsilicoError(f"gain_stream {gain_stream!r} needs gain_values (low, high)")
        states = []
        for label, value in zip(("low", "high"), gain_values, strict=True):
            state = probe.held({gain_stream: list(value)})
            states.append(
                condition_responses(state, stimulus, progress=progress, desc=f"gain {label}")
            )
        _, (lo, hi) = best_over_phases(table, *(x[:, idx] for x in states))
        slope = (hi * lo).sum(0) / np.maximum((lo * lo).sum(0), 1e-12)
        result.log_gain = np.log(np.maximum(slope, 1e-6))
        result.gain = {
            "stream": gain_stream,
            "low": [float(v) for v in gain_values[0]],
            "high": [float(v) for v in gain_values[1]],
            "responses_low": lo,
            "responses_high": hi,
        }
    return result


def best_over_phases(
    table: list[dict], *responses: np.ndarray
) -> tuple[list[dict], list[np.ndarray]]:
    """Conditions that differ only in ``phase_deg`` (a static grating at several spatial phases)
    merged into one, each neuron's response to it the largest over the phases.

    Shape: ``responses`` each ``[C, K]`` -> ``[C', K]``, with the ``C'`` merged conditions (without
    ``phase_deg``) in order of first appearance. A table without ``phase_deg`` is returned as is.
    """
    if not table or "phase_deg" not in table[0]:
        return table, list(responses)
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(table):
        groups.setdefault(tuple((k, v) for k, v in c.items() if k != "phase_deg"), []).append(i)
    merged = [dict(key) for key in groups]
    return merged, [np.stack([r[rows].max(0) for rows in groups.values()]) for r in responses]


def _summarise(table: list[dict], responses: np.ndarray, units: np.ndarray) -> TuningResult:
    """Orientation and direction curves at each neuron's best other parameters and the statistics
    above: orientation from the best of all conditions (static gratings at their best phase
    included), direction from the best drifting one (direction needs motion) when there is
    one."""
    table, (responses,) = best_over_phases(table, responses)
    keys = [k for k in table[0] if k not in ("direction", "orientation")]
    directions = np.array(sorted({c["direction"] for c in table}))
    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(table):
        groups.setdefault(tuple(c[k] for k in keys), []).append(i)
    combos = list(groups)
    # [G, D, K]: responses by combination of the other parameters and direction
    cube = np.full((len(combos), directions.size, responses.shape[1]), np.nan)
    for g, combo in enumerate(combos):
        for i in groups[combo]:
            cube[g, np.searchsorted(directions, table[i]["direction"])] = responses[i]
    peak = np.nanmax(cube, axis=1)  # [G, K]
    best = np.nanargmax(peak, axis=0)  # [K]
    tf = keys.index("temporal_frequency_hz") if "temporal_frequency_hz" in keys else None
    moving = np.array([tf is not None and combo[tf] > 0 for combo in combos])
    best_moving = best
    if moving.any() and not moving.all():
        best_moving = np.nanargmax(np.where(moving[:, None], peak, -np.inf), axis=0)
    k = np.arange(responses.shape[1])
    theta = np.deg2rad(directions)[None, :]

    def shifted(curves: np.ndarray) -> np.ndarray:
        return np.nan_to_num(curves - np.nanmin(curves, axis=1, keepdims=True))

    ori_curves, dir_curves = cube[best, :, k], cube[best_moving, :, k]  # [K, D]
    r = shifted(ori_curves)
    vec2 = (r * np.exp(2j * theta)).sum(1)
    pref_ori = (np.rad2deg(np.angle(vec2)) / 2) % 180.0
    osi = np.abs(vec2) / np.maximum(r.sum(1), 1e-12)
    top = r.argmax(1)
    rd = shifted(dir_curves)
    vec1 = (rd * np.exp(1j * theta)).sum(1)
    pref_dir = np.rad2deg(np.angle(vec1)) % 360.0
    top_d = rd.argmax(1)
    opposite = np.abs(
        ((directions[None, :] - directions[top_d][:, None] - 180.0) + 180) % 360 - 180
    )
    opp = opposite.argmin(1)
    r_pref, r_opp = rd[k, top_d], rd[k, opp]
    dsi = (r_pref - r_opp) / np.maximum(r_pref + r_opp, 1e-12)
    result = TuningResult(
        units=units, conditions=table, responses=responses, directions=directions,
        direction_curves=dir_curves, preferred_direction_deg=pref_dir,
        preferred_orientation_deg=pref_ori, osi=osi, dsi=dsi, orientation_curves=ori_curves,
    )  # fmt: skip
    # one-parameter curves at the neuron's best direction and best values of the others
    for j, key in enumerate(keys):
        values = np.array(sorted({c[key] for c in table}))
        if values.size < 2:
            continue
        curve = np.full((responses.shape[1], values.size), np.nan)
        for n in range(responses.shape[1]):
            want = combos[best[n]]
            d = directions[top[n]]
            for v_i, v in enumerate(values):
                combo = tuple(v if q == j else want[q] for q in range(len(keys)))
                for i in groups.get(combo, []):
                    if table[i]["direction"] == d:
                        curve[n, v_i] = responses[i, n]
        result.curves[key] = (values, curve)
    return result
