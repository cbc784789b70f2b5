"""The CNN baseline: output shapes, and it predicts held-out test responses above a shuffled control."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.core.baselines.cnn import CNNConfig, CNNModel, fit_cnn_baseline
from neurofm.core.data import open_dataset
from neurofm.core.data.windows import normalise_stream
from neurofm.core.evaluation.metrics import pearson_r

NORM = {"movie": "zscore", "calcium": "scale", "running": "zscore", "pupil": "zscore"}
SMALL = CNNConfig(
    channels=8, layers=2, spatial_kernel=(7, 5), temporal_kernel=(7, 3), window_s=1.0,
    batch_size=4, steps=150, eval_every=50,
)  # fmt: skip


@pytest.mark.parametrize("calcium_filter", [True, False])
def test_forward_shapes_and_positive_output(calcium_filter: bool) -> None:
    config = CNNConfig(channels=4, layers=2, calcium_filter=calcium_filter)
    model = CNNModel(config, {"a": 5, "b": 3}, n_behaviour=3, dt=1 / 30)
    movie, behaviour = torch.randn(2, 12, 18, 32), torch.randn(2, 12, 3)
    out = model("a", movie, behaviour)
    assert out.shape == (2, 12, 5) and (out > 0).all()
    assert model("b", movie, None).shape == (2, 12, 3)
    assert model.core(movie.unsqueeze(1)).shape == (2, 4, 12, 9, 16)


def test_forward_is_causal_in_time() -> None:
    model = CNNModel(CNNConfig(channels=4, layers=2), {"a": 5}, n_behaviour=0, dt=1 / 30).eval()
    movie = torch.randn(1, 12, 18, 32)
    later = movie.clone()
    later[:, 8:] = torch.randn(1, 4, 18, 32)
    with torch.no_grad():
        assert torch.allclose(model("a", movie, None)[:, :8], model("a", later, None)[:, :8])


def test_cnn_predicts_test_responses(tiny_data: Path) -> None:
    torch.set_num_threads(1)
    sessions = open_dataset(tiny_data)
    fit = fit_cnn_baseline(sessions, ["movie", "running", "pupil"], "calcium", NORM, config=SMALL)
    assert fit.validation_loss and np.isfinite(fit.train_loss).all()
    session = sessions[0]
    ts = session.stream_timestamps("calcium")
    idx = np.concatenate(
        [np.flatnonzero((ts >= iv.start) & (ts < iv.end)) for iv in session.intervals("test")]
    )
    raw = np.asarray(session.stream_data("calcium")[idx], np.float64)
    y = normalise_stream(session, "calcium", raw, "scale")
    pred = fit.for_session(session.session_id).predict(ts[idx])
    assert pred.shape == y.shape and (pred > 0).all()
    r = np.nanmean(pearson_r(pred, y))
    assert r > 0.05 and r > np.nanmean(pearson_r(pred[::-1], y)) + 0.05
