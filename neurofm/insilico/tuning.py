"""Tuning curves: responses to a grid of gratings, per-neuron preferences and selectivity, and the
behavioural gain read from tuning under two behavioural states.

For every condition of the stimulus family (built-in ``gratings``: direction x spatial frequency x
temporal frequency x contrast) the probe gives each neuron's evoked response (mean response over
the response period minus the response to the gray screen). A neuron's direction curve is taken
at its best combination of the other parameters; from it:

- preferred direction ``arg(sum_k r_k e^{i theta_k})`` and orientation ``arg(sum_k r_k
  e^{2 i theta_k}) / 2`` with ``r = R - min R`` (a vector average, finer than the grid);
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

__all__ = ["TuningResult", "condition_responses", "tuning_curves"]


@dataclass
class TuningResult:
    """Per-neuron tuning of ``units``.

    Shape: ``responses [C, K]`` evoked responses to the ``conditions`` (``C`` dicts);
    ``direction_curves [K, D]`` at ``directions [D]`` (degrees); ``preferred_direction_deg``,
    ``preferred_orientation_deg``, ``osi``, ``dsi`` ``[K]``; ``curves``: parameter name ->
    ``(values [V], responses [K, V])`` at each neuron's preferred other parameters;
    ``log_gain [K]`` (None without a gain stream).
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
        lo, hi = (x[:, idx] for x in states)
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


def _summarise(table: list[dict], responses: np.ndarray, units: np.ndarray) -> TuningResult:
    """Direction curves at each neuron's best other parameters and the statistics above."""
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
    best = np.nanargmax(np.nanmax(cube, axis=1), axis=0)  # [K]
    k = np.arange(responses.shape[1])
    curves_dk = cube[best, :, k]  # [K, D]
    r = np.nan_to_num(curves_dk - np.nanmin(curves_dk, axis=1, keepdims=True))
    theta = np.deg2rad(directions)[None, :]
    total = np.maximum(r.sum(1), 1e-12)
    vec1 = (r * np.exp(1j * theta)).sum(1)
    vec2 = (r * np.exp(2j * theta)).sum(1)
    pref_dir = np.rad2deg(np.angle(vec1)) % 360.0
    pref_ori = (np.rad2deg(np.angle(vec2)) / 2) % 180.0
    top = r.argmax(1)
    opposite = np.abs(((directions[None, :] - directions[top][:, None] - 180.0) + 180) % 360 - 180)
    opp = opposite.argmin(1)
    r_pref, r_opp = r[k, top], r[k, opp]
    dsi = (r_pref - r_opp) / np.maximum(r_pref + r_opp, 1e-12)
    result = TuningResult(
        units=units, conditions=table, responses=responses, directions=directions,
        direction_curves=curves_dk, preferred_direction_deg=pref_dir,
        preferred_orientation_deg=pref_ori, osi=np.abs(vec2) / total, dsi=dsi,
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
