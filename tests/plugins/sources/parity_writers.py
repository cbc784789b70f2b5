"""One simulated recording, written as an experanto folder and as an NWB file (through pynwb).

Both writers receive the same :class:`Recording`, so the two imports must give sessions that agree
value by value. The conventions each writer uses are the ones its format's users meet: a 4-column
eye tracker with ``column_names``, phase shifts in ``responses/meta``; an NWB PlaneSegmentation
with a unit-id column, centroid columns and a scan-phase column of a non-default name, two
PupilTracking series (minor radius first), and a trials table naming stimuli ``condition_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import yaml

from neurofm.core.data.simulation import SimulationConfig, simulate_session

__all__ = ["Recording", "simulated_recording", "write_experanto", "write_nwb"]


@dataclass(frozen=True)
class Trial:
    modality: str  # video | image | blank
    frames: np.ndarray  # [n, H, W]
    times: np.ndarray  # [n] display times
    tier: str | None
    stimulus_id: str | None


@dataclass(frozen=True)
class Recording:
    animal_id: str
    trials: list[Trial]
    calcium: np.ndarray  # [T, N]
    calcium_start: float
    calcium_rate: float
    behaviour_t: np.ndarray  # [T']
    speed: np.ndarray  # [T']
    pupil_major: np.ndarray  # [T']
    pupil_minor: np.ndarray  # [T']
    gaze: np.ndarray  # [T', 2]
    unit_ids: np.ndarray
    position_um: np.ndarray
    area: np.ndarray
    offsets_s: np.ndarray


def simulated_recording(*, image_trials: tuple[int, ...] = (3,)) -> Recording:
    """A tiny simulated session; the trials listed in ``image_trials`` show one image instead."""
    config = SimulationConfig.tiny().model_copy(
        update=dict(
            neurons_per_session=6, n_train_trials=3, n_validation_trials=1, n_test_clips=1,
            trial_duration_s=1.0, height=6, width=8, apply_scan_offsets=True,
        )
    )  # fmt: skip
    sim = simulate_session(config, 0, 0)
    movie, mt = sim.streams["movie"].data, sim.streams["movie"].timestamps
    trials: list[Trial] = []
    for k, iv in enumerate(sorted(sim.intervals, key=lambda i: i["start"])):
        i0, i1 = np.searchsorted(mt, [iv["start"], iv["end"]], side="left")
        if k in image_trials:
            trials.append(
                Trial("image", movie[i0 : i0 + 1], mt[i0 : i0 + 1], iv["tier"], f"img{k}")
            )
        else:
            trials.append(Trial("video", movie[i0:i1], mt[i0:i1], iv["tier"], iv["stimulus_id"]))
        trials.append(Trial("blank", movie[i1 : i1 + 1], mt[i1 : i1 + 1], None, None))
    calcium = sim.streams["calcium"]
    beh = sim.streams["pupil"]
    pupil = beh.data[:, 0].astype(np.float64)
    pupil[7:10] = np.nan  # a blink
    return Recording(
        animal_id=sim.animal_id,
        trials=trials,
        calcium=calcium.data,
        calcium_start=float(calcium.timestamps[0]),
        calcium_rate=config.neural_rate_hz,
        behaviour_t=beh.timestamps,
        speed=sim.streams["running"].data[:, 0].astype(np.float64),
        pupil_major=pupil,
        pupil_minor=0.8 * pupil,
        gaze=sim.streams["gaze"].data.astype(np.float64),
        unit_ids=sim.unit_ids,
        position_um=sim.unit_position_um.astype(np.float64),
        area=np.array(["V1", "LM", "V1", "AL", "V1", "LM"]),
        offsets_s=sim.ground_truth["scan_offset_s"].astype(np.float64),
    )


def shown(rec: Recording) -> list[tuple[int, Trial]]:
    """``(trial number, trial)`` of every non-blank trial (numbers count blanks, as experanto's)."""
    return [(k, t) for k, t in enumerate(rec.trials) if t.modality != "blank"]


def interval_bounds(rec: Recording) -> list[tuple[float, float]]:
    """Each shown trial's ``[first frame, next trial's first frame)``."""
    out = []
    for k, t in shown(rec):
        out.append((float(t.times[0]), float(rec.trials[k + 1].times[0])))
    return out


def _yaml(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")


def write_experanto(rec: Recording, root: Path) -> Path:
    """``root`` as an experanto experiment folder."""
    frame, times = 0, []
    for k, t in enumerate(rec.trials):
        meta = {"modality": t.modality, "first_frame_idx": frame, "num_frames": len(t.times)}
        if t.modality != "blank":
            key = "video_id" if t.modality == "video" else "image_id"
            meta |= {"tier": t.tier, key: t.stimulus_id}
            (root / "screen/data").mkdir(parents=True, exist_ok=True)
            np.save(
                root / f"screen/data/{k:05d}.npy",
                t.frames[0] if t.modality == "image" else t.frames,
            )
        _yaml(root / f"screen/meta/{k:05d}.yml", meta)
        times.append(t.times)
        frame += len(t.times)
    np.save(root / "screen/timestamps.npy", np.concatenate(times))
    _yaml(root / "screen/meta.yml", {"modality": "screen", "sampling_rate": 30.0})
    (root / "responses/meta").mkdir(parents=True)
    np.save(root / "responses/data.npy", rec.calcium)
    meta = {"sampling_rate": rec.calcium_rate, "start_time": rec.calcium_start}
    _yaml(
        root / "responses/meta.yml",
        meta | {"phase_shift_per_signal": True, "animal_id": rec.animal_id},
    )
    np.save(root / "responses/meta/unit_ids.npy", rec.unit_ids)
    np.save(root / "responses/meta/cell_motor_coordinates.npy", rec.position_um)
    np.save(root / "responses/meta/areas.npy", rec.area)
    np.save(root / "responses/meta/phase_shifts.npy", rec.offsets_s)
    eye = np.stack([rec.gaze[:, 0], rec.gaze[:, 1], rec.pupil_major, rec.pupil_minor], 1)
    names = ["pupil_x", "pupil_y", "pupil_major_radius", "pupil_minor_radius"]
    for name, data, meta in (
        ("eye_tracker", eye, {"column_names": names}),
        ("treadmill", rec.speed, {}),
    ):
        (root / name).mkdir(parents=True)
        np.save(root / name / "timestamps.npy", rec.behaviour_t)
        np.save(root / name / "data.npy", data)
        _yaml(root / name / "meta.yml", {"modality": "sequence"} | meta)
    return root


def write_nwb(rec: Recording, path: Path) -> Path:
    """``path`` as an NWB 2 file written by pynwb."""
    import pynwb
    from pynwb.behavior import BehavioralTimeSeries, EyeTracking, PupilTracking, SpatialSeries
    from pynwb.file import Subject
    from pynwb.image import ImageSeries
    from pynwb.ophys import DfOverF, ImageSegmentation, OpticalChannel, RoiResponseSeries

    nwb = pynwb.NWBFile(
        session_description="parity",
        identifier="parity-1",
        session_start_time=datetime(2020, 1, 1, tzinfo=UTC),
        subject=Subject(subject_id=rec.animal_id, species="mouse"),
    )
    device = nwb.create_device(name="2p")
    channel = OpticalChannel(name="green", description="gcamp", emission_lambda=520.0)
    plane = nwb.create_imaging_plane(
        name="plane0", optical_channel=channel, description="L2/3", device=device,
        excitation_lambda=920.0, imaging_rate=rec.calcium_rate, indicator="GCaMP6s",
        location="VISp",
    )  # fmt: skip
    ophys = nwb.create_processing_module(name="ophys", description="optical physiology")
    seg = ImageSegmentation()
    ophys.add(seg)
    ps = seg.create_plane_segmentation(name="rois", description="cells", imaging_plane=plane)
    for name in ("unit_id", "x", "y", "z", "area", "scan_phase_offset_s"):
        ps.add_column(name=name, description=name)
    for n in range(rec.calcium.shape[1]):
        x, y, z = rec.position_um[n]
        ps.add_roi(
            pixel_mask=[(n, n, 1.0)], unit_id=int(rec.unit_ids[n]), x=x, y=y, z=z,
            area=str(rec.area[n]), scan_phase_offset_s=rec.offsets_s[n],
        )  # fmt: skip
    region = ps.create_roi_table_region(region=list(range(rec.calcium.shape[1])), description="all")
    rrs = RoiResponseSeries(
        name="dff", data=rec.calcium, rois=region, unit="1",
        starting_time=rec.calcium_start, rate=rec.calcium_rate,
    )  # fmt: skip
    ophys.add(DfOverF(roi_response_series=rrs))
    behaviour = nwb.create_processing_module(name="behavior", description="behaviour")
    t = rec.behaviour_t
    behaviour.add(
        BehavioralTimeSeries(
            time_series=pynwb.TimeSeries(
                name="running_speed", data=rec.speed, unit="cm/s", timestamps=t
            )
        )
    )
    pupil = PupilTracking(name="PupilTracking")
    for name, data in (
        ("pupil_minor_radius", rec.pupil_minor),
        ("pupil_major_radius", rec.pupil_major),
    ):
        pupil.add_timeseries(pynwb.TimeSeries(name=name, data=data, unit="px", timestamps=t))
    behaviour.add(pupil)
    behaviour.add(
        EyeTracking(
            spatial_series=SpatialSeries(
                name="eye_position", data=rec.gaze, reference_frame="screen", timestamps=t
            )
        )
    )
    for kind, name in (("video", "natural_movie"), ("image", "images")):
        trials = [t for _, t in shown(rec) if t.modality == kind]
        frames = np.concatenate([t.frames for t in trials])
        stamps = np.concatenate([t.times for t in trials])
        nwb.add_stimulus(ImageSeries(name=name, data=frames, unit="luminance", timestamps=stamps))
    for name in ("tier", "condition_id", "trial_idx"):
        nwb.add_trial_column(name=name, description=name)
    for (k, t), (start, stop) in zip(shown(rec), interval_bounds(rec), strict=True):
        nwb.add_trial(
            start_time=start, stop_time=stop, tier=t.tier, condition_id=t.stimulus_id, trial_idx=k
        )
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return path
