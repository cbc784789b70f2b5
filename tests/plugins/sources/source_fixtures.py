"""Fixture recordings written in each source format (small), and a two-step training check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from neurofm.core.data import open_dataset
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig

T0 = 1_500_000_000.123456  # device clocks on epoch time
RESP_HZ, EYE_HZ, TREAD_HZ, SCREEN_HZ = 8.1088, 20.19, 49.7, 30.0
N_NEURONS = 6
# (modality, seconds shown, tier, stimulus id); blanks separate trials
SCREEN_TRIALS = [
    ("video", 2.0, "train", "v0"),
    ("blank", 0.5, None, None),
    ("image", 2.0, "train", "i0"),
    ("blank", 0.5, None, None),
    ("video", 2.0, "test", "v1"),
    ("blank", 0.5, None, None),
    ("video", 2.0, "test", "v1"),
    ("blank", 0.5, None, None),
    ("image", 2.0, "validation", "i1"),
    ("video", 2.0, "train", "v2"),
]


def _yaml(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


def make_experanto(root: Path, rng: np.random.Generator) -> dict:
    """An OmniMouse-style experiment folder; returns the values written, for comparison."""
    frames, meta_trials, t, frame_idx = [], [], T0, 0
    screen_ts: list[float] = []
    for k, (modality, dur, tier, stim) in enumerate(SCREEN_TRIALS):
        n = round(dur * SCREEN_HZ) if modality == "video" else 1
        screen_ts += [t + i / SCREEN_HZ for i in range(n)]
        meta = {"modality": modality, "first_frame_idx": frame_idx, "num_frames": n}
        meta |= {"image_size": [6, 8], "tier": tier} if tier else {"interleave_value": 0.5}
        if stim:
            meta["video_id" if modality == "video" else "image_id"] = stim
        data = rng.integers(0, 255, (n, 6, 8)).astype(np.uint8)
        if modality == "image":
            data = data[0]
        if modality != "blank":
            (root / "screen/data").mkdir(parents=True, exist_ok=True)
            np.save(root / f"screen/data/{k:05d}.npy", data)
        _yaml(root / f"screen/meta/{k:05d}.yml", meta)
        frames.append(data)
        meta_trials.append((t, meta))
        frame_idx, t = frame_idx + n, t + dur
    np.save(root / "screen/timestamps.npy", np.asarray(screen_ts))
    _yaml(root / "screen/meta.yml", {"modality": "screen", "sampling_rate": SCREEN_HZ})
    t_end = t
    n_resp = int((t_end - T0 + 1.0) * RESP_HZ)
    resp = rng.gamma(2.0, 1.0, (n_resp, N_NEURONS)).astype(np.float32)
    (root / "responses/meta").mkdir(parents=True)
    resp.tofile(root / "responses/data.mem")
    phase = rng.uniform(0, 1 / RESP_HZ, N_NEURONS)
    coords = rng.uniform(0, 500, (N_NEURONS, 3))
    ids = np.arange(100, 100 + N_NEURONS)
    np.save(root / "responses/meta/phase_shifts.npy", phase)
    np.save(root / "responses/meta/cell_motor_coordinates.npy", coords)
    np.save(root / "responses/meta/unit_ids.npy", ids)
    np.save(root / "responses/meta/areas.npy", np.array(["V1", "V1", "LM", "V1", "AL", "LM"]))
    meta = {"modality": "sequence", "sampling_rate": RESP_HZ, "start_time": T0 - 0.5}
    meta |= {"n_timestamps": n_resp, "n_signals": N_NEURONS, "dtype": "float32"}
    meta |= {"is_mem_mapped": True, "phase_shift_per_signal": True}
    _yaml(root / "responses/meta.yml", meta)
    n_eye = int((t_end - T0 + 1.0) * EYE_HZ)
    eye_ts = T0 - 0.5 + np.arange(n_eye) / EYE_HZ
    eye = rng.normal(10, 1, (n_eye, 3))
    eye[5:9, :] = np.nan  # a blink
    for name, ts, data in (("eye_tracker", eye_ts, eye), ("treadmill", None, None)):
        if name == "treadmill":
            n = int((t_end - T0 + 1.0) * TREAD_HZ)
            ts, data = T0 - 0.4 + np.arange(n) / TREAD_HZ, rng.normal(0, 5, n)
        (root / name / "meta").mkdir(parents=True)
        np.save(root / name / "timestamps.npy", ts)
        np.save(root / name / "data.npy", data)
        _yaml(root / name / "meta.yml", {"modality": "sequence", "phase_shift_per_signal": False})
    return {
        "responses": resp,
        "resp_ts": (T0 - 0.5) + np.arange(n_resp, dtype=np.float64) / RESP_HZ,
        "phase": phase,
        "coords": coords,
        "ids": ids,
        "eye": eye,
        "eye_ts": eye_ts,
        "screen_ts": np.asarray(screen_ts),
        "trials": meta_trials,
        "frames": frames,
    }


def make_sensorium(root: Path, rng: np.random.Generator, *, dynamic: bool) -> dict:
    """A SENSORIUM 2022 (static) or 2023 (dynamic) recording folder."""
    n_neurons = 5
    if dynamic:
        tiers = ["train", "train", "train", "oracle", "oracle", "live_test_main"]
        stim = ["a", "b", "c", "r", "r", "h"]
        lengths = [45, 40, 45, 45, 45, 45]
    else:
        tiers = ["train"] * 4 + ["validation", "test", "test", "test"]
        stim = [1, 2, 3, 4, 5, 100, 100, 101]
        lengths = [1] * 8
    n = len(tiers)
    order = rng.permutation(n)
    written = {"responses": {}, "behavior": {}, "center": {}}
    for sub in ("videos" if dynamic else "images", "responses", "behavior", "pupil_center"):
        (root / "data" / sub).mkdir(parents=True)
    for i, length in enumerate(lengths):
        if dynamic:
            frames = rng.integers(0, 255, (6, 8, length)).astype(np.uint8)
            resp = rng.gamma(2, 1, (n_neurons, length)).astype(np.float32)
            behav, center = rng.normal(0, 1, (2, length)), rng.normal(0, 1, (2, length))
            if tiers[i] == "live_test_main":
                resp[:] = np.nan  # withheld responses
            np.save(root / f"data/videos/{i}.npy", frames)
        else:
            frames = rng.integers(0, 255, (1, 6, 8)).astype(np.uint8)
            resp = rng.gamma(2, 1, n_neurons).astype(np.float32)
            behav, center = rng.normal(0, 1, 3), rng.normal(0, 1, 2)
            np.save(root / f"data/images/{i}.npy", frames)
        np.save(root / f"data/responses/{i}.npy", resp)
        np.save(root / f"data/behavior/{i}.npy", behav)
        np.save(root / f"data/pupil_center/{i}.npy", center)
        written["responses"][i], written["behavior"][i] = resp, behav
        written["center"][i] = center
    (root / "meta/trials").mkdir(parents=True)
    (root / "meta/neurons").mkdir(parents=True)
    (root / "meta/statistics").mkdir(parents=True)
    np.save(root / "meta/trials/tiers.npy", np.array(tiers))
    np.save(root / "meta/trials/trial_idx.npy", order)
    key = "condition_hash" if dynamic else "frame_image_id"
    np.save(root / f"meta/trials/{key}.npy", np.array(stim))
    coords = rng.uniform(0, 400, (n_neurons, 3))
    np.save(root / "meta/neurons/cell_motor_coordinates.npy", coords)
    np.save(root / "meta/neurons/unit_ids.npy", np.arange(1, n_neurons + 1))
    np.save(root / "meta/neurons/area.npy", np.array(["V1"] * n_neurons))
    np.save(root / "meta/neurons/layer.npy", np.array(["L2/3"] * n_neurons))
    np.save(root / "meta/neurons/animal_ids.npy", np.full(n_neurons, 26872))
    return {
        "tiers": tiers,
        "stim": stim,
        "order": order,
        "coords": coords,
        "lengths": lengths,
    } | written


def train_two_steps(data: Path, streams: tuple[str, ...], window_s: float) -> None:
    """Build a small model on the imported sessions and train two steps (finite losses)."""
    sessions = open_dataset(data)
    modalities = {name: {"type": name} for name in streams}
    config = ModelConfig.model_validate(
        {
            "modalities": modalities,
            "readout": {"type": "neuron_embedding"},
            "heads": {"calcium": {"type": "poisson"}},
        }
    )
    model = build_model(config, sessions)
    training = TrainingConfig(steps=2, batch_size=2, eval_every=100, device="cpu")
    result = Trainer(model, sessions, training, window_s=window_s, progress=False).fit()
    assert result.steps == 2
    assert len(result.train_loss) == 2 and np.isfinite(result.train_loss).all()
