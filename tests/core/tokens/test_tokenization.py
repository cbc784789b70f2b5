"""Host-side token choices: which groups of samples hold a valid one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofm.core.tokens.tokenization import (
    groups_with_valid,
    patch_spans,
    patches_with_valid,
    temporal_patches,
)


def test_groups_with_valid_along_any_axis_with_a_short_last_group() -> None:
    valid = np.array([[1, 0], [0, 0], [0, 0], [0, 1], [0, 0]], dtype=bool)  # [T 5, C 2]
    assert groups_with_valid(valid, 2).tolist() == [[True, False], [False, True], [False, False]]
    assert groups_with_valid(valid.T, 2, axis=1).tolist() == [[True, False, False],
                                                              [False, True, False]]  # fmt: skip
    assert groups_with_valid(np.zeros((2, 0), bool), 3, axis=1).shape == (2, 0)


def test_patches_with_valid_match_the_device_patches() -> None:
    """The host's choice is the one the patched validity itself gives."""
    rng = np.random.default_rng(0)
    for t, c, patch in [(7, 3, 2), (8, 1, 4), (5, 2, 6), (0, 2, 3)]:
        valid = rng.random((t, c)) < 0.2
        p = temporal_patches(torch.zeros(t, c), torch.from_numpy(valid), torch.zeros(t), patch, 0.1)
        expected = p.valid.flatten(1).any(1).numpy()
        np.testing.assert_array_equal(patches_with_valid(valid, patch), expected)
        np.testing.assert_array_equal(patches_with_valid(valid.any(1), patch), expected)


@pytest.mark.parametrize("t", [1, 4, 5, 7, 8])
def test_patch_spans_run_from_each_patch_start_to_its_last_real_sample(t: int) -> None:
    """Patches of 4 samples at 0.1 s: a span starts at its first sample and ends one period
    after its last real one (a partial last patch at the last sample); leading dims kept."""
    times = torch.arange(t, dtype=torch.float32) * 0.1 + 1.0
    spans = patch_spans(torch.stack([times, times + 10.0]), 4, 0.1)
    starts = [float(times[i]) for i in range(0, t, 4)]
    ends = [float(times[min(i + 3, t - 1)]) + 0.1 for i in range(0, t, 4)]
    assert spans.shape == (2, len(starts), 2)
    torch.testing.assert_close(spans[0], torch.tensor([starts, ends]).T)
    torch.testing.assert_close(spans[1], torch.tensor([starts, ends]).T + 10.0)
