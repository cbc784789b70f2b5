"""The in-silico methods recover the known parameters of simulated neurons (the simulator's Gabor
neurons stand in for a model, so any miss is the method's)."""

from __future__ import annotations

import numpy as np
import pytest

from neurofm.insilico.mei import most_exciting_inputs
from neurofm.insilico.receptive_fields import (
    gradient_receptive_fields,
    map_centres,
    sparse_noise_receptive_fields,
)
from neurofm.insilico.stimuli import Gratings, GratingsConfig, SparseNoise
from neurofm.insilico.tuning import tuning_curves
from tests.insilico.simulated_probe import SimulatedProbe


@pytest.fixture(scope="module")
def probe() -> SimulatedProbe:
    return SimulatedProbe()


def _on_screen(probe: SimulatedProbe, margin_deg: float = 8.0) -> np.ndarray:
    """Neurons whose true centre lies inside the screen by ``margin_deg``."""
    half_w = probe.screen.width_deg / 2 - margin_deg
    half_h = probe.screen.height * probe.screen.deg_per_px / 2 - margin_deg
    c = probe.true_centre_deg()
    return (np.abs(c[:, 0]) < half_w) & (np.abs(c[:, 1]) < half_h)


def test_tuning_recovers_preferred_orientation(probe: SimulatedProbe) -> None:
    result = tuning_curves(probe, Gratings(GratingsConfig(contrasts=[0.5])))
    err = np.abs(result.preferred_orientation_deg - probe.true_orientation_deg())
    err = np.minimum(err, 180 - err)
    assert np.mean(err <= 22.5) >= 0.9, err.round(1)
    assert result.direction_curves.shape == (probe.n_units, 12)
    assert ((result.osi >= 0) & (result.osi <= 1)).all()
    assert ((result.dsi >= -1e-9) & (result.dsi <= 1 + 1e-9)).all()
    values, curves = result.curves["spatial_frequency_cpd"]
    assert values.tolist() == [0.025, 0.045, 0.08] and curves.shape == (probe.n_units, 3)


def test_tuning_at_two_running_speeds_recovers_the_gain(probe: SimulatedProbe) -> None:
    result = tuning_curves(probe, Gratings(), gain_stream="running", gain_values=([0.0], [20.0]))
    # the simulated gain is exp(w_run * s / (s + 5)): log ratio = w_run * 20 / 25
    true = probe.pop.behaviour_gain[:, 0] * 20 / 25
    np.testing.assert_allclose(result.log_gain, true, atol=1e-6)
    assert result.gain["responses_low"].shape == result.responses.shape


def test_sparse_noise_and_gradient_find_receptive_field_centres(probe: SimulatedProbe) -> None:
    keep = _on_screen(probe)
    assert keep.sum() >= 12
    true = probe.true_centre_deg()[keep]
    for result in (
        sparse_noise_receptive_fields(probe, SparseNoise()),
        gradient_receptive_fields(probe, backgrounds=3),
    ):
        found = result.centre_deg[keep]
        for axis in (0, 1):
            r = np.corrcoef(found[:, axis], true[:, axis])[0, 1]
            assert r >= 0.99, (result.method, axis, r)
        assert np.median(np.abs(found - true)) < 3 * probe.screen.deg_per_px


def test_map_centres_of_a_known_blob_on_a_background() -> None:
    yy, xx = np.mgrid[:40, :60]
    blob = np.exp(-((xx - 22.5) ** 2 + (yy - 17.0) ** 2) / (2 * 2.0**2))
    centre, size = map_centres(np.stack([blob, blob + 0.3]), np.arange(60.0), np.arange(40.0))
    np.testing.assert_allclose(centre, [[22.5, 17.0], [22.5, 17.0]], atol=1e-3)
    np.testing.assert_allclose(size, 2.0 * np.sqrt(2), rtol=0.05)  # RMS radius of a 2-D Gaussian


def test_mei_beats_gratings_and_resembles_the_filter(probe: SimulatedProbe) -> None:
    simple = np.flatnonzero(~probe.pop.is_complex & _on_screen(probe))[:6]
    result = most_exciting_inputs(probe, simple, steps=60, lr=0.05, norm=0.3)
    assert result.images.shape == (simple.size, 36, 64)
    rms = np.sqrt((result.images**2).mean((1, 2)))
    assert (rms <= 0.3 + 1e-4).all() and np.abs(result.images).max() <= 1.0
    # the ascent raised every neuron's response
    assert (result.trace[-1] > result.trace[0]).all()
    # a simple cell's MEI is its even filter, up to the norm: correlation well above chance
    even = probe.even.numpy()
    r = [np.corrcoef(result.images[k].ravel(), even[..., n].ravel())[0, 1]
         for k, n in enumerate(simple)]  # fmt: skip
    assert np.median(r) > 0.6, np.round(r, 2)
    # and drives it harder than the best grating of the same RMS contrast
    gratings = Gratings(GratingsConfig(contrasts=[0.3 * np.sqrt(2)], temporal_frequencies_hz=[0.0]))
    best = tuning_curves(probe, gratings, simple).responses.max(0)
    assert (result.activation >= best).all()


def test_fourier_parametrisation_and_movie_meis(probe: SimulatedProbe) -> None:
    units = [int(np.flatnonzero(~probe.pop.is_complex & _on_screen(probe))[0])]
    smooth = most_exciting_inputs(probe, units, parametrisation="fourier", steps=40, lr=0.2)
    assert smooth.images.shape == (1, 36, 64) and smooth.trace[-1, 0] > smooth.trace[0, 0]
    movie = most_exciting_inputs(probe, units, kind="movie", steps=10)
    assert movie.images.shape == (1, probe.n_frames, 36, 64)


def test_image_orientation_of_gratings_and_gabors(probe: SimulatedProbe) -> None:
    from neurofm.insilico.mei import image_orientation

    gratings = Gratings(GratingsConfig(directions=8, spatial_frequencies_cpd=[0.05],
                                       contrasts=[1.0], temporal_frequencies_hz=[0.0]))  # fmt: skip
    frames = gratings.frames(probe.screen, range(8), np.zeros(1))[:, 0]
    orientation, strength = image_orientation(frames)
    truth = np.arange(8) * 45.0 % 180
    error = np.abs((orientation - truth + 90) % 180 - 90)
    assert error.max() < 5 and strength.min() > 0.8
    gabors = np.moveaxis(probe.even.numpy(), -1, 0)  # [N, H, W]
    keep = _on_screen(probe)
    error = np.abs((image_orientation(gabors)[0] - probe.true_orientation_deg() + 90) % 180 - 90)
    assert np.mean(error[keep] <= 22.5) >= 0.9
