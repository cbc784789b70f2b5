"""Per modality: does the trained model use it? Response r on the test tier with the stream as
recorded vs with that stream taken from another test window (a mismatch control).

    python benchmarks/modalities.py [--steps N] [--only movie running ...] [--backbone JSON]

Five models are trained (steps: see ``MODELS``, or ``--steps``): on simulated movie sessions one
with the movie and behaviour, one with calcium and spike counts (the neural streams) and one with
the eye position alone; and one each on image and grating sessions. Each row then evaluates one
task twice on the same model: once as recorded, once with one stream replaced by the same stream
of another test window (of a different stimulus clip). The neural rows show the activity of the
first 32 neurons (calcium, or spike counts) and predict the calcium of the other 32; their
control replaces only the shown neurons. If the model relies on the stream, r drops. r is the
correlation of predicted with expected (noise-free) calcium, averaged over neurons. For gratings
the script also reports how often the model's tuning recovers each neuron's simulated preferred
orientation. The ``gaze_forecast`` row (the eye-position model) predicts the second half of each
window's eye position from the first, scored against the recorded eye position; its control
replaces the first half.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neurofm.core.backbone.presets import get_preset
from neurofm.core.data import open_dataset
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig
from neurofm.core.data.windows import WindowSample, load_window, tile_intervals
from neurofm.core.interfaces import StreamTensor
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.tokens.tasks import PRESETS, StreamRule, TaskSpec, UnitIds, get_task
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.trainer import Trainer

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "plugins" / "modalities"))
from test_parametric_signal import preferred_orientation

WINDOW_S = 2.0
FRAME = {"height": 18, "width": 32, "patch_height": 6, "patch_width": 8}
HALF = 32  # neurons 0..31 are shown, 32..63 are predicted, in the neural rows
_FIRST, _SECOND = UnitIds(ids=list(range(HALF))), UnitIds(ids=list(range(HALF, 2 * HALF)))
NEURAL_TASKS = [
    TaskSpec(
        name="calcium_to_calcium",
        rules={"calcium": StreamRule(visible=(0.0, 1.0), target=(0.0, 1.0),
                                     visible_units=_FIRST, target_units=_SECOND)},
    ),
    TaskSpec(
        name="spikes_to_calcium",
        rules={"spikes": StreamRule(visible=(0.0, 1.0), visible_units=_FIRST),
               "calcium": StreamRule(target=(0.0, 1.0), target_units=_SECOND)},
    ),
]  # fmt: skip
GAZE_FORECAST = TaskSpec(
    name="gaze_forecast", rules={"gaze": StreamRule(visible=(0.0, 0.5), target=(0.5, 1.0))}
)
for _task in [*NEURAL_TASKS, GAZE_FORECAST]:
    PRESETS.setdefault(_task.name, _task)  # trainable by name
# model -> (stimulus kind of its data, encoders, training tasks, default steps). The movie model
# stops at 1500 steps: by 6000 it overfits the 80 training clips (stimulus+behaviour r 0.44 ->
# 0.23); the image and grating models improve up to 6000 (r 0.04 -> 0.17, 0.03 -> 0.32).
MODELS = {
    "movie": (
        "movie",
        {"movie": {"type": "movie", **FRAME}, "running": {"type": "running"},
         "pupil": {"type": "pupil"}, "gaze": {"type": "gaze"}, "calcium": {"type": "calcium"}},
        ["responses_from_stimulus", "responses_from_stimulus_behaviour"],
        1500,
    ),
    "neural": ("movie", {"calcium": {"type": "calcium"}, "spikes": {"type": "spikes"}},
               ["calcium_to_calcium", "spikes_to_calcium"], 6000),
    "image": ("image", {"image": {"type": "image", **FRAME}, "calcium": {"type": "calcium"}},
              ["responses_from_stimulus"], 6000),
    "grating": ("grating", {"parametric": {"type": "parametric"}, "calcium": {"type": "calcium"}},
                ["responses_from_stimulus"], 6000),
    "gaze": ("movie", {"gaze": {"type": "gaze"}}, ["gaze_forecast"], 1500),
}  # fmt: skip
# row -> (model, evaluation task, stream replaced in the control)
ROWS = {
    "movie": ("movie", "responses_from_stimulus", "movie"),
    "image": ("image", "responses_from_stimulus", "image"),
    "parametric": ("grating", "responses_from_stimulus", "parametric"),
    "running": ("movie", "responses_from_stimulus_behaviour", "running"),
    "pupil": ("movie", "responses_from_stimulus_behaviour", "pupil"),
    "gaze": ("movie", "responses_from_stimulus_behaviour", "gaze"),
    "gaze_forecast": ("gaze", "gaze_forecast", "gaze"),
    "calcium": ("neural", "calcium_to_calcium", "calcium"),
    "spikes": ("neural", "spikes_to_calcium", "spikes"),
}


def simulation(kind: str, args) -> SimulationConfig:
    return SimulationConfig.tiny().model_copy(
        update=dict(stimulus=kind, include_spikes=True, n_train_trials=args.trials,
                    trial_duration_s=4.0, neurons_per_session=args.neurons, seed=args.seed,
                    n_test_clips=10)
    )  # fmt: skip


def steps_for(name: str, args) -> int:
    """Training steps of model ``name``: ``--steps`` if given, else its default in ``MODELS``."""
    return args.steps or MODELS[name][3]


def train(sessions, name: str, args):
    _, encoders, tasks, _ = MODELS[name]
    steps = steps_for(name, args)
    torch.manual_seed(args.seed)
    target = "calcium" if "calcium" in encoders else "gaze"
    head = {"type": "poisson" if target == "calcium" else "regression"}
    config = ModelConfig.model_validate(
        {"backbone": get_preset("small").model_copy(update=json.loads(args.backbone)).model_dump(),
         "modalities": encoders,
         "readout": {"type": "neuron_embedding"}, "heads": {target: head}}
    )  # fmt: skip
    model = build_model(config, sessions)
    # a forecast must come from the encoded context, not from the head's copy of the last value
    model.anchor_targets = False
    training = TrainingConfig(
        steps=steps, batch_size=8, lr=1e-3, warmup_steps=50, eval_every=10**6,
        tasks={t: 1.0 for t in tasks}, seed=args.seed,
    )  # fmt: skip
    Trainer(model, sessions, training, window_s=WINDOW_S, progress=False).fit()
    return model.eval()


def _swap(sample: WindowSample, other: WindowSample, stream: str, columns: int | None, before):
    """``sample`` with ``stream``'s values (its first ``columns`` columns, or all of them; at
    times before ``before`` seconds) taken from ``other``."""
    own, donor = sample.streams[stream], other.streams[stream]
    rows = np.minimum(np.arange(own.values.shape[0]), donor.values.shape[0] - 1)
    values, valid = donor.values[rows], donor.valid[rows]
    if columns is not None:
        values = torch.cat([values[:, :columns], own.values[:, columns:]], 1)
        valid = torch.cat([valid[:, :columns], own.valid[:, columns:]], 1)
    later = own.times >= before  # kept as recorded (the targets of a forecast)
    values = torch.where(later.reshape((-1,) + (1,) * (values.ndim - 1)), own.values, values)
    valid = torch.where(later.reshape((-1,) + (1,) * (valid.ndim - 1)), own.valid, valid)
    streams = dict(sample.streams)
    streams[stream] = StreamTensor(values, valid, own.times, own.period_s)
    return WindowSample(sample.session_id, sample.t0, sample.duration, streams, sample.truth)


def correlations(model, sessions, task: TaskSpec, swap: str | None) -> float:
    """Mean over neurons of r(predicted, expected calcium) on the test tier (``swap``: control);
    for a model without calcium, mean over channels of r(predicted, recorded) of its target."""
    target = "calcium" if "calcium" in model.stream_names else "gaze"
    rs = []
    for s in sessions:
        starts = tile_intervals(s, "test", WINDOW_S)
        clip = [s.intervals("test")[i].stimulus_id for _, i in starts]
        windows = [
            load_window(s, t0, WINDOW_S, model.normalization(), ground_truth=["expected_calcium"])
            for t0, _ in starts
        ]
        pred, true = [], []
        for i, w in enumerate(windows):
            if swap is not None:
                # the first later window of another clip (cyclic)
                j = next(
                    (i + k) % len(windows)
                    for k in range(1, len(windows))
                    if clip[(i + k) % len(windows)] != clip[i]
                )
                before = WINDOW_S / 2 if task.name == "gaze_forecast" else np.inf
                w = _swap(w, windows[j], swap, HALF if swap == "calcium" else None, before)
            with torch.no_grad():
                out = next(o for o in model([w], [task]).targets if o.stream == target)
            pred.append(model.head(target).predict(out.raw).numpy())
            if target != "calcium":
                true.append(out.target.numpy())
                continue
            period = w.streams["calcium"].period_s
            truth = w.truth["expected_calcium"]
            idx = (out.times / period).round().long().clamp(max=truth.shape[0] - 1)
            true.append(truth[idx].numpy())
        p, y = np.concatenate(pred), np.concatenate(true)
        rs += [np.corrcoef(p[:, i], y[:, i])[0, 1] for i in range(p.shape[1])]
    return float(np.nanmean(rs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="for every model")
    parser.add_argument("--neurons", type=int, default=64)
    parser.add_argument("--trials", type=int, default=80, help="train trials (4 s) per session")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument(
        "--backbone",
        default="{}",
        help="settings over the small preset, e.g. '{\"n_latents\": 64}'",
    )
    args = parser.parse_args()
    if args.neurons < 2 * HALF:
        parser.error(f"--neurons must be at least {2 * HALF} (the neural rows show {HALF})")
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp())
    steps = args.steps or "1500-6000"
    print(f"{steps} steps per model (preset small); {args.neurons} neurons, {args.trials} "
          f"train trials of 4 s and 10 test clips x 5 repeats per session, 2 sessions")  # fmt: skip
    print(f"{'modality':<11} {'task':<34} {'r':>6} {'r, stream from another window':>30}")
    models: dict[str, tuple] = {}
    for row in args.only:
        name, task_name, stream = ROWS[row]
        if name not in models:
            data = root / MODELS[name][0]
            if not data.exists():
                simulate_to_disk(data, simulation(MODELS[name][0], args), progress=False)
            sessions = open_dataset(data)
            start = time.perf_counter()
            models[name] = (train(sessions, name, args), sessions)
            elapsed = time.perf_counter() - start
            print(f"  [{name} model: {steps_for(name, args)} steps in {elapsed:.0f} s]")
        model, sessions = models[name]
        task = get_task(task_name)
        r = correlations(model, sessions, task, None)
        control = correlations(model, sessions, task, stream)
        print(f"{row:<11} {task_name:<34} {r:6.3f} {control:30.3f}", flush=True)
        if row == "parametric":
            errors = []
            for s in sessions:
                est = preferred_orientation(model, s.session_id, len(s.units))
                true = np.asarray(s.ground_truth("preferred_orientation_deg"))
                errors.append(np.abs((est - true + 90) % 180 - 90))
            e = np.concatenate(errors)
            print(f"  preferred orientation within 22.5 deg: {(e < 22.5).mean():.2f} (chance 0.25)")


if __name__ == "__main__":
    main()
