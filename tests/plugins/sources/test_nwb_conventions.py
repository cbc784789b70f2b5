"""The NWB importer under the naming conventions labs use: ids, positions, offsets, stimuli, pupil."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from source_fixtures import T0

from neurofm import registry
from neurofm.core.data import Session
from neurofm.core.data.sources import SourceFormatError

pytestmark = pytest.mark.filterwarnings("ignore:The linked table for DynamicTableRegion")

N = 3
CENTRES = np.array([[4.0, 2.0, 1.0], [7.0, 5.0, 2.0], [10.0, 9.0, 3.0]])  # x, y, z in pixels


def _write(
    path: Path,
    position: str,
    *,
    spacing: bool = False,
    pupil_series: tuple[str, str] = ("pupil_radius_minor", "pupil_radius_major"),
) -> dict:
    pynwb = pytest.importorskip("pynwb")
    from pynwb.behavior import PupilTracking
    from pynwb.ophys import DfOverF, ImageSegmentation, OpticalChannel, RoiResponseSeries

    nwb = pynwb.NWBFile(
        session_description="conventions",
        identifier="c-1",
        session_start_time=datetime(2021, 3, 1, tzinfo=UTC),
    )
    device = nwb.create_device(name="2p")
    channel = OpticalChannel(name="green", description="gcamp", emission_lambda=520.0)
    extra = {"grid_spacing": [2e-6, 2e-6, 5e-6], "grid_spacing_unit": "meters"} if spacing else {}
    plane = nwb.create_imaging_plane(
        name="plane0", optical_channel=channel, description="L2/3", device=device,
        excitation_lambda=920.0, imaging_rate=10.0, indicator="GCaMP6s", location="VISp", **extra,
    )  # fmt: skip
    ophys = nwb.create_processing_module(name="ophys", description="optical physiology")
    seg = ImageSegmentation()
    ophys.add(seg)
    ps = seg.create_plane_segmentation(name="rois", description="cells", imaging_plane=plane)
    ps.add_column(name="cell_specimen_id", description="unit ids")
    ps.add_column(name="phase_shift", description="scan-phase offset (s)")
    ps.add_column(name="depth_quality", description="a column nobody reads")
    if position == "centroid":
        ps.add_column(name="centroid_x", description="x")
        ps.add_column(name="centroid_y", description="y")
    ids, offsets = np.array([5001, 5007, 5013]), np.array([0.01, 0.04, 0.09])
    for k, (x, y, z) in enumerate(CENTRES):
        roi = {"cell_specimen_id": int(ids[k]), "phase_shift": offsets[k], "depth_quality": 1.0}
        if position == "image_mask":
            mask = np.zeros((16, 16))
            mask[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2] = 1.0
            roi["image_mask"] = mask
        elif position == "pixel_mask":
            roi["pixel_mask"] = [(x - 1, y, 1.0), (x + 1, y, 1.0), (x, y, 2.0)]
        elif position == "voxel_mask":
            roi["voxel_mask"] = [(x, y - 1, z, 1.0), (x, y + 1, z, 1.0)]
        else:
            roi |= {"pixel_mask": [(0, 0, 1.0)], "centroid_x": x, "centroid_y": y}
        ps.add_roi(**roi)
    rrs = RoiResponseSeries(
        name="dff",
        data=np.random.default_rng(0).gamma(2, 1, (100, N)).astype(np.float32),
        rois=ps.create_roi_table_region(region=list(range(N)), description="all"),
        unit="1",
        starting_time=T0,
        rate=10.0,
    )
    ophys.add(DfOverF(roi_response_series=rrs))
    behaviour = nwb.create_processing_module(name="behavior", description="behaviour")
    t = T0 + np.arange(200) / 20.0
    major = 10 + np.sin(np.arange(200) / 9)
    pupil = PupilTracking(name="PupilTracking")
    for name, data in zip(pupil_series, (0.7 * major, major), strict=True):
        pupil.add_timeseries(pynwb.TimeSeries(name=name, data=data, unit="px", timestamps=t))
    behaviour.add(pupil)
    nwb.add_acquisition(pynwb.TimeSeries(name="lick_sensor", data=np.zeros(50), unit="V", rate=5.0))
    nwb.add_trial_column(name="tier", description="split")
    nwb.add_trial_column(name="condition_hash", description="stimulus")
    nwb.add_trial_column(name="contrast", description="a column nobody reads")
    for k, (tier, cond) in enumerate([("train", "aa"), ("test", "rr"), ("test", "rr")]):
        nwb.add_trial(start_time=T0 + 1 + 3 * k, stop_time=T0 + 3 + 3 * k, tier=tier,
                      condition_hash=cond, contrast=1.0)  # fmt: skip
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    return {"ids": ids, "offsets": offsets, "major": major}


@pytest.mark.parametrize("position", ["image_mask", "pixel_mask", "voxel_mask", "centroid"])
def test_ids_positions_offsets_stimuli_and_pupil_by_name(tmp_path: Path, position: str) -> None:
    exp = _write(tmp_path / "rec.nwb", position)
    summary = registry.sources.get("nwb")().import_(
        tmp_path / "rec.nwb", tmp_path / "out", overwrite=False, progress=False
    )
    s = Session.open(tmp_path / "out/rec")
    np.testing.assert_array_equal(s.units.ids, exp["ids"])  # the unit-id column, not row numbers
    dims = 3 if position == "voxel_mask" else 2
    np.testing.assert_allclose(s.units.position_um[:, :dims], CENTRES[:, :dims], atol=1e-5)
    np.testing.assert_array_equal(s.units.time_offset_s, exp["offsets"])
    ivs = s.intervals()
    assert [iv.stimulus_id for iv in ivs] == ["aa", "rr", "rr"]  # repeats grouped
    np.testing.assert_allclose(s.stream_data("pupil")[:, 0], exp["major"].astype(np.float32))
    assert s.stream_spec("calcium").sampling_rate_hz == 10.0
    unused = s.manifest.import_notes.unused
    assert "rois column 'depth_quality': not used" in unused
    assert "trials column 'contrast': not used" in unused
    assert any("lick_sensor" in u for u in unused)
    assert any("pupil_radius_minor" in u for u in unused)
    guesses = dict(summary.guesses)
    if position == "centroid":
        assert "rec/neuron positions" not in guesses
    else:
        assert "pixels" in guesses["rec/neuron positions"]


def test_mask_positions_are_scaled_by_the_grid_spacing(tmp_path: Path) -> None:
    _write(tmp_path / "rec.nwb", "voxel_mask", spacing=True)
    registry.sources.get("nwb")().import_(
        tmp_path / "rec.nwb", tmp_path / "out", overwrite=False, progress=False
    )
    pos = Session.open(tmp_path / "out/rec").units.position_um
    np.testing.assert_allclose(pos, CENTRES * [2.0, 2.0, 5.0], atol=1e-4)


def test_configured_names_override_the_defaults(tmp_path: Path) -> None:
    _write(tmp_path / "rec.nwb", "centroid")
    source = registry.sources.get("nwb")
    config = source.Config(
        unit_id_columns=[], time_offset_columns=["no_such"], stimulus_id_columns=["contrast"]
    )
    source(config).import_(tmp_path / "rec.nwb", tmp_path / "out", overwrite=False, progress=False)
    s = Session.open(tmp_path / "out/rec")
    np.testing.assert_array_equal(s.units.ids, [0, 1, 2])  # the table's own id column
    assert s.units.time_offset_s is None
    assert {iv.stimulus_id for iv in s.intervals()} == {"1.0"}


def test_pupil_series_that_cannot_be_told_apart_are_an_error(tmp_path: Path) -> None:
    exp = _write(tmp_path / "rec.nwb", "centroid", pupil_series=("pupil_a", "pupil_b"))
    with pytest.raises(SourceFormatError, match=r"rec.nwb.*2 pupil series.*`pupil_size_names`"):
        registry.sources.get("nwb")().import_(
            tmp_path / "rec.nwb", tmp_path / "out", overwrite=False, progress=False
        )
    assert not (tmp_path / "out").exists()
    source = registry.sources.get("nwb")
    source(source.Config(pupil_size_names=["pupil_b"])).import_(
        tmp_path / "rec.nwb", tmp_path / "out", overwrite=False, progress=False
    )
    pupil = Session.open(tmp_path / "out/rec").stream_data("pupil")[:, 0]
    np.testing.assert_allclose(pupil, exp["major"].astype(np.float32))
