"""Cross-format parity: one simulated recording, written as experanto and as NWB, imports alike."""

from __future__ import annotations

import numpy as np
import pytest
from parity_writers import interval_bounds, shown, simulated_recording, write_experanto, write_nwb

from neurofm import registry
from neurofm.core.data import Session

pytestmark = pytest.mark.filterwarnings("ignore:The linked table for DynamicTableRegion")

#: Stated by the experanto screen's meta.yml; an NWB ImageSeries with timestamps cannot state a
#: rate, so there it is measured (docs/own-data.md, "Differences between the formats").
MEASURED_IN_NWB = {"movie"}


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Session, Session, object]:
    pytest.importorskip("pynwb")
    root = tmp_path_factory.mktemp("parity")
    rec = simulated_recording()
    write_experanto(rec, root / "experanto" / "rec")
    (root / "nwb").mkdir()
    write_nwb(rec, root / "nwb" / "rec.nwb")
    for fmt in ("experanto", "nwb"):
        registry.sources.get(fmt)().import_(
            root / fmt / ("rec" if fmt == "experanto" else "rec.nwb"),
            root / f"out-{fmt}",
            overwrite=False,
            progress=False,
        )
    return Session.open(root / "out-experanto/rec"), Session.open(root / "out-nwb/rec"), rec


def test_every_stream_agrees_value_by_value(pair) -> None:
    exp, nwb, _ = pair
    assert sorted(exp.stream_names) == sorted(nwb.stream_names)
    assert set(exp.stream_names) == {"calcium", "pupil", "gaze", "running", "movie", "image"}
    for name in exp.stream_names:
        a, b = exp.stream_spec(name), nwb.stream_spec(name)
        np.testing.assert_array_equal(exp.stream_data(name), nwb.stream_data(name), err_msg=name)
        np.testing.assert_array_equal(
            exp.stream_timestamps(name), nwb.stream_timestamps(name), err_msg=name
        )
        for field in ("modality", "per_unit", "event_like", "channel_names", "statistics"):
            assert getattr(a, field) == getattr(b, field), (name, field)
        if name in MEASURED_IN_NWB:
            assert b.sampling_rate_hz == pytest.approx(a.sampling_rate_hz, rel=1e-6)
        else:
            assert a.sampling_rate_hz == b.sampling_rate_hz, name
    assert exp.time_range == nwb.time_range


def test_units_intervals_tiers_and_stimulus_ids_agree(pair) -> None:
    exp, nwb, rec = pair
    for field in ("ids", "position_um", "area", "time_offset_s"):
        np.testing.assert_array_equal(getattr(exp.units, field), getattr(nwb.units, field))
    np.testing.assert_array_equal(exp.units.ids, rec.unit_ids)
    np.testing.assert_array_equal(exp.units.time_offset_s, rec.offsets_s)
    assert exp.manifest.intervals == nwb.manifest.intervals
    expected = [
        (start, stop, t.tier, t.stimulus_id, k)
        for (k, t), (start, stop) in zip(shown(rec), interval_bounds(rec), strict=True)
    ]
    found = [(iv.start, iv.end, iv.tier, iv.stimulus_id, iv.trial) for iv in exp.intervals()]
    assert found == expected
    assert exp.animal_id == nwb.animal_id == rec.animal_id


def test_the_recorded_values_are_the_written_ones(pair) -> None:
    exp, _, rec = pair
    np.testing.assert_array_equal(exp.stream_data("calcium"), rec.calcium)
    pupil = exp.stream_data("pupil")
    np.testing.assert_array_equal(
        pupil[:, 0], rec.pupil_major.astype(np.float32)
    )  # major, not minor
    assert np.isnan(pupil[7:10]).all()
    np.testing.assert_array_equal(exp.stream_data("gaze"), rec.gaze.astype(np.float32))
    movie_frames = np.concatenate([t.frames for _, t in shown(rec) if t.modality == "video"])
    np.testing.assert_array_equal(exp.stream_data("movie"), movie_frames)
    assert exp.stream_spec("movie").sampling_rate_hz == 30.0
    image = exp.stream_spec("image")
    assert image.event_like and exp.time_range[1] <= exp.stream_timestamps("calcium")[-1] + 1 / 30


def test_both_manifests_list_what_was_not_used(pair) -> None:
    exp, nwb, _ = pair
    assert any("pupil_minor_radius" in u for u in exp.manifest.import_notes.unused)
    assert any("pupil_minor_radius" in u for u in nwb.manifest.import_notes.unused)
    assert any("pixel_mask" in u for u in nwb.manifest.import_notes.unused)
    assert any("movie sampling rate" in g for g in nwb.manifest.import_notes.guesses)
    assert not any("movie sampling rate" in g for g in exp.manifest.import_notes.guesses)
