"""Host-side token choices: which groups of samples hold a valid one."""

from __future__ import annotations

import numpy as np
import torch

from neurofm.core.tokens.tokenization import groups_with_valid, patches_with_valid, temporal_patches


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
