"""``neurofm insilico KIND CHECKPOINT --data DIR --out DIR``: tuning curves, receptive fields and
most exciting inputs of a trained model's neurons (:mod:`neurofm.insilico`)."""

from __future__ import annotations

import argparse
import json

from neurofm.errors import NeurofmError


def _values(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise NeurofmError(f"{what}: expected comma-separated numbers, got {text!r}") from None


def _hold(items: list[str]) -> dict[str, list[float]]:
    out = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name:
            raise NeurofmError(f"--hold {item!r}: expected STREAM=V[,V...], e.g. gaze=0,0")
        out[name] = _values(values, f"--hold {name}")
    return out


def _gain(text: str | None):
    if text is None:
        return None
    name, sep, values = text.partition("=")
    low, colon, high = values.partition(":")
    if not sep or not colon or not name:
        raise NeurofmError(f"--gain {text!r}: expected STREAM=LOW:HIGH, e.g. running=0:20")
    return name, _values(low, "--gain low"), _values(high, "--gain high")


def _options(text: str | None, flag: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise NeurofmError(f"{flag}: not JSON ({exc}); e.g. '{{\"rows\": 6}}'") from None
    if not isinstance(value, dict):
        raise NeurofmError(f"{flag}: expected a JSON object of options, got {text!r}")
    return value


def _units(text: str | None) -> list[int] | None:
    if text is None:
        return None
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, dash, hi = part.partition("-")
            if dash and int(hi) < int(lo):
                raise ValueError(part)
            out += list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
    except ValueError:
        raise NeurofmError(
            f"--neurons {text!r}: expected indices and increasing ranges, e.g. 0-15,20"
        ) from None
    return out


def run(args: argparse.Namespace) -> int:
    from neurofm.insilico.run import InsilicoSettings, run_insilico

    if args.mei_steps < 1:
        raise NeurofmError(f"--mei-steps must be at least 1, got {args.mei_steps}")
    if args.screen_width_deg is not None and not args.screen_width_deg > 0:
        raise NeurofmError(f"--screen-width-deg must be positive, got {args.screen_width_deg}")
    if args.natural_frames < 0:
        raise NeurofmError(f"--natural-frames must be 0 or more, got {args.natural_frames}")
    settings = InsilicoSettings(
        kind=args.kind,
        sessions=args.session or None,
        units=_units(args.neurons),
        screen_width_deg=args.screen_width_deg,
        hold=_hold(args.hold),
        gain=_gain(args.gain),
        gratings=args.gratings,
        gratings_config=_options(args.gratings_config, "--gratings-config"),
        spots=args.spots,
        spots_config=_options(args.spots_config, "--spots-config"),
        mei_steps=args.mei_steps,
        mei_kind=args.mei_kind,
        mei_parametrisation=args.mei_parametrisation,
        natural_frames=args.natural_frames,
        window_s=args.window_s,
        device=args.device,
        progress=not args.quiet,
    )
    summary = run_insilico(args.checkpoint, args.data, args.out, settings, overwrite=args.overwrite)
    for sid, record in summary["sessions"].items():
        print(f"{sid}: {len(record['units'])} neurons, held {record['hold']}")
        for line in _lines(record):
            print(f"  {line}")
    print(f"results written to {args.out}")
    return 0


def _lines(record: dict) -> list[str]:
    lines = []
    if "tuning" in record:
        t = record["tuning"]
        line = f"tuning: {t['conditions']} conditions, {t['seconds']:.0f} s"
        truth = t.get("truth", {})
        if "fraction_within_22_5_deg" in truth:
            line += (f"; preferred orientation within 22.5 deg of the truth for "
                     f"{truth['fraction_within_22_5_deg']:.0%}")  # fmt: skip
        if "log_gain_r" in truth:
            line += f"; gain vs truth r {truth['log_gain_r']:.2f}"
        lines.append(line)
    for method, entry in record.get("rf", {}).items():
        line = f"rf ({method}): {entry['seconds']:.0f} s"
        if "truth" in entry:
            line += (f"; centres vs truth r x {entry['truth']['centre_r_x']:.2f}, "
                     f"y {entry['truth']['centre_r_y']:.2f}")  # fmt: skip
        lines.append(line)
    if "mei" in record:
        m = record["mei"]
        line = f"mei: {m['steps']} steps, {m['seconds']:.0f} s"
        if "median_ratio_to_best_natural" in m:
            line += (f"; median response {m['median_ratio_to_best_natural']:.2f}x the best of "
                     f"{m['natural_frames']} test frames")  # fmt: skip
        if "truth" in m:
            line += f"; median r with the true filter {m['truth']['median_gabor_r_phase_invariant']:.2f}"
        lines.append(line)
    return lines


def register(sub: argparse._SubParsersAction) -> None:
    from neurofm.insilico.run import KINDS

    p = sub.add_parser(
        "insilico",
        help="tuning curves, receptive fields and most exciting inputs of a model's neurons",
        description="Run in-silico experiments on a trained model (docs/insilico.md). Results "
        "(arrays, JSON, figures) appear in --out only when every experiment finished.",
    )
    p.add_argument("kind", choices=KINDS, help="experiment to run ('all': the three)")
    p.add_argument("checkpoint", help="checkpoint folder (e.g. the demo's checkpoint/)")
    p.add_argument("--data", required=True, help="folder of sessions the checkpoint knows")
    p.add_argument("--out", required=True, help="output folder (must not exist unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--session", action="append", default=[],
                   help="session id to probe (repeatable; default: every known session)")  # fmt: skip
    p.add_argument("--neurons", default=None,
                   help="neuron columns, e.g. 0-63 or 3,7,10-12 (default: all)")  # fmt: skip
    p.add_argument("--screen-width-deg", type=float, default=None,
                   help="horizontal extent of the screen in visual degrees (default: from the "
                   "data's simulation.json when simulated; needed for gratings)")  # fmt: skip
    p.add_argument("--hold", action="append", default=[], metavar="STREAM=V[,V...]",
                   help="hold a behaviour stream at raw values, e.g. gaze=0,0 (default: each "
                   "stream's train-tier mean; repeatable)")  # fmt: skip
    p.add_argument("--gain", default=None, metavar="STREAM=LOW:HIGH",
                   help="also run the tuning at two values of a behaviour stream and estimate "
                   "each neuron's gain between them, e.g. running=0:20")  # fmt: skip
    p.add_argument("--gratings", default="gratings", help="stimulus family for tuning curves")
    p.add_argument("--spots", default="sparse_noise",
                   help="stimulus family for sparse-noise receptive fields")  # fmt: skip
    p.add_argument("--gratings-config", default=None, metavar="JSON",
                   help='options of the gratings family, e.g. \'{"directions": 16}\'')  # fmt: skip
    p.add_argument("--spots-config", default=None, metavar="JSON",
                   help='options of the spot family, e.g. \'{"rows": 18, "columns": 32}\'')  # fmt: skip
    p.add_argument("--mei-steps", type=int, default=30, help="gradient steps per MEI")
    p.add_argument("--mei-kind", choices=("static", "movie"), default="static",
                   help="one image for the whole stimulus, or one per frame")  # fmt: skip
    p.add_argument("--mei-parametrisation", choices=("pixel", "fourier"), default="pixel",
                   help="pixels (gradient smoothed) or 1/f-scaled Fourier coefficients")  # fmt: skip
    p.add_argument("--natural-frames", type=int, default=1000,
                   help="test-tier frames whose best response each MEI is compared with")  # fmt: skip
    p.add_argument("--window-s", type=float, default=None,
                   help="window length (default: the checkpoint's training window)")  # fmt: skip
    p.add_argument("--device", default="cpu", help="torch device of the model (e.g. cuda)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
