"""Tests for the streaming correlation and noise-ceiling metrics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurofm.core.evaluation import (
    CorrelationAccumulator,
    RepeatAccumulator,
    fraction_of_mean_ceiling,
    pearson_r,
    summarize,
)


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    """Every metric must stay silent, including on NaN cases."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ---------------------------------------------------------------- hand-computed examples


def test_pearson_hand_computed() -> None:
    # x = [1, 2, 3], y = [2, 4, 7]: dx = [-1, 0, 1], dy = [-7/3, -1/3, 8/3]
    # Σ dx dy = 5, Σ dx² = 2, Σ dy² = 114/9  ->  r = 5 / sqrt(2 * 114 / 9) = 15 / sqrt(228)
    r = pearson_r(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 7.0]))
    assert r.shape == ()
    assert r == pytest.approx(15 / np.sqrt(228), abs=1e-14)


def test_pearson_axis_and_shape() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 50, 3)), rng.normal(size=(4, 50, 3))
    r = pearson_r(x, y, axis=1)
    assert r.shape == (4, 3)
    assert r[2, 1] == pytest.approx(np.corrcoef(x[2, :, 1], y[2, :, 1])[0, 1], abs=1e-12)


def _hand_stimulus() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One stimulus, R = 2, T = 3, C = 1 (numbers worked out in the tests below)."""
    responses = np.array([[1.0, 2.0, 6.0], [3.0, 2.0, 4.0]])[..., None]
    predictions = np.array([1.0, 0.0, 5.0])[:, None]  # [T, C], shared by both repeats
    expected = np.array([2.0, 2.0, 5.0])[:, None]  # the repeat mean
    return responses, predictions, expected


def test_repeat_metrics_hand_computed() -> None:
    responses, predictions, expected = _hand_stimulus()
    acc = RepeatAccumulator()
    acc.update(responses, predictions, expected)
    m = acc.compute()
    # all six values 1, 2, 6, 3, 2, 4: mean 3, Σ(y - 3)² = 16, Var[y] = 16 / 5
    # across-repeat variances (ddof=1) per time: 2, 0, 2  ->  E[σ²_noise] = 4 / 3
    # FEV = 1 - (4/3) / (16/5) = 7 / 12
    assert m["fev"][0] == pytest.approx(7 / 12)
    # leave-one-out means: [3, 2, 4, 1, 2, 6]; Σ dy do = 8, Σ dy² = Σ do² = 16  ->  r = 1/2
    assert m["oracle_r"][0] == pytest.approx(0.5)
    # squared errors [0, 4, 1, 4, 4, 1] -> MSE = 7/3; FEVE = 1 - (7/3 - 4/3) / (16/5 - 4/3)
    assert m["feve"][0] == pytest.approx(13 / 28)
    # repeat means y [2, 2, 5], ŷ [1, 0, 5]: Σ dy dp = 9, Σ dy² = 6, Σ dp² = 14
    assert m["r_to_average"][0] == pytest.approx(9 / np.sqrt(84))
    # single trial: Σ dy dp = 18, Σ dy² = 16, Σ dp² = 28  ->  9 / (4 sqrt 7)
    assert m["single_trial_r"][0] == pytest.approx(9 / (4 * np.sqrt(7)))
    # expected [2, 2, 5, 2, 2, 5]: Σ dy de = 12, Σ de² = 12  ->  sqrt(3) / 2
    assert m["ceiling_r"][0] == pytest.approx(np.sqrt(3) / 2)
    assert m["fraction_of_ceiling"][0] == pytest.approx(9 / (2 * np.sqrt(21)))


def test_optional_keys_follow_inputs() -> None:
    responses, predictions, _ = _hand_stimulus()
    only = RepeatAccumulator()
    only.update(responses)
    assert set(only.compute()) == {"oracle_r", "fev"}
    with pytest.raises(ValueError, match="every stimulus or for none"):
        only.update(responses, predictions)
    with pytest.raises(ValueError, match=">= 2 repeats"):
        RepeatAccumulator().update(responses[:1])
    with pytest.raises(ValueError, match="shape"):
        RepeatAccumulator().update(responses, predictions[:2])


# ---------------------------------------------------------------- identities


def _noisy_repeats(rng: np.random.Generator, n_rep: int, n_time: int, n_chan: int, noise: float):
    signal = rng.normal(size=(n_time, n_chan)) * rng.uniform(0.5, 2.0, size=n_chan)
    return signal, signal + noise * rng.normal(size=(n_rep, n_time, n_chan))


def test_perfect_prediction_of_noise_free_response() -> None:
    rng = np.random.default_rng(1)
    acc = RepeatAccumulator()
    for _ in range(3):
        signal, responses = _noisy_repeats(rng, 4, 20, 5, noise=0.0)
        acc.update(responses, predictions=signal, expected=signal)
    m = acc.compute()
    for key in ("feve", "fev", "oracle_r", "single_trial_r", "r_to_average", "ceiling_r",
                "r_to_expected"):  # fmt: skip
        np.testing.assert_allclose(m[key], 1.0, atol=1e-12, err_msg=key)


def test_r_to_expected_is_the_fraction_of_ceiling_without_the_noise() -> None:
    # a prediction = the expected response plus its own error, recordings = expected plus
    # independent noise: r_to_expected is corr(prediction, expected) and, the noise being
    # independent, single_trial_r ~ r_to_expected * ceiling_r
    rng = np.random.default_rng(7)
    acc = RepeatAccumulator()
    for _ in range(40):
        signal, responses = _noisy_repeats(rng, 5, 50, 3, noise=1.0)
        prediction = signal + 0.8 * rng.normal(size=signal.shape)
        acc.update(responses, predictions=prediction, expected=signal)
    m = acc.compute()
    assert np.all((m["r_to_expected"] > 0.5) & (m["r_to_expected"] < 0.95))
    np.testing.assert_allclose(m["single_trial_r"], m["r_to_expected"] * m["ceiling_r"], atol=0.03)


def test_leave_one_out_prediction_reproduces_oracle() -> None:
    rng = np.random.default_rng(2)
    acc = RepeatAccumulator()
    for n_rep in (2, 3, 5):
        _, responses = _noisy_repeats(rng, n_rep, 15, 4, noise=1.0)
        loo = (responses.sum(axis=0, keepdims=True) - responses) / (n_rep - 1)
        acc.update(responses, predictions=loo)
    m = acc.compute()
    np.testing.assert_allclose(m["single_trial_r"], m["oracle_r"], atol=1e-12)


def test_repeat_mean_prediction() -> None:
    # ŷ = repeat mean: r_to_average = 1, and per (stimulus, time) E_r[(y - ȳ)²] = σ²(R-1)/R,
    # so FEVE = 1 + E[σ²] / (R (Var[y] - E[σ²])) with a fixed repeat count R.
    rng = np.random.default_rng(3)
    acc, n_rep = RepeatAccumulator(), 4
    for _ in range(3):
        _, responses = _noisy_repeats(rng, n_rep, 25, 6, noise=0.7)
        acc.update(responses, predictions=responses.mean(axis=0))
    m = acc.compute()
    np.testing.assert_allclose(m["r_to_average"], 1.0, atol=1e-12)
    noise_fraction = 1.0 - m["fev"]  # E[σ²] / Var[y]
    np.testing.assert_allclose(m["feve"], 1 + noise_fraction / (n_rep * m["fev"]), rtol=1e-10)
    assert np.all(m["single_trial_r"] > m["oracle_r"])  # the mean includes the trial itself


def test_fev_of_noise_and_of_noiseless_repeats() -> None:
    rng = np.random.default_rng(4)
    noise_only, noiseless = RepeatAccumulator(), RepeatAccumulator()
    for _ in range(20):
        noise_only.update(rng.normal(size=(10, 50, 8)))
        _, responses = _noisy_repeats(rng, 3, 50, 8, noise=0.0)
        noiseless.update(responses)
    np.testing.assert_allclose(noise_only.compute()["fev"], 0.0, atol=0.02)
    np.testing.assert_allclose(noise_only.compute()["oracle_r"], 0.0, atol=0.03)
    np.testing.assert_allclose(noiseless.compute()["fev"], 1.0, atol=1e-12)


def test_constant_prediction_gives_nan_silently() -> None:
    rng = np.random.default_rng(5)
    target = rng.normal(size=(30, 3))
    pred = np.full((30, 3), 0.1)  # 0.1 is not exactly representable: mean has rounding
    assert np.all(np.isnan(pearson_r(pred, target)))
    acc = RepeatAccumulator()
    acc.update(_noisy_repeats(rng, 3, 30, 3, noise=0.3)[1], predictions=pred, expected=pred)
    m = acc.compute()
    for key in ("single_trial_r", "r_to_average", "ceiling_r", "fraction_of_ceiling"):
        assert np.all(np.isnan(m[key])), key
    assert np.all(np.isfinite(m["feve"]))  # FEVE needs no variance of the prediction


def test_too_few_points_and_constant_target_are_nan() -> None:
    acc = CorrelationAccumulator(n_channels=3)
    assert np.all(np.isnan(acc.compute()))
    x = np.array([[1.0, 1.0, 5.0], [2.0, 3.0, 5.0]])
    acc.update(x, x * 2, mask=np.array([[True, True, True], [False, True, True]]))
    r = acc.compute()
    assert np.isnan(r[0]) and r[1] == pytest.approx(1.0) and np.isnan(r[2])


def _fed(responses: np.ndarray) -> RepeatAccumulator:
    acc = RepeatAccumulator()
    acc.update(responses, predictions=responses)
    return acc


def test_constant_responses_give_nan_fev_and_quiet_summary() -> None:
    m = _fed(np.ones((3, 4, 2))).compute()
    assert np.all(np.isnan(m["fev"])) and np.all(np.isnan(m["feve"]))
    s = summarize(m)
    assert np.isnan(s["feve"]) and s["n_neurons_feve"] == 0 and s["n_neurons"] == 2


def test_r_invariant_to_affine_rescaling() -> None:
    rng = np.random.default_rng(6)
    pred, target = rng.normal(size=(100, 4)), rng.normal(size=(100, 4))
    r = pearson_r(pred, target)
    np.testing.assert_allclose(pearson_r(3.5 * pred - 12.0, target), r, atol=1e-13)
    np.testing.assert_allclose(pearson_r(-0.2 * pred + 7.0, target), -r, atol=1e-13)


def test_large_offsets_stay_accurate() -> None:
    rng = np.random.default_rng(7)
    x, noise = rng.normal(size=(2000, 3)), rng.normal(size=(2000, 3))
    y = x + noise
    reference = pearson_r(x, y)
    acc = CorrelationAccumulator()
    for chunk in np.array_split(np.arange(2000), 37):
        acc.update(x[chunk] + 1e9, y[chunk] - 3e9)
    np.testing.assert_allclose(acc.compute(), reference, atol=1e-6)
    # repeat metrics: shifting responses and predictions by 1e9 changes nothing
    rep = RepeatAccumulator()
    signal, responses = _noisy_repeats(rng, 3, 200, 2, noise=0.5)
    rep.update(responses + 1e9, predictions=signal + 1e9)
    shifted = rep.compute()
    plain = RepeatAccumulator()
    plain.update(responses, predictions=signal)
    for key, value in plain.compute().items():
        np.testing.assert_allclose(shifted[key], value, atol=1e-5, err_msg=key)


def test_float32_input_is_accumulated_in_float64() -> None:
    acc = CorrelationAccumulator()
    acc.update(np.arange(6, dtype=np.float32).reshape(3, 2), np.ones((3, 2), np.float32) * [1, 2])
    assert acc.mean_x.dtype == np.float64


# ---------------------------------------------------------------- streaming == one pass


@st.composite
def chunked_data(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    n_time = draw(st.integers(2, 60))
    n_chan = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    offset = draw(st.sampled_from([0.0, 1e6]))
    x = rng.normal(size=(n_time, n_chan)) + offset
    y = 0.5 * x + rng.normal(size=(n_time, n_chan)) - offset
    mask = rng.random((n_time, n_chan)) < draw(st.floats(0.3, 1.0))
    cuts = sorted(draw(st.lists(st.integers(0, n_time), max_size=6)))
    return x, y, mask, cuts


def _masked_reference(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.full(x.shape[1], np.nan)
    for c in range(x.shape[1]):
        xs, ys = x[mask[:, c], c], y[mask[:, c], c]
        if xs.size >= 2 and np.ptp(xs) > 0 and np.ptp(ys) > 0:
            out[c] = np.corrcoef(xs, ys)[0, 1]
    return out


@settings(max_examples=60, deadline=None)
@given(chunked_data())
def test_chunked_streaming_equals_one_pass(data) -> None:
    x, y, mask, cuts = data
    x[~mask] = np.nan  # masked entries may hold NaN gaps
    one_pass = CorrelationAccumulator()
    one_pass.update(x, y, mask)
    streamed = CorrelationAccumulator()
    for part in np.split(np.arange(len(x)), cuts):
        streamed.update(x[part], y[part], mask[part])
    reference = _masked_reference(x, y, mask)
    np.testing.assert_allclose(one_pass.compute(), reference, atol=1e-9)
    np.testing.assert_allclose(streamed.compute(), reference, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(chunked_data())
def test_merge_equals_one_pass(data) -> None:
    x, y, mask, cuts = data
    parts = np.split(np.arange(len(x)), cuts)
    merged = CorrelationAccumulator()
    for part in parts:
        shard = CorrelationAccumulator()
        shard.update(x[part], y[part], mask[part])
        merged.merge(shard)
    np.testing.assert_allclose(merged.compute(), _masked_reference(x, y, mask), atol=1e-9)


def _one_shot_repeat_metrics(stimuli: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Direct (non-streaming) SENSORIUM-style formulas over a list of (responses, predictions)."""
    y_all = np.concatenate([y.reshape(-1, y.shape[-1]) for y, _ in stimuli])
    p_all = np.concatenate([p.reshape(-1, p.shape[-1]) for _, p in stimuli])
    loo = np.concatenate(
        [((y.sum(0) - y) / (len(y) - 1)).reshape(-1, y.shape[-1]) for y, _ in stimuli]
    )
    total = y_all.var(axis=0, ddof=1)
    noise = np.concatenate([y.var(axis=0, ddof=1) for y, _ in stimuli]).mean(axis=0)
    mse = ((y_all - p_all) ** 2).mean(axis=0)
    y_avg = np.concatenate([y.mean(0) for y, _ in stimuli])
    p_avg = np.concatenate([p.mean(0) for _, p in stimuli])
    return {
        "oracle_r": pearson_r(loo, y_all),
        "fev": 1 - noise / total,
        "feve": np.where(total > noise, 1 - (mse - noise) / (total - noise), np.nan),
        "r_to_average": pearson_r(p_avg, y_avg),
        "single_trial_r": pearson_r(p_all, y_all),
    }


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.integers(2, 5), min_size=1, max_size=5))
def test_repeat_streaming_and_merge_equal_one_shot(seed: int, repeats: list[int]) -> None:
    rng = np.random.default_rng(seed)
    stimuli = []
    for n_rep in repeats:
        signal, responses = _noisy_repeats(rng, n_rep, int(rng.integers(2, 12)), 3, noise=0.8)
        stimuli.append((responses, signal + 0.3 * rng.normal(size=(n_rep, *signal.shape))))
    expected = _one_shot_repeat_metrics(stimuli)
    streamed, merged = RepeatAccumulator(), RepeatAccumulator()
    for responses, predictions in stimuli:
        streamed.update(responses, predictions)
        shard = RepeatAccumulator()
        shard.update(responses, predictions)
        merged.merge(shard)
    for result in (streamed.compute(), merged.compute()):
        for key, value in expected.items():
            np.testing.assert_allclose(result[key], value, atol=1e-9, err_msg=key)


# ---------------------------------------------------------------- summary


def test_summarize_thresholds_feve_by_fev() -> None:
    metrics = {
        "fev": np.array([0.5, 0.1, np.nan, 0.15]),
        "feve": np.array([0.8, 0.2, 0.4, 0.6]),
        "oracle_r": np.array([0.7, np.nan, 0.3, 0.5]),
    }
    s = summarize(metrics, fev_threshold=0.15)
    assert s["feve"] == pytest.approx(0.7)  # neurons 0 and 3 only
    assert s["n_neurons_feve"] == 2
    assert s["feve_all"] == pytest.approx(0.5)
    assert s["oracle_r"] == pytest.approx(0.5)
    assert s["fev"] == pytest.approx(0.25)
    assert s["n_neurons"] == 4


# ---------------------------------------------------------------- fraction of the noise ceiling


def test_summary_fraction_of_ceiling_is_the_mean_r_over_the_mean_ceiling() -> None:
    """One figure: the ratio of the means, not the mean of the per-neuron ratios (0.55 here)."""
    r, ceiling = np.array([0.1, 0.3]), np.array([0.1, 0.6])
    metrics = {"single_trial_r": r, "ceiling_r": ceiling, "fraction_of_ceiling": r / ceiling}
    s = summarize(metrics)
    assert s["fraction_of_mean_ceiling"] == pytest.approx(0.2 / 0.35)
    assert [k for k in s if "fraction" in k] == ["fraction_of_mean_ceiling"]


def test_fraction_of_ceiling_uses_the_neurons_with_both_r_and_ceiling() -> None:
    r = np.array([0.2, 0.4, np.nan, 0.3, 0.1])
    ceiling = np.array([0.5, 0.7, 0.9, np.nan, 0.0])  # the last neuron's ceiling 0 counts
    assert fraction_of_mean_ceiling(r, ceiling) == pytest.approx((0.7 / 3) / (1.2 / 3))


def test_fraction_of_ceiling_of_one_neuron_is_its_own_ratio() -> None:
    responses, predictions, expected = _hand_stimulus()
    acc = RepeatAccumulator()
    acc.update(responses, predictions, expected)
    m = acc.compute()
    assert fraction_of_mean_ceiling(m["single_trial_r"], m["ceiling_r"]) == pytest.approx(
        m["fraction_of_ceiling"][0]
    )


@pytest.mark.parametrize(
    ("r", "ceiling"),
    [
        ([0.2, 0.3], [0.0, 0.0]),  # mean ceiling 0
        ([0.2, 0.3], [-0.1, 0.05]),  # mean ceiling negative
        ([np.nan, 0.3], [0.5, np.nan]),  # no neuron with both
        ([], []),
    ],
)
def test_fraction_of_ceiling_is_nan_without_a_positive_ceiling(r: list, ceiling: list) -> None:
    assert np.isnan(fraction_of_mean_ceiling(np.array(r), np.array(ceiling)))


def test_fraction_of_ceiling_refuses_arrays_of_different_neurons() -> None:
    with pytest.raises(ValueError, match="one shape"):
        fraction_of_mean_ceiling(np.zeros(3), np.ones(4))


def test_summary_has_no_fraction_of_ceiling_without_ceilings() -> None:
    s = summarize({"single_trial_r": np.array([0.2, 0.4])})
    assert not [k for k in s if "fraction" in k]
