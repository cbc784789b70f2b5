"""In-silico experiments on a trained checkpoint, checked against the simulator's ground truth.

Runs ``neurofm insilico all`` (tuning curves at two running speeds, sparse-noise and gradient
receptive fields, static MEIs) on the first ``--neurons`` neurons of every session the
checkpoint knows, with the gaze held at 0 (the truth's receptive-field centres are at zero gaze),
and prints, pooled over sessions:

- preferred orientation within 22.5 degrees of the simulator's ``rf_orientation``: all neurons
  and the well-predicted ones (single-trial r on ``responses_from_stimulus_behaviour`` at least
  ``--well`` of the neuron's noise ceiling, from ``neurofm.evaluate`` on the test tier); chance
  is 25 %;
- r of the receptive-field centres (both methods) with ``rf_center_deg``, per axis;
- the same from the orientation of each neuron's MEI (the dominant orientation of its Fourier
  power);
- MEIs: each neuron's evoked response to its MEI over its best response to 1,000 test-tier frames
  shown the same way (median, and the fraction at 2x or more), and the MEI's correlation with the
  neuron's true Gabor (phase-invariant: ``hypot(r_even, r_odd)``);
- r of the log-gain between running at 0 and 20 cm/s with the simulator's running gain;
- wall time of each experiment for one session's neurons (``--threads`` torch threads).

Usage::

    python benchmarks/insilico.py --checkpoint demo/checkpoint --data demo/data
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neurofm.core.data import open_dataset
from neurofm.core.evaluation.evaluate import evaluate
from neurofm.core.model.checkpoint import load_checkpoint
from neurofm.insilico.run import InsilicoSettings, run_insilico

TASK = "responses_from_stimulus_behaviour"


def well_predicted(checkpoint: str, data: str, threshold: float) -> dict[str, np.ndarray]:
    """Session -> ``[N]`` bool: single-trial r at least ``threshold`` of the noise ceiling."""
    loaded = load_checkpoint(checkpoint)
    sessions = [s for s in open_dataset(data) if s.session_id in loaded.model.session_units]
    window = float(loaded.meta.get("window_s", 2.0))
    result = evaluate(loaded.model.eval(), sessions, [TASK], window_s=window, baselines=False,
                      progress=False)  # fmt: skip
    fraction = np.asarray(result.tasks[TASK]["calcium"].per_unit["fraction_of_ceiling"])
    out, start = {}, 0
    for s in sessions:
        n = s.stream_spec("calcium").data.shape[1]
        out[s.session_id] = fraction[start : start + n] >= threshold
        start += n
    return out


def pooled_r(records: list[dict], key: str, truth_key: str, axis: int) -> float:
    found, true = [], []
    for rec in records:
        found.append(np.asarray(rec[key])[:, axis])
        true.append(np.asarray(rec[truth_key])[:, axis])
    f, t = np.concatenate(found), np.concatenate(true)
    return float(np.corrcoef(f, t)[0, 1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--neurons", type=int, default=64,
                   help="first N neurons of each session (at most the smallest session's)")  # fmt: skip
    p.add_argument("--well", type=float, default=0.5, help="well predicted: r / ceiling >= this")
    p.add_argument("--mei-steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None, help="keep the insilico folder there")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    good = well_predicted(args.checkpoint, args.data, args.well)
    neurons = min(args.neurons, *(mask.size for mask in good.values()))
    out = Path(args.out or tempfile.mkdtemp()) / "insilico"
    settings = InsilicoSettings(
        kind="all", units=list(range(neurons)), hold={"gaze": [0.0, 0.0]},
        gain=("running", [0.0], [20.0]), mei_steps=args.mei_steps, progress=False,
    )  # fmt: skip
    start = time.perf_counter()
    summary = run_insilico(args.checkpoint, args.data, out, settings, overwrite=True)
    total = time.perf_counter() - start
    sessions = {s.session_id: s for s in open_dataset(args.data)}

    within, within_good, log_gain, true_gain, mei_within, mei_good = [], [], [], [], [], []
    rf_rows: dict[str, list[dict]] = {"sparse_noise": [], "gradient": []}
    ratios, gabor_r, seconds = [], [], {}
    for sid, rec in summary["sessions"].items():
        units = np.asarray(rec["units"])
        truth = sessions[sid]
        err = np.asarray(rec["tuning"]["truth"]["orientation_error_deg"])
        within.append(err <= 22.5)
        within_good.append((err <= 22.5)[good[sid][units]])
        log_gain.append(np.asarray(rec["tuning"]["per_neuron"]["log_gain"]))
        true_gain.append(np.asarray(truth.ground_truth("behaviour_gain"))[units, 0])
        centres = np.asarray(truth.ground_truth("rf_center_deg"))[units]
        for method in rf_rows:
            rf_rows[method].append({"found": rec["rf"][method]["per_neuron"]["centre_deg"],
                                    "true": centres})  # fmt: skip
        ratios.append(np.asarray(rec["mei"]["ratio_to_best_natural"], dtype=float))
        mei_err = np.asarray(rec["mei"]["truth"]["orientation_error_deg"])
        mei_within.append(mei_err <= 22.5)
        mei_good.append((mei_err <= 22.5)[good[sid][units]])
        gabor_r.append(np.asarray(rec["mei"]["truth"]["gabor_r_phase_invariant"]))
        seconds[sid] = {
            "tuning": rec["tuning"]["seconds"],
            "rf": sum(rec["rf"][m]["seconds"] for m in rf_rows),
            "mei": rec["mei"]["seconds"],
        }
    within, within_good = np.concatenate(within), np.concatenate(within_good)
    ratios, gabor_r = np.concatenate(ratios), np.concatenate(gabor_r)
    mei_within, mei_good = np.concatenate(mei_within), np.concatenate(mei_good)
    gain_r = float(np.corrcoef(np.concatenate(log_gain), np.concatenate(true_gain))[0, 1])
    rf_r = {m: [pooled_r(rows, "found", "true", a) for a in (0, 1)] for m, rows in rf_rows.items()}
    first = next(iter(seconds.values()))
    result = {
        "checkpoint": args.checkpoint, "neurons": int(within.size),
        "well_predicted": int(within_good.size), "well_threshold": args.well,
        "orientation_within_22_5": float(within.mean()),
        "orientation_within_22_5_well_predicted": float(within_good.mean()) if within_good.size
        else None,
        "mei_orientation_within_22_5": float(mei_within.mean()),
        "mei_orientation_within_22_5_well_predicted": float(mei_good.mean()) if mei_good.size
        else None,
        "rf_centre_r": rf_r, "mei_median_ratio": float(np.nanmedian(ratios)),
        "mei_fraction_ratio_ge_2": float(np.mean(ratios >= 2)),
        "mei_median_gabor_r": float(np.median(gabor_r)), "gain_r": gain_r,
        "seconds_one_session": first, "seconds_total": total, "threads": args.threads,
    }  # fmt: skip
    print(f"checkpoint {args.checkpoint}: {within.size} neurons in {len(seconds)} sessions, "
          f"{within_good.size} well predicted (r >= {args.well:g} of the ceiling)")  # fmt: skip
    good_text = "n/a" if not within_good.size else f"{within_good.mean():.0%}"
    print(f"  preferred orientation within 22.5 deg: {within.mean():.0%} of all, "
          f"{good_text} of well predicted (chance 25 %)")  # fmt: skip
    mei_text = "n/a" if not mei_good.size else f"{mei_good.mean():.0%}"
    print(f"  orientation of the MEI within 22.5 deg: {mei_within.mean():.0%} of all, "
          f"{mei_text} of well predicted")  # fmt: skip
    for method, (rx, ry) in rf_r.items():
        print(f"  RF centres ({method}) vs truth: r x {rx:.3f}, y {ry:.3f}")
    print(f"  MEI response / best of 1000 test frames: median {np.nanmedian(ratios):.2f}x, "
          f"{np.mean(ratios >= 2):.0%} at >= 2x; MEI vs true Gabor r median "
          f"{np.median(gabor_r):.2f}")  # fmt: skip
    print(f"  running gain (log ratio 20 vs 0 cm/s) vs truth: r {gain_r:.3f}")
    print(f"  one session's {neurons} neurons: tuning {first['tuning']:.0f} s, RF "
          f"{first['rf']:.0f} s, MEI {first['mei']:.0f} s = {sum(first.values()):.0f} s "
          f"({args.threads} threads); whole run {total:.0f} s")  # fmt: skip
    if args.out:
        (Path(args.out) / "insilico_benchmark.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
