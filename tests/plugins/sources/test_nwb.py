"""The NWB importer, on files written with pynwb itself."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from source_fixtures import T0, train_two_steps

from neurofm import registry
from neurofm.core.data import Session
from neurofm.errors import NeurofmError

pytestmark = pytest.mark.filterwarnings("ignore:The linked table for DynamicTableRegion")


def _write_nwb(path: Path, rng: np.random.Generator, *, tier_column: bool = True) -> dict:
    pynwb = pytest.importorskip("pynwb")
    from pynwb.behavior import BehavioralTimeSeries, EyeTracking, PupilTracking, SpatialSeries
    from pynwb.file import Subject
    from pynwb.ophys import DfOverF, ImageSegmentation, OpticalChannel, RoiResponseSeries

    nwb = pynwb.NWBFile(
        session_description="fixture",
        identifier="fixture-1",
        session_start_time=datetime(2017, 7, 14, tzinfo=UTC),
        subject=Subject(subject_id="m42", species="Mus musculus"),
    )
    device = nwb.create_device(name="2p")
    channel = OpticalChannel(name="green", description="gcamp", emission_lambda=520.0)
    plane = nwb.create_imaging_plane(
        name="plane0",
        optical_channel=channel,
        description="L2/3",
        device=device,
        excitation_lambda=920.0,
        imaging_rate=8.1088,
        indicator="GCaMP6s",
        location="VISp",
    )
    ophys = nwb.create_processing_module(name="ophys", description="optical physiology")
    seg = ImageSegmentation()
    ophys.add(seg)
    ps = seg.create_plane_segmentation(name="rois", description="cells", imaging_plane=plane)
    ps.add_column(name="time_offset_s", description="scan-phase offset")
    n, masks = 4, []
    offsets = rng.uniform(0, 0.1, n)
    for k in range(n):
        mask = np.zeros((16, 16))
        mask[2 * k : 2 * k + 3, 3 + k : 6 + k] = 1.0
        masks.append(mask)
        ps.add_roi(image_mask=mask, time_offset_s=offsets[k])
    t = T0 + np.arange(130) / 8.1088
    dff = rng.gamma(2, 1, (130, n)).astype(np.float32)
    rrs = RoiResponseSeries(
        name="dff",
        data=dff,
        rois=ps.create_roi_table_region(region=list(range(n)), description="all"),
        unit="1",
        timestamps=t,
    )
    ophys.add(DfOverF(roi_response_series=rrs))
    behaviour = nwb.create_processing_module(name="behavior", description="behaviour")
    t_run = T0 + np.arange(700) / 49.7
    running = rng.normal(0, 5, 700)
    behaviour.add(
        BehavioralTimeSeries(
            time_series=pynwb.TimeSeries(
                name="running_speed", data=running, unit="cm/s", timestamps=t_run
            )
        )
    )
    t_eye = T0 + np.arange(300) / 20.19
    pupil = rng.normal(10, 1, 300)
    pupil[10:14] = np.nan
    behaviour.add(
        PupilTracking(
            time_series=pynwb.TimeSeries(name="pupil_area", data=pupil, unit="px", timestamps=t_eye)
        )
    )
    gaze = rng.normal(0, 1, (300, 2))
    behaviour.add(
        EyeTracking(
            spatial_series=SpatialSeries(
                name="eye_position", data=gaze, reference_frame="screen", timestamps=t_eye
            )
        )
    )
    if tier_column:
        nwb.add_trial_column(name="tier", description="data split")
    nwb.add_trial_column(name="stimulus_id", description="clip")
    trials = [
        (1.0, 4.0, "train", "a"),
        (5.0, 8.0, "test", "r"),
        (9.0, 12.0, "test", "r"),
        (12.5, 14.5, "validation", "b"),
    ]
    for start, stop, tier, stim in trials:
        extra = {"tier": tier} if tier_column else {}
        nwb.add_trial(start_time=T0 + start, stop_time=T0 + stop, stimulus_id=stim, **extra)
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return {
        "t": t,
        "dff": dff,
        "offsets": offsets,
        "running": running,
        "pupil": pupil,
        "gaze": gaze,
        "trials": trials,
    }


def test_nwb_values_survive_and_a_model_trains(tmp_path: Path) -> None:
    exp = _write_nwb(tmp_path / "rec.nwb", np.random.default_rng(5))
    registry.sources.get("nwb")().import_(
        tmp_path / "rec.nwb", tmp_path / "out", overwrite=False, progress=False
    )
    s = Session.open(tmp_path / "out/rec")
    assert s.animal_id == "m42" and s.manifest.species == "Mus musculus"
    np.testing.assert_array_equal(s.stream_data("calcium"), exp["dff"])
    np.testing.assert_array_equal(s.stream_timestamps("calcium"), exp["t"])
    np.testing.assert_array_equal(s.units.time_offset_s, exp["offsets"])
    np.testing.assert_allclose(s.units.position_um[1, :2], [5.0, 3.0])  # image_mask centroid (x, y)
    assert list(s.units.area) == ["VISp"] * 4
    np.testing.assert_allclose(s.stream_data("running")[:, 0], exp["running"].astype(np.float32))
    pupil = s.stream_data("pupil")
    assert np.isnan(pupil[10:14, 0]).all() and np.isfinite(pupil[20:, 0]).all()
    np.testing.assert_allclose(s.stream_data("gaze"), exp["gaze"].astype(np.float32))
    ivs = s.intervals()
    assert [(iv.start - T0, iv.tier, iv.stimulus_id) for iv in ivs] == [
        (a, c, d) for a, _, c, d in exp["trials"]
    ]
    assert ivs[1].start == T0 + 5.0
    train_two_steps(tmp_path / "out", ("calcium", "running", "pupil"), window_s=1.0)


def test_nwb_without_tiers_is_a_clear_error(tmp_path: Path) -> None:
    _write_nwb(tmp_path / "rec.nwb", np.random.default_rng(6), tier_column=False)
    with pytest.raises(NeurofmError, match=r"no 'tier' column.*default_tier"):
        registry.sources.get("nwb")().import_(
            tmp_path / "rec.nwb", tmp_path / "out", overwrite=False, progress=False
        )
    assert not (tmp_path / "out").exists()
    source = registry.sources.get("nwb")
    source(source.Config(default_tier="train")).import_(
        tmp_path / "rec.nwb", tmp_path / "out", overwrite=False, progress=False
    )
    assert {iv.tier for iv in Session.open(tmp_path / "out/rec").intervals()} == {"train"}


def test_missing_pynwb_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynwb", None)
    with pytest.raises(NeurofmError, match=r"pip install neurofm\[nwb\]"):
        registry.sources.get("nwb")().import_(
            tmp_path / "x.nwb", tmp_path / "out", overwrite=False, progress=False
        )
