"""The LN baseline: fit on the train tier, predicts held-out test responses above chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurofm.core.baselines.ln import fit_linear_nonlinear
from neurofm.core.data import open_dataset
from neurofm.core.data.windows import normalise_stream
from neurofm.core.evaluation.metrics import pearson_r

NORM = {"movie": "zscore", "calcium": "scale", "running": "zscore", "pupil": "zscore"}


def test_ln_predicts_test_responses(tiny_data: Path) -> None:
    session = open_dataset(tiny_data)[0]
    ln = fit_linear_nonlinear(session, ["movie", "running", "pupil"], "calcium", NORM)
    assert ln.softplus and ln.weights.shape == (3 * len(ln.lags_s) + 6 * 8 * len(ln.lags_s) + 1, 16)
    ts = session.stream_timestamps("calcium")
    idx = np.concatenate(
        [np.flatnonzero((ts >= iv.start) & (ts < iv.end)) for iv in session.intervals("test")]
    )
    raw = np.asarray(session.stream_data("calcium")[idx], np.float64)
    y = normalise_stream(session, "calcium", raw, "scale")
    pred = ln.predict(ts[idx])
    assert (pred >= 0).all()
    r = np.nanmean(pearson_r(pred, y))
    assert r > 0.05 and r > np.nanmean(pearson_r(pred[::-1], y)) + 0.05


def test_ln_is_linear_for_signed_targets(tiny_data: Path) -> None:
    session = open_dataset(tiny_data)[0]
    ln = fit_linear_nonlinear(session, ["calcium"], "running", NORM)
    assert not ln.softplus  # z-scored behaviour can be negative: plain ridge decoder
    ts = session.stream_timestamps("running")
    idx = np.flatnonzero(ts < ts[0] + 60)
    y = normalise_stream(
        session, "running", np.asarray(session.stream_data("running")[idx]), "zscore"
    )
    assert np.nanmean(pearson_r(ln.predict(ts[idx]), y)) > 0.3
