"""The retinotopic readout reads each neuron's stimulus drive at its own sample time."""

from __future__ import annotations

import numpy as np
import torch

from neurofm.core.interfaces import FeatureMap, SessionUnits, StimulusView
from neurofm.plugins.readouts.retinotopic import RetinotopicConfig, RetinotopicReadout


def test_per_unit_read_times_read_each_neurons_drive_at_its_own_time() -> None:
    torch.manual_seed(0)
    units = {"s": SessionUnits("s", 4, np.random.default_rng(0).normal(0, 100, (4, 3)))}
    readout = RetinotopicReadout(
        RetinotopicConfig(eye_stream=None), d_model=8, sessions=units, feature_channels=3
    ).eval()
    period = 1 / 30
    fmap = FeatureMap(torch.randn(60, 3, 6, 8), torch.arange(60) * period, period)
    views = [StimulusView(fmap)]
    h, ids = torch.randn(10, 8), torch.arange(4)
    frames = torch.arange(10) * 0.125 + 0.2  # 8 Hz frames
    offsets = torch.tensor([0.0, 0.04, 0.08, 0.12])
    with torch.no_grad():
        own = readout.project_stimulus(h, "s", ids, frames[:, None] + offsets, views)
        at_frames = readout.project_stimulus(h, "s", ids, frames, views)
        for k in range(4):  # neuron k's column equals a read of everyone at its time
            alone = readout.project_stimulus(h, "s", ids, frames + offsets[k], views)
            torch.testing.assert_close(own[:, k], alone[:, k], rtol=0, atol=0)
    torch.testing.assert_close(own[:, 0], at_frames[:, 0], rtol=0, atol=0)
    assert not torch.allclose(own[:, 3], at_frames[:, 3])
