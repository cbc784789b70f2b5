"""The stimulus path: movie (or images) -> responses on simulated V1, per model pathway and seed.

    python benchmarks/stimulus.py                      # both pathways, seeds 0,1 (1 thread each)
    python benchmarks/stimulus.py --pathways retinotopic --seeds 0,1,2,3 --out DIR
    python benchmarks/stimulus.py --stimulus image     # flashed images instead of movies

Pathways (each over the ``small`` backbone preset):

- ``tubelet``: the tubelet movie encoder and the ``neuron_embedding`` readout; the movie reaches a
  neuron only through the backbone (the version before the stimulus path);
- ``retinotopic``: the default model's stimulus path: the ``movie_core`` encoder (a shared
  convolutional core) and the ``retinotopic`` readout, which reads each neuron's drive at its own
  place on the screen; the backbone gives the per-neuron modulation.

With ``--stimulus image`` the sessions show flashed images (0.5 s on, 0.5 s gray) instead of
movies; the pathways are then the ``image`` patch encoder with ``neuron_embedding``, and the
``image_core`` encoder (the same core, on the presentations laid onto 15 Hz steps) with
``retinotopic``.

Each trains from the movie alone (task ``responses_from_stimulus``; with ``--behaviour``, movie,
running and gaze on ``responses_from_stimulus_behaviour``) for ``--steps`` steps per seed and
reports the correlation of predicted with expected (noise-free) calcium on the test tier (10 test
clips x 5 repeats per session), next to an LN model and the SENSORIUM-style CNN baseline
(``neurofm.core.baselines.cnn``, ``--cnn-seeds``, as many steps) fitted to the same inputs, and
the simulator's own prediction with the eye position and the behavioural gain hidden
(:func:`oracle_r`: the reference a stimulus-only model can approach). For the
retinotopic pathway it also reports how well the screen position each neuron's readout settles on
matches the simulator's receptive-field centre (``rf_center_deg``, at zero gaze): Pearson r per
axis over all neurons of all sessions, with a scatter plot (``rf_scatter_<stimulus>_seed<N>.png``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from neurofm.core.backbone.presets import get_preset
from neurofm.core.baselines.cnn import CNNConfig, fit_cnn_baseline
from neurofm.core.baselines.ln import fit_linear_nonlinear
from neurofm.core.data import open_dataset
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig, dataset
from neurofm.core.data.simulation.neurons import leaky_integrate
from neurofm.core.evaluation.evaluate import evaluate
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.model.presets import default_model_config
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.trainer import Trainer
from neurofm.plugins.readouts.retinotopic import RetinotopicReadout

FRAME = (18, 32)
TUBELETS = {"type": "movie", "height": 18, "width": 32, "patch_height": 6, "patch_width": 8}
PATCHES = {"type": "image", "height": 18, "width": 32, "patch_height": 6, "patch_width": 8}


def score_test_tier(sessions, predict) -> float:
    """Mean over the neurons of every session of r(prediction, expected calcium) on the test
    tier; ``predict(session, times [T]) -> [T, N]``."""
    rs = []
    for s in sessions:
        ts = s.stream_timestamps("calcium")
        idx = np.concatenate(
            [np.flatnonzero((ts >= iv.start) & (ts < iv.end)) for iv in s.intervals("test")]
        )
        pred, true = predict(s, ts[idx]), np.asarray(s.ground_truth("expected_calcium"))[idx]
        rs += [np.corrcoef(pred[:, i], true[:, i])[0, 1] for i in range(pred.shape[1])]
    return float(np.nanmean(rs))


def ln_r(sessions, inputs: list[str], normalization) -> float:
    """LN model per session (``neurofm.core.baselines.ln``): mean r with expected calcium."""
    fits = {s.session_id: fit_linear_nonlinear(s, inputs, "calcium", normalization)
            for s in sessions}  # fmt: skip
    return score_test_tier(sessions, lambda s, t: fits[s.session_id].predict(t))


def cnn_r(sessions, inputs: list[str], normalization, steps: int, seed: int) -> float:
    """The SENSORIUM-style CNN baseline (``neurofm.core.baselines.cnn``, its default sizes, best
    validation state kept, half a window of context before each window) fitted on all sessions
    for ``steps`` steps of batch 8: mean r with expected calcium on the test tier."""
    # half a window of the movie before each window, as the quality benchmark gives it
    config = CNNConfig(steps=steps, eval_every=max(steps // 8, 1), seed=seed, context_s=1.0)
    fit = fit_cnn_baseline(sessions, inputs, "calcium", normalization, config=config)
    return score_test_tier(sessions, lambda s, t: fit.predict(s.session_id, t))


def oracle_r(sim: SimulationConfig) -> dict[str, float]:
    """How well the simulator itself predicts its expected calcium on the test tier when part of
    what drives it is hidden, over the neurons of every session of the first animal: its own
    filters, nonlinearity and calcium kernel with the eye held at the screen centre (``eye 0``)
    or where it was (``true eye``), and the behavioural gain at each neuron's mean (``mean
    gain``) or as it was. Calcium is integrated over the whole recording, so these bound a
    prediction from 2 s windows from above; ``eye 0, mean gain`` is the reference of a
    stimulus-only model (the task hides gaze and behaviour)."""
    real = dataset.spatial_responses

    def eye_at_centre(movie, gaze, pop, screen, **kwargs):
        return real(movie, np.zeros_like(gaze), pop, screen, **kwargs)

    out: dict[str, list[float]] = {}
    for session in range(sim.sessions_per_animal):
        truth = dataset.simulate_session(sim, 0, session)
        ts = truth.streams["calcium"].timestamps
        idx = np.concatenate([np.flatnonzero((ts >= iv["start"]) & (ts < iv["end"]))
                              for iv in truth.intervals if iv["tier"] == "test"])  # fmt: skip
        expected = truth.ground_truth["expected_calcium"][idx]
        for eye, responses in (("true eye", real), ("eye 0", eye_at_centre)):
            with mock.patch.object(dataset, "spatial_responses", responses):
                gt = dataset.simulate_session(sim, 0, session).ground_truth
            drive = gt["stimulus_drive"] - gt["threshold"]
            rate = gt["base_rate_hz"] + gt["rate_gain_hz"] * np.logaddexp(0.0, drive)
            dt = 1.0 / sim.neural_rate_hz
            gains = {
                "true gain": gt["behaviour_gain_t"],
                "mean gain": gt["behaviour_gain_t"].mean(0),
            }
            for label, gain in gains.items():
                calcium = (
                    gt["calcium_baseline"]
                    + gt["calcium_amplitude"]
                    * leaky_integrate(rate * gain * dt, np.exp(-dt / gt["calcium_tau_s"]))[idx]
                )
                rs = [
                    np.corrcoef(calcium[:, i], expected[:, i])[0, 1]
                    for i in range(calcium.shape[1])
                ]
                out.setdefault(f"{eye}, {label}", []).extend(rs)
    return {k: float(np.nanmean(v)) for k, v in out.items()}


def train_and_score(model, sessions, task: str, steps: int, lr: float, seed: int) -> tuple:
    """Train ``model`` on ``task`` alone (batch 8, 2 s windows) and score it: ``(r with expected
    calcium on the test tier, training seconds)``. The score is ``r_to_expected`` of
    :func:`~neurofm.core.evaluation.evaluate.evaluate` (its overlapping windows: each time from
    the window it is central in), as the other models' (predicted over whole intervals)."""
    training = TrainingConfig(
        steps=steps, batch_size=8, lr=lr, warmup_steps=20, eval_every=10**6,
        tasks={task: 1.0}, device="cpu", seed=seed,
    )  # fmt: skip
    start = time.perf_counter()
    Trainer(model, sessions, training, window_s=2.0, progress=False).fit()
    seconds = time.perf_counter() - start
    result = evaluate(model.eval(), sessions, [task], window_s=2.0, progress=False,
                      baselines=False)  # fmt: skip
    return result.tasks[task]["calcium"].summary["r_to_expected"], seconds


def model_config(
    pathway: str,
    behaviour: bool,
    movie: dict | None = None,
    readout: dict | None = None,
    stimulus: str = "movie",
) -> ModelConfig:
    """The model of ``pathway`` for the benchmark's 18x32 movie or images (retinotopic pathway:
    ``movie`` updates the ``movie_core`` encoder's settings, ``core`` inside it the core's;
    ``readout`` the ``retinotopic`` readout's). Images: ``image_core`` with the same core at the
    core's step rate of the movie (15 Hz), or ``image`` patches for the tubelet pathway."""
    default = default_model_config("small", frame_size=FRAME, stimulus_path=True).model_dump()
    encoder = default["modalities"]["movie"]
    movie = dict(movie or {})
    encoder["core"].update(movie.pop("core", {}))
    encoder.update(movie)
    if stimulus == "image":
        step_s = encoder.pop("frame_pool") / 30.0
        encoder = {**encoder, "type": "image_core", "step_s": step_s}
    streams = {"calcium": {"type": "calcium"}, stimulus: encoder}
    readout = {**default["readout"], **(readout or {})}
    if pathway == "tubelet":
        streams[stimulus] = TUBELETS if stimulus == "movie" else PATCHES
        readout = {"type": "neuron_embedding"}
    elif pathway != "retinotopic":
        raise SystemExit(f"unknown pathway {pathway!r}; choose tubelet or retinotopic")
    if behaviour:
        streams.update(running={"type": "running"}, gaze={"type": "gaze"})
    return ModelConfig.model_validate(
        {"backbone": get_preset("small").model_dump(), "modalities": streams,
         "readout": readout, "heads": {"calcium": {"type": "poisson"}}}
    )  # fmt: skip


def receptive_fields(model, sessions, stimulus: str) -> tuple[np.ndarray, np.ndarray]:
    """``(readout positions [N, 2], true centres [N, 2])`` in degrees (x right, y up) over every
    neuron of every session."""
    found, true = [], []
    for s in sessions:
        mu = model.readout.screen_positions(s.session_id).cpu().numpy().astype(np.float64)
        height, width = s.stream_spec(stimulus).data.shape[1:3]
        deg_per_px = SCREEN_WIDTH_DEG / width
        found.append(np.stack([mu[:, 0] * width / 2, -mu[:, 1] * height / 2], 1) * deg_per_px)
        true.append(np.asarray(s.ground_truth("rf_center_deg"), np.float64))
    return np.concatenate(found), np.concatenate(true)


SCREEN_WIDTH_DEG = SimulationConfig().screen_width_deg


def plot_rf(found: np.ndarray, true: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
    for ax, axis, label in zip(axes, (0, 1), ("azimuth x", "elevation y"), strict=True):
        r = np.corrcoef(found[:, axis], true[:, axis])[0, 1]
        ax.scatter(true[:, axis], found[:, axis], s=6, alpha=0.6)
        lo, hi = true[:, axis].min(), true[:, axis].max()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.7)
        ax.set_xlabel(f"true RF centre {label} (deg)")
        ax.set_ylabel("readout position (deg)")
        ax.set_title(f"{label}: r = {r:.3f}", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pathways", nargs="*", default=["tubelet", "retinotopic"])
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--movie", default="{}", help="JSON: movie_core settings over the default's")
    p.add_argument("--readout", default="{}", help="JSON: retinotopic settings over the default's")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--behaviour", action="store_true", help="movie + running + gaze -> responses")
    p.add_argument(
        "--stimulus",
        choices=["movie", "image"],
        default="movie",
        help="simulated movies, or flashed images (0.5 s on, 0.5 s gray)",
    )
    p.add_argument("--cnn-seeds", default="0", help="seeds of the CNN baseline ('' for none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default=None, help="simulated data folder (default: a temporary one)")
    p.add_argument("--out", default="benchmarks/results/stimulus", help="figures and JSON")
    p.add_argument(
        "--save", default=None, help="folder: save each trained model as <pathway>_seed<k> there"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    sim = SimulationConfig.tiny().model_copy(
        update=dict(stimulus=args.stimulus, n_train_trials=80, trial_duration_s=4.0,
                    neurons_per_session=64, n_test_clips=10)
    )  # fmt: skip
    root = Path(args.data or tempfile.mkdtemp()) / (
        "stimulus" if args.stimulus == "movie" else "images"
    )
    if not (root / "simulation.json").exists():
        simulate_to_disk(root, sim, progress=False, overwrite=True)
    sessions = open_dataset(root)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = "responses_from_stimulus_behaviour" if args.behaviour else "responses_from_stimulus"
    print(f"{task}: {args.steps} steps, lr {args.lr:g}, batch 8, {args.threads} thread(s); "
          f"r with expected calcium", flush=True)  # fmt: skip
    results: dict = {}
    # every pathway's model normalises the streams alike (the streams' own kinds)
    normalization = build_model(
        model_config("retinotopic", args.behaviour, stimulus=args.stimulus), sessions
    ).normalization()
    for pathway in args.pathways:
        rows = []
        for seed in [int(s) for s in args.seeds.split(",")]:
            torch.manual_seed(seed)
            config = model_config(
                pathway, args.behaviour, json.loads(args.movie), json.loads(args.readout),
                args.stimulus,
            )  # fmt: skip
            model = build_model(config, sessions)
            r, seconds = train_and_score(model, sessions, task, args.steps, args.lr, seed)
            row = {"seed": seed, "seconds": seconds, "r": r}
            if args.save:
                model.save_pretrained(
                    Path(args.save) / f"{pathway}_seed{seed}",
                    extra={"window_s": 2.0, "steps": args.steps, "task": task},
                )
            line = f"  {pathway} seed {seed}: r {row['r']:.3f} ({seconds:.0f} s)"
            if isinstance(model.readout, RetinotopicReadout):
                found, true = receptive_fields(model, sessions, args.stimulus)
                row["rf_r"] = [float(np.corrcoef(found[:, a], true[:, a])[0, 1]) for a in (0, 1)]
                line += f", RF centre r x {row['rf_r'][0]:.3f} y {row['rf_r'][1]:.3f}"
                plot_rf(found, true, out / f"rf_scatter_{args.stimulus}_seed{seed}.png",
                        f"{pathway}, seed {seed}, {args.steps} steps: readout position vs "
                        f"simulated RF centre ({len(true)} neurons)")  # fmt: skip
            print(line, flush=True)
            rows.append(row)
        rs = [r["r"] for r in rows]
        print(f"{pathway}: mean r {np.mean(rs):.3f} (sd {np.std(rs):.3f}) over {len(rs)} seeds",
              flush=True)  # fmt: skip
        results[pathway] = rows
    inputs = [args.stimulus, "running", "gaze"] if args.behaviour else [args.stimulus]
    ln = ln_r(sessions, inputs, normalization)
    print(f"LN ({', '.join(inputs)}): r {ln:.3f}")
    cnn = {}
    for seed in [int(x) for x in args.cnn_seeds.split(",") if x.strip()]:
        start = time.perf_counter()
        cnn[seed] = cnn_r(sessions, inputs, normalization, args.steps, seed)
        print(f"CNN ({', '.join(inputs)}) seed {seed}: r {cnn[seed]:.3f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    oracle = oracle_r(sim)
    for label, r in oracle.items():
        print(f"oracle (simulator, {label}): r {r:.3f}")
    payload = {"task": task, "stimulus": args.stimulus, "steps": args.steps,
               "threads": args.threads, "ln_r": ln, "cnn_r": cnn, "oracle_r": oracle,
               "pathways": results}  # fmt: skip
    (out / f"stimulus_{args.stimulus}.json").write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
