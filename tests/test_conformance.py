"""Every registered plugin passes the conformance kit (a new plugin gets these tests for free)."""

from __future__ import annotations

import re
from typing import Literal

import pytest
import torch
from pydantic import ConfigDict, Field
from torch import Tensor, nn

from neurofm import registry
from neurofm.core.config import PluginConfig
from neurofm.core.interfaces import Head, ModalityEncoder, StreamTensor, Tokens
from neurofm.core.tokens.tokenization import series_tokens
from neurofm.errors import InvalidPluginError
from neurofm.registry import Registry
from neurofm.testing import check_config, check_head, check_modality, check_plugin, check_readout

PLUGINS = [(kind, name) for kind, reg in registry.REGISTRIES.items() for name in reg.list()]


@pytest.mark.parametrize(("kind", "name"), PLUGINS, ids=[f"{k}:{n}" for k, n in PLUGINS])
def test_registered_plugin_conforms(kind: str, name: str) -> None:
    check_plugin(kind, name)


def test_every_kind_has_plugins() -> None:
    assert {kind for kind, _ in PLUGINS} == set(registry.REGISTRIES)


def test_non_default_configs_conform() -> None:
    movie = registry.modalities.get("movie")
    check_modality(
        movie, movie.Config(height=8, width=12, patch_height=4, patch_width=6, channels=3)
    )
    core = registry.modalities.get("movie_core")
    check_modality(
        core,
        core.Config(height=12, width=20, channels=2, frame_pool=2, token_rows=2, token_cols=3,
                    core={"channels": 4, "layers": 2, "spatial_kernels": (3, 3),
                          "temporal_kernels": (3, 1), "norm": "none"}),
    )  # fmt: skip
    regression = registry.heads.get("regression")
    check_plugin("heads", "regression", regression.Config(likelihood="gaussian"), channels=2)


def test_third_party_plugin_conforms(third_party_plugins) -> None:
    check_plugin("modalities", "acme.whisker")
    from neurofm_acme.whisker import WhiskerConfig, WhiskerEncoder

    check_modality(WhiskerEncoder, WhiskerConfig(channels=4, patch_samples=3), d_model=16)


# -- the kit rejects what breaks the contract ---------------------------------------------------
class _SeriesConfig(PluginConfig):
    type: Literal["test.series"] = "test.series"
    channels: int = Field(2, ge=1)


class _GoodSeries(ModalityEncoder):
    Config = _SeriesConfig
    role = "behaviour"

    def __init__(self, config: _SeriesConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        self.embed = nn.Linear(4 * config.channels, d_model)

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        return series_tokens(self.embed, self.config.channels, 2, stream, "test.series")


class _NaNOnInvalid(_GoodSeries):
    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        tokens = super().tokenize(stream, unit_embeddings)
        bad = (~stream.valid).any()
        return Tokens(tokens.features / (0.0 if bad else 1.0) * 0.0, tokens.times)


class _TokensForNothing(_GoodSeries):
    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        return Tokens(torch.zeros(1, self.d_model), torch.zeros(1, 2))


class _WrongWidth(_GoodSeries):
    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        tokens = super().tokenize(stream, unit_embeddings)
        return Tokens(tokens.features[:, :-1], tokens.times)


class _ScalesANameItLacks(_GoodSeries):
    def learning_rate_scales(self) -> dict[str, float]:
        return {"core.": 2.0}


class _NegativeScale(_GoodSeries):
    def learning_rate_scales(self) -> dict[str, float]:
        return {"embed.": -1.0}


class _LooseConfig(PluginConfig):
    model_config = ConfigDict(extra="allow")
    type: Literal["test.loose"] = "test.loose"


class _Loose(_GoodSeries):
    Config = _LooseConfig


def test_kit_accepts_a_correct_encoder() -> None:
    check_modality(_GoodSeries)


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (_NaNOnInvalid, "NaN"),
        (_TokensForNothing, "no gradient can flow"),
        (_WrongWidth, "token features must be"),
        (_ScalesANameItLacks, "none of its parameters"),
        (_NegativeScale, "positive number"),
    ],
)
def test_kit_rejects_broken_encoders(cls: type[ModalityEncoder], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_modality(cls)


class _NoRole(_GoodSeries):
    role = None


class _MinMax(_GoodSeries):
    normalization = "minmax"


class _PerUnitInt(_GoodSeries):
    per_unit = 1


@pytest.mark.parametrize(
    ("cls", "found_and_allowed"),
    [
        (_NoRole, "role = None (not set); allowed: 'stimulus', 'behaviour', 'neural'"),
        (_MinMax, "normalization = 'minmax'; allowed: 'zscore', 'scale', 'none'"),
        (_PerUnitInt, "per_unit = 1 (of type int, expected bool); allowed: False, True"),
    ],
)
def test_kit_checks_contract_attributes_as_the_registry_does(
    cls: type[ModalityEncoder], found_and_allowed: str
) -> None:
    with pytest.raises(AssertionError) as info:
        check_modality(cls)
    assert found_and_allowed in str(info.value)
    # registration refuses the class with the same words
    fresh = Registry("modality", "neurofm.tests-no-such-group", registry.modalities._interface_path)
    with pytest.raises(InvalidPluginError) as refused:
        fresh.register(cls)
    assert found_and_allowed in str(refused.value)


def test_kit_checks_configs() -> None:
    with pytest.raises(AssertionError, match="unknown fields"):
        check_config(_Loose)
    with pytest.raises(AssertionError, match="differs from registered name"):
        check_modality(_GoodSeries, name="test.other")


class _TokensForNothingTrainable(_GoodSeries):
    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        tokens = super().tokenize(stream, unit_embeddings)
        if len(tokens) == 0:
            return Tokens(self.embed.bias[None, :], torch.zeros(1, 2))
        return tokens


def test_kit_requires_no_tokens_for_absent_data() -> None:
    with pytest.raises(AssertionError, match="zero-length input"):
        check_modality(_TokensForNothingTrainable)


def test_kit_rejects_batched_readout_calls_that_disagree() -> None:
    from neurofm.plugins.readouts.retinotopic import RetinotopicConfig, RetinotopicReadout

    class Reversed(RetinotopicReadout):  # answers a batch's queries in the wrong order
        def project_stimulus_batch(self, queries):
            return super().project_stimulus_batch(queries)[::-1]

    class Shifted(RetinotopicReadout):  # every identity after the first request is off
        def unit_embeddings_batch(self, requests):
            out = super().unit_embeddings_batch(requests)
            return [out[0], *(e + 1.0 for e in out[1:])]

    check_readout(RetinotopicReadout, RetinotopicConfig(), name="retinotopic")
    with pytest.raises(AssertionError, match="project_batch must give, per query"):
        check_readout(Reversed, RetinotopicConfig(), name="retinotopic")
    with pytest.raises(AssertionError, match="unit_embeddings_batch must give, per request"):
        check_readout(Shifted, RetinotopicConfig(), name="retinotopic")


def test_kit_rejects_a_batched_tokenize_that_disagrees() -> None:
    from neurofm.plugins.modalities.calcium import CalciumConfig, CalciumEncoder
    from neurofm.plugins.modalities.pupil import PupilConfig, PupilEncoder

    class Pooled(PupilEncoder):  # mixes the samples of a batch
        def tokenize_batch(self, streams, unit_embeddings=None):
            out = super().tokenize_batch(streams, unit_embeddings)
            return [out[-1], *out[1:-1], out[0]]

    class Unordered(CalciumEncoder):  # gives each sample the first sample's identities
        def tokenize_batch(self, streams, unit_embeddings=None):
            first = unit_embeddings[0]
            return super().tokenize_batch(
                streams, [first[: e.shape[0]] if e is not None else e for e in unit_embeddings]
            )

    with pytest.raises(AssertionError, match="tokenize_batch must give, per stream"):
        check_modality(Pooled, PupilConfig(), name="pupil")
    with pytest.raises(AssertionError, match="tokenize_batch must give, per stream"):
        check_modality(Unordered, CalciumConfig(), name="calcium")


class _GridConfig(PluginConfig):
    type: Literal["test.grid"] = "test.grid"
    cells: int = 3  # a cells x cells grid per sample: the kit cannot guess it from the names


class _GridEncoder(ModalityEncoder):
    """Reads ``[T, cells, cells]`` (a coarse sensor array); one token per sample."""

    Config = _GridConfig
    role = "behaviour"

    def __init__(self, config: _GridConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        self.embed = nn.Linear(config.cells * config.cells + 1, d_model)

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        c = self.config.cells
        if tuple(stream.values.shape[1:]) != (c, c):
            raise ValueError(f"grid encoder expects [T, {c}, {c}], found {stream.values.shape}")
        keep = stream.valid.reshape(-1)
        x = torch.cat([stream.values.flatten(1), keep[:, None].float()], 1)[keep]
        spans = torch.stack([stream.times, stream.times + stream.period_s], -1)[keep]
        return Tokens(self.embed(x), spans)


class _GridWithExample(_GridEncoder):
    def example_values(self, n_samples: int, generator: torch.Generator) -> Tensor:
        c = self.config.cells
        return torch.randn(n_samples, c, c, generator=generator)


def test_kit_uses_the_plugins_own_example_inputs() -> None:
    with pytest.raises(ValueError, match=r"grid encoder expects \[T, 3, 3\]"):
        check_modality(_GridEncoder, name="test.grid")  # guessed [T, 1]: the wrong form
    check_modality(_GridWithExample, name="test.grid")


# -- heads: the metrics a head asks for ------------------------------------------------------
class _MetricsConfig(PluginConfig):
    type: Literal["test.metrics"] = "test.metrics"
    unit_metrics: tuple[str, ...] = ("single_trial_r", "r_to_average")
    channel_metrics: tuple[str, ...] = ("r",)


class _MetricsHead(Head):
    """A squared-error head that reports the metrics its config names."""

    Config = _MetricsConfig

    def predict(self, raw: Tensor) -> Tensor:
        return raw[..., 0]

    def loss(self, raw: Tensor, target: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        error = (raw[..., 0] - torch.where(valid, target, 0.0)) ** 2
        return (error * valid).sum(), valid.sum()

    def metric_names(self, per_unit: bool) -> tuple[str, ...]:
        return self.config.unit_metrics if per_unit else self.config.channel_metrics


def test_kit_accepts_a_head_that_reports_fewer_metrics() -> None:
    check_head(_MetricsHead)
    check_head(_MetricsHead, _MetricsConfig(unit_metrics=(), channel_metrics=()))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (_MetricsConfig(unit_metrics=("single_trial_r", "mae")),
         "asks for metric 'mae', which evaluation does not compute for per-unit streams; "
         "known for per-unit streams: single_trial_r, r_to_average, oracle_r, fev, feve, "
         "ceiling_r, fraction_of_ceiling, r_to_expected"),
        (_MetricsConfig(channel_metrics=("r", "fev")),
         "asks for metric 'fev', which evaluation does not compute for channel streams; "
         "known for channel streams: r."),
    ],
)  # fmt: skip
def test_kit_rejects_a_head_asking_for_metrics_evaluation_does_not_know(
    config: _MetricsConfig, message: str
) -> None:
    with pytest.raises(AssertionError) as info:
        check_head(_MetricsHead, config)
    assert str(info.value).startswith("head plugin ")
    assert message in str(info.value)
    assert "_MetricsHead" in str(info.value)  # the head, named as the kit names it


def test_kit_checks_the_metrics_of_a_registered_head() -> None:
    registry.heads.register(_MetricsHead)
    try:
        check_plugin("heads", "test.metrics")
        bad = _MetricsConfig(unit_metrics=("oracle_r", "mse"))
        with pytest.raises(AssertionError, match=r"head plugin 'test.metrics' from .* asks for"):
            check_plugin("heads", "test.metrics", bad)
    finally:
        registry.heads.unregister("test.metrics")


# -- heads: per-entry losses ----------------------------------------------------------------
class _TermsHead(_MetricsHead):
    """A squared-error head with per-entry losses, broken in the way ``flaw`` names."""

    flaw = ""

    def loss_terms(self, raw: Tensor, target: Tensor, valid: Tensor) -> Tensor:
        error = (raw[..., 0] - torch.where(valid, target, 0.0)) ** 2
        if self.flaw == "invalid":
            return error  # not 0 where the entry is not valid
        if self.flaw == "scale":
            return 2 * error * valid  # does not sum to loss
        if self.flaw == "shape":
            return (error * valid).reshape(-1)
        return error * valid


def test_kit_accepts_a_head_whose_loss_terms_sum_to_its_loss() -> None:
    check_head(_TermsHead)


@pytest.mark.parametrize(
    ("flaw", "message"),
    [("invalid", "loss_terms must be 0 at entries that are not valid"),
     ("scale", "sum to"),
     ("shape", "loss_terms must give [6, 3]")],
)  # fmt: skip
def test_kit_rejects_loss_terms_that_disagree_with_the_loss(flaw: str, message: str) -> None:
    broken = type(f"_TermsHead_{flaw}", (_TermsHead,), {"flaw": flaw})
    with pytest.raises(AssertionError, match=re.escape(message)):
        check_head(broken)
