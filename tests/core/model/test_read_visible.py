"""The batched read of a stream's visible samples at the stimulus features' times (the eye
position and the factorised gain's behaviour streams): one computation for every sample, equal
to reading each sample on its own."""

from __future__ import annotations

import numpy as np
import torch

from neurofm.core.interfaces import StreamTensor
from neurofm.core.model.neurofm import MaskedStream, _read_visible
from neurofm.core.tokens.tasks import ResolvedMask


def _masked(times: np.ndarray, values: np.ndarray, visible: np.ndarray, period: float):
    stream = StreamTensor(
        torch.from_numpy(values.astype(np.float32)),
        torch.ones(values.shape, dtype=torch.bool),
        torch.from_numpy(times.astype(np.float32)),
        period,
    )
    mask = ResolvedMask(visible, ~visible, None, None)
    return {"gaze": MaskedStream(stream, mask)}


def _reference(streams, at: np.ndarray, channels: int):
    """Per sample, in float64: np.interp of the visible samples (held beyond the ends) and the
    span test."""
    item = streams.get("gaze")
    if item is None or not item.mask.visible_time.any():
        return None
    keep = item.mask.visible_time
    seen = item.stream.times.double().numpy()[keep]
    vals = item.stream.values.double().numpy()[keep][:, :channels]
    read = np.stack([np.interp(at, seen, vals[:, c]) for c in range(channels)], -1)
    inside = (at >= seen[0]) & (at <= seen[-1] + item.stream.period_s)
    return read, inside


def test_batched_read_equals_each_sample_read_alone():
    rng = np.random.default_rng(0)
    reads = []
    for case in range(7):
        n = 20 + case
        times = np.arange(n) * 0.05 + 0.01 * case
        values = rng.normal(size=(n, 3))
        visible = np.ones(n, dtype=bool)
        if case == 1:
            visible[5:12] = False  # a gap: rows not in one run
        if case == 2:
            visible[:] = False
            visible[7] = True  # a single visible sample: held constant
        if case == 3:
            visible[:] = False  # nothing visible
        if case == 4:
            visible[:10] = False  # visible only in the second half: times before it are outside
        streams = {} if case == 5 else _masked(times, values, visible, 0.05)  # case 5: absent
        length = 30 if case != 6 else 17  # times of another length than the others
        at = np.linspace(-0.1, 1.4, length).astype(np.float32)
        reads.append((streams, torch.from_numpy(at)))

    got = _read_visible("gaze", reads, 2)
    for (streams, at), out in zip(reads, got, strict=True):
        want = _reference(streams, at.double().numpy(), 2)
        if want is None:
            assert out is None
            continue
        read, inside = out
        assert read.shape == (at.shape[0], 2) and inside.shape == (at.shape[0],)
        np.testing.assert_allclose(read.numpy(), want[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(inside.numpy(), want[1])


def test_no_read_when_no_sample_shows_the_stream():
    at = torch.linspace(0, 1, 5)
    assert _read_visible("gaze", [({}, at), ({}, at)], 2) == [None, None]
