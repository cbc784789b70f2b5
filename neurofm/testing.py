"""Conformance kit for plugin authors: the checks every neurofm plugin must pass.

neurofm runs these checks on every registered plugin (built-in or installed), and a plugin author
runs them in their own test suite::

    # tests/test_conformance.py of the package neurofm-acme-plugin
    from neurofm.testing import check_modality, check_plugin
    from neurofm_acme.whisker import WhiskerEncoder, WhiskerConfig

    def test_whisker_conforms():
        check_modality(WhiskerEncoder, WhiskerConfig(channels=3))

    def test_whisker_as_installed():
        check_plugin("modalities", "acme.whisker")   # found through its entry point

Every check raises :class:`AssertionError` naming the plugin and what was expected on failure.

What is checked, for every kind:
    - the plugin's ``Config`` derives from :class:`neurofm.PluginConfig`, its ``type`` tag equals the
      name the plugin is registered under, unknown fields are rejected, and the config survives a
      JSON round trip;
    - a modality encoder's ``role``, ``normalization`` and ``per_unit`` take values the registry
      allows (the registry's own check, :meth:`neurofm.registry.Registry.class_attribute_violations`);
    - the module builds from the config;
    - a forward pass on synthetic input of the right form gives finite outputs of the documented
      shapes, and a backward pass gives finite gradients to at least one parameter;
    - empty input gives empty output (absent data), and invalid entries (``valid=False``, zeroed as
      the data pipeline does) never produce NaN;
    - weights saved with safetensors and loaded into a freshly built module give identical outputs;
    - a head's ``metric_names`` names only metrics evaluation knows, for a per-unit and for a
      channel stream (evaluation refuses any other name).

For the stimulus path: a :class:`~neurofm.PositionedStimulusEncoder` must give, in one
``encode_batch`` call over several samples (one of them empty), one output per sample whose tokens
are those of ``tokenize`` and whose feature maps are ``[T, feature_channels, H, W]`` at times
within the stream's, the same in a batch as alone (in eval mode). A
:class:`~neurofm.StimulusReadout` is built with ``feature_channels``; ``project_stimulus`` with no
view must equal ``project``, and with views (with and without an eye position) it must give
``[Q, K, p]`` outputs that depend on the features, with gradients to them; one that sets
``unit_read_times`` must accept per-unit read times ``[Q, K]`` and give, for the query times
repeated per unit, the outputs of ``[Q]`` times. A readout's batched calls
(``unit_embeddings_batch``, ``project_batch``, ``project_stimulus_batch``: the model's one call
per batch) must give, for every request of several sessions, what the one-request calls give.

``tokenize_batch`` (the model's one call per stream and batch) must give, stream by stream, what
``tokenize`` gives, for streams of one and of different lengths, an empty one, one with invalid
entries and (per-unit encoders) one with a subset of the units.

Per-unit sample times: a per-unit encoder also gets the stream with per-unit time offsets
(``StreamTensor.unit_time_offset_s``, within one sampling period); its tokens must then be valid
and lie within the input's time range plus one period. An encoder may ignore the offsets (its
tokens then sit at the frame times).

Synthetic input of the right form, for modality encoders: what the encoder's
``example_values(n_samples, generator)`` gives, when it overrides it; otherwise per-unit encoders
get ``values [T, N]`` with ``unit_embeddings [N, d_model]``; encoders whose config has
``height``/``width`` get frames ``[T, H, W]`` (``[T, H, W, C]`` when ``channels > 1``); every
other encoder gets ``[T, C]`` with ``C`` = the config's ``channels`` (1 if it has none).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn

from neurofm import registry
from neurofm.core.config import PluginConfig
from neurofm.core.evaluation.metric_names import head_metric_names
from neurofm.core.interfaces import (
    FeatureMap,
    Head,
    ModalityEncoder,
    PositionedOutput,
    PositionedStimulusEncoder,
    Readout,
    ReadoutQuery,
    SessionUnits,
    StimulusReadout,
    StimulusView,
    StreamTensor,
    Tokens,
)
from neurofm.errors import InvalidPluginError, UnknownPluginError

__all__ = [
    "check_config",
    "check_head",
    "check_modality",
    "check_plugin",
    "check_readout",
    "check_source",
]

_UNKNOWN_FIELD = "conformance_unknown_field"


def _fail(what: str, message: str) -> AssertionError:
    return AssertionError(f"{what}: {message}")


def _describe(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _registered_name(kind: str, cls: type) -> str | None:
    """The name ``cls`` is registered under in the ``kind`` registry; None if it is not."""
    try:
        return registry.get_registry(kind).record_of(cls).name
    except UnknownPluginError:
        return None


def check_config(
    plugin_cls: type, config: PluginConfig | None = None, *, name: str | None = None
) -> PluginConfig:
    """Check a plugin's config class and return the config to build with (default: ``Config()``).

    ``name`` is the registered name the ``type`` tag must equal (not checked when None).
    """
    what = _describe(plugin_cls)
    config_cls = getattr(plugin_cls, "Config", None)
    if not (isinstance(config_cls, type) and issubclass(config_cls, PluginConfig)):
        raise _fail(
            what, f"`Config` must be a subclass of neurofm.PluginConfig, found {config_cls!r}"
        )
    if config is None:
        try:
            config = config_cls()
        except ValidationError as exc:
            raise _fail(
                what, f"its Config has required fields; pass a config to the check ({exc})"
            ) from None
    if not isinstance(config, config_cls):
        raise _fail(what, f"config must be a {config_cls.__name__}, found {type(config).__name__}")
    if name is not None and config.type != name:
        raise _fail(what, f"config tag type={config.type!r} differs from registered name {name!r}")
    data = config.model_dump()
    try:
        config_cls.model_validate({**data, _UNKNOWN_FIELD: 1})
    except ValidationError:
        pass
    else:
        raise _fail(what, "its Config accepts unknown fields; expected extra='forbid'")
    again = config_cls.model_validate_json(config.model_dump_json())
    if again != config or again.model_dump() != data:
        raise _fail(what, f"config changed in a JSON round trip: {data} -> {again.model_dump()}")
    return config


def _check_finite(what: str, label: str, tensor: Tensor) -> None:
    if not bool(torch.isfinite(tensor).all()):
        raise _fail(what, f"{label} contains NaN or inf")


def _check_gradients(what: str, module: nn.Module, output: Tensor) -> None:
    module.zero_grad(set_to_none=True)
    if not output.requires_grad:
        raise _fail(what, "its output does not depend on any parameter (no gradient can flow)")
    (output * torch.randn_like(output)).sum().backward()
    grads = {n: p.grad for n, p in module.named_parameters() if p.grad is not None}
    if not grads:
        raise _fail(what, "backward gave no gradient to any parameter")
    for n, g in grads.items():
        _check_finite(what, f"gradient of parameter {n!r}", g)
    if not any(bool(g.abs().sum() > 0) for g in grads.values()):
        raise _fail(what, "every parameter gradient is zero")


def _check_penalty(what: str, module: nn.Module) -> None:
    """``penalty()`` is None or a finite scalar tensor."""
    value = module.penalty()
    if value is None:
        return
    if not isinstance(value, Tensor) or value.ndim != 0:
        raise _fail(what, f"penalty() must return None or a scalar tensor, found {value!r:.80}")
    _check_finite(what, "penalty()", value)


def _check_learning_rate_scales(what: str, module: nn.Module) -> None:
    """``learning_rate_scales()`` names only the plugin's parameters, with positive scales."""
    from neurofm.core.model.neurofm import plugin_learning_rate_scales

    try:
        plugin_learning_rate_scales(module)
    except ValueError as exc:
        raise _fail(what, str(exc)) from None


def _check_reload(
    what: str, build: Callable[[], nn.Module], module: nn.Module, run: Callable[[nn.Module], Any]
) -> None:
    state = {k: v.detach().cpu().clone().contiguous() for k, v in module.state_dict().items()}
    blob = save_safetensors(state)
    torch.manual_seed(12345)
    fresh = build()
    try:
        fresh.load_state_dict(load_safetensors(blob), strict=True)
    except RuntimeError as exc:
        raise _fail(
            what, f"weights saved with safetensors do not load into a new instance: {exc}"
        ) from None
    module.eval()
    fresh.eval()
    with torch.no_grad():
        before, after = run(module), run(fresh)
    for a, b in zip(before, after, strict=True):
        if a.shape != b.shape or not torch.equal(a, b):
            raise _fail(what, "outputs differ after a safetensors state_dict round trip")


# -- modality encoders ------------------------------------------------------------------------
def _stream_input(
    encoder: ModalityEncoder, n_samples: int, generator: torch.Generator
) -> tuple[StreamTensor, Tensor | None]:
    """Synthetic input of the form the encoder reads (see the module docstring)."""
    config = encoder.config
    fields = type(config).model_fields
    period = 1.0 / 30.0
    times = torch.arange(n_samples, dtype=torch.float32) * period
    unit_embeddings = None
    values = encoder.example_values(n_samples, generator)
    if values is not None:  # the plugin says what it reads
        if not isinstance(values, Tensor) or values.ndim < 2 or values.shape[0] != n_samples:
            found = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise _fail(
                f"modality plugin {_describe(type(encoder))}",
                f"example_values({n_samples}, ...) must give a tensor [{n_samples}, ...] of at "
                f"least 2 dimensions, found {found}",
            )
        values = values.to(torch.float32)
        shape: tuple[int, ...] = tuple(values.shape)
    elif encoder.per_unit:
        shape = (n_samples, 5)
    elif "height" in fields and "width" in fields:
        channels = int(getattr(config, "channels", 1))
        shape = (n_samples, int(config.height), int(config.width))
        shape += (channels,) if channels > 1 else ()
    else:
        shape = (n_samples, int(getattr(config, "channels", 1)))
    if values is None:
        values = torch.randn(shape, generator=generator)
    if encoder.per_unit:
        unit_embeddings = torch.randn(shape[1], encoder.d_model, generator=generator)
    valid = torch.ones(shape if len(shape) == 2 else shape[:1], dtype=torch.bool)
    return StreamTensor(values, valid, times, period), unit_embeddings


def _invalidate(stream: StreamTensor) -> StreamTensor:
    """Every other sample marked invalid and zeroed (as the data pipeline hands over NaN samples)."""
    valid = stream.valid.clone()
    valid[::2] = False
    mask = valid.reshape(valid.shape + (1,) * (stream.values.ndim - valid.ndim))
    return StreamTensor(torch.where(mask, stream.values, 0.0), valid, stream.times, stream.period_s)


def _check_tokens(what: str, tokens: Any, d_model: int, duration: float | None) -> None:
    if not isinstance(tokens, Tokens):
        raise _fail(what, f"tokenize must return neurofm.Tokens, found {type(tokens).__name__}")
    f, t = tokens.features, tokens.times
    if f.ndim != 2 or f.shape[1] != d_model:
        raise _fail(what, f"token features must be [n, {d_model}], found {tuple(f.shape)}")
    if tuple(t.shape) != (f.shape[0], 2):
        raise _fail(what, f"token times must be [{f.shape[0]}, 2], found {tuple(t.shape)}")
    _check_finite(what, "token features", f)
    _check_finite(what, "token times", t)
    if not bool((t[:, 0] <= t[:, 1]).all()):
        raise _fail(what, "a token's start time is after its end time")
    if duration is not None and len(tokens) and (t.min() < -1e-6 or t.max() > duration + 1e-5):
        raise _fail(
            what,
            f"token times span [{float(t.min()):.4f}, {float(t.max()):.4f}] s, outside the "
            f"input's [0, {duration:.4f}] s",
        )


def check_modality(
    encoder_cls: type[ModalityEncoder],
    config: PluginConfig | None = None,
    *,
    d_model: int = 32,
    name: str | None = None,
) -> None:
    """Check a modality encoder class against the :class:`~neurofm.ModalityEncoder` contract.

    Args:
        encoder_cls: the encoder class.
        config: the config to build with (default: ``encoder_cls.Config()``).
        d_model: token width to build with.
        name: registered name (default: looked up in the registry; the tag check is skipped if the
            class is not registered).
    """
    what = f"modality plugin {_describe(encoder_cls)}"
    if not (isinstance(encoder_cls, type) and issubclass(encoder_cls, ModalityEncoder)):
        raise _fail(what, "must be a subclass of neurofm.ModalityEncoder")
    config = check_config(
        encoder_cls, config, name=name or _registered_name("modalities", encoder_cls)
    )
    violations = registry.modalities.class_attribute_violations(encoder_cls)
    if violations:  # the registry's own check, so the kit and registration agree
        attribute, found_and_allowed = violations[0]
        raise _fail(
            what, f"{found_and_allowed}. Set the class attribute {attribute} to one of them"
        )

    def build() -> ModalityEncoder:
        return encoder_cls(config, d_model=d_model)

    torch.manual_seed(0)
    encoder = build()
    generator = torch.Generator().manual_seed(0)
    n_samples = 24
    stream, units = _stream_input(encoder, n_samples, generator)
    duration = n_samples * stream.period_s
    tokens = encoder.tokenize(stream, units)
    _check_tokens(what, tokens, d_model, duration)
    if len(tokens) == 0:
        raise _fail(what, f"produced no tokens for {n_samples} valid samples")
    _check_gradients(what, encoder, tokens.features)

    empty, empty_units = _stream_input(encoder, 0, generator)
    with torch.no_grad():
        none = encoder.tokenize(empty, empty_units)
    _check_tokens(what, none, d_model, None)
    if len(none) != 0:
        raise _fail(what, f"zero-length input (absent data) gave {len(none)} tokens; expected 0")

    with torch.no_grad():
        partial = encoder.tokenize(_invalidate(stream), units)
    _check_tokens(what, partial, d_model, duration)

    if encoder.per_unit:
        _check_unit_offsets(what, encoder, stream, units, d_model)
    if not isinstance(encoder, PositionedStimulusEncoder):
        _check_tokenize_batch(what, encoder, stream, units, empty, empty_units)

    _check_penalty(what, encoder)
    _check_learning_rate_scales(what, encoder)
    _check_reload(what, build, encoder, lambda m: (m.tokenize(stream, units).features,))
    if isinstance(encoder, PositionedStimulusEncoder):
        _check_positioned(what, encoder, stream, empty, d_model)


def _check_tokenize_batch(
    what: str,
    encoder: ModalityEncoder,
    stream: StreamTensor,
    units: Tensor | None,
    empty: StreamTensor,
    empty_units: Tensor | None,
) -> None:
    """``tokenize_batch`` gives, sample by sample, what ``tokenize`` gives: samples of one and of
    different lengths, an empty one, invalid entries, and (per-unit) a subset of the units."""
    half = stream.n_samples // 2

    def part(s: StreamTensor, rows: slice, cols: slice | None = None) -> StreamTensor:
        values, valid = s.values[rows], s.valid[rows]
        offsets = s.unit_time_offset_s
        if cols is not None:
            values, valid = values[:, cols], valid[:, cols]
            offsets = None if offsets is None else offsets[cols]
        return StreamTensor(values, valid, s.times[rows], s.period_s, offsets)

    everything = slice(None)
    samples = [(stream, units), (empty, empty_units), (_invalidate(stream), units),
               (part(stream, slice(half, None)), units),
               (StreamTensor(stream.values.flip(0), stream.valid, stream.times, stream.period_s),
                None if units is None else -units)]  # fmt: skip
    if encoder.per_unit and units is not None and units.shape[0] > 1:
        cols = slice(0, units.shape[0] // 2)
        samples.append((part(stream, everything, cols), units[cols]))
    streams = [s for s, _ in samples]
    embeddings = [u for _, u in samples] if encoder.per_unit else None
    with torch.no_grad():
        batched = encoder.tokenize_batch(streams, embeddings)
        each = [encoder.tokenize(s, u) for s, u in samples]
    if not isinstance(batched, list) or len(batched) != len(samples):
        raise _fail(what, "tokenize_batch must return a list with one Tokens per stream")
    for one, alone in zip(batched, each, strict=True):
        _check_tokens(what, one, encoder.d_model, None)
        if not (
            one.features.shape == alone.features.shape
            and torch.allclose(one.features, alone.features, atol=1e-5)
            and torch.allclose(one.times, alone.times, atol=1e-6)
        ):
            raise _fail(what, "tokenize_batch must give, per stream, what tokenize gives")


def _check_unit_offsets(
    what: str, encoder: ModalityEncoder, stream: StreamTensor, units: Tensor | None, d_model: int
) -> None:
    """Per-unit time offsets within a period (the route of ``units/time_offset_s``)."""
    n_units = stream.values.shape[1]
    offsets = torch.linspace(0.0, 0.9 * stream.period_s, n_units)
    shifted = StreamTensor(stream.values, stream.valid, stream.times, stream.period_s, offsets)
    with torch.no_grad():
        tokens = encoder.tokenize(shifted, units)
    _check_tokens(what, tokens, d_model, (stream.n_samples + 1) * stream.period_s)
    if len(tokens) == 0:
        raise _fail(what, "produced no tokens for a stream with per-unit time offsets")


def _check_positioned(
    what: str,
    encoder: PositionedStimulusEncoder,
    stream: StreamTensor,
    empty: StreamTensor,
    d_model: int,
) -> None:
    channels = getattr(encoder, "feature_channels", None)
    if not isinstance(channels, int) or channels < 1:
        raise _fail(what, f"feature_channels must be set to a positive int, found {channels!r}")
    half = StreamTensor(
        stream.values[: stream.n_samples // 2], stream.valid[: stream.n_samples // 2],
        stream.times[: stream.n_samples // 2], stream.period_s,
    )  # fmt: skip
    encoder.eval()
    with torch.no_grad():
        outputs = encoder.encode_batch([stream, empty, half])
        alone = [encoder.encode_batch([s])[0] for s in (stream, half)]
    encoder.train()
    if not isinstance(outputs, list) or len(outputs) != 3:
        raise _fail(what, "encode_batch must return a list with one PositionedOutput per stream")
    for label, out, src in (("full", outputs[0], stream), ("empty", outputs[1], empty),
                            ("half", outputs[2], half)):  # fmt: skip
        if not isinstance(out, PositionedOutput) or not isinstance(out.features, FeatureMap):
            raise _fail(what, f"encode_batch gave {type(out).__name__} for the {label} sample")
        _check_tokens(what, out.tokens, d_model, None)
        v, t = out.features.values, out.features.times
        if v.ndim != 4 or v.shape[1] != channels or tuple(t.shape) != (v.shape[0],):
            raise _fail(
                what,
                f"feature map of the {label} sample is {tuple(v.shape)} with times "
                f"{tuple(t.shape)}; expected [T, {channels}, H, W] and [T]",
            )
        _check_finite(what, "feature map", v)
        if (
            src.n_samples
            and v.shape[0]
            and (
                t.min() < src.times.min() - 1e-6 or t.max() > src.times.max() + src.period_s + 1e-6
            )
        ):
            raise _fail(what, f"feature-map times of the {label} sample lie outside its stream's")
    if outputs[1].features.values.shape[0] or len(outputs[1].tokens):
        raise _fail(what, "an empty stream must give no tokens and a feature map of zero steps")
    for b, one in ((0, alone[0]), (2, alone[1])):
        both = outputs[b]
        if not (
            torch.allclose(both.features.values, one.features.values, atol=1e-5)
            and torch.allclose(both.tokens.features, one.tokens.features, atol=1e-5)
        ):
            raise _fail(what, "a sample's output in a batch differs from its output alone")


# -- readouts ---------------------------------------------------------------------------------
def _session_units(session_id: str, count: int, seed: int) -> SessionUnits:
    rng = np.random.default_rng(seed)
    position = rng.uniform(0, 500, size=(count, 3)).astype(np.float32)
    area = np.array(["V1"] * count)
    return SessionUnits(session_id, count, position, area)


def check_readout(
    readout_cls: type[Readout],
    config: PluginConfig | None = None,
    *,
    d_model: int = 32,
    params_per_unit: int = 2,
    name: str | None = None,
) -> None:
    """Check a readout class against the :class:`~neurofm.Readout` contract.

    Builds it for two sessions (one id containing a '.'), checks ``unit_embeddings`` ``[K, d]`` and
    ``project`` ``[Q, K, params_per_unit]``, empty unit and query sets, that ``add_sessions`` keeps
    existing parameters, that ``known_sessions`` lists the ids of the sessions it was built with
    and of those added, and the safetensors round trip.
    """
    what = f"readout plugin {_describe(readout_cls)}"
    if not (isinstance(readout_cls, type) and issubclass(readout_cls, Readout)):
        raise _fail(what, "must be a subclass of neurofm.Readout")
    config = check_config(
        readout_cls, config, name=name or _registered_name("readouts", readout_cls)
    )
    sessions = {"s-a": _session_units("s-a", 7, 0), "s.b": _session_units("s.b", 4, 1)}

    extra: dict[str, Any] = {}
    if issubclass(readout_cls, StimulusReadout):
        extra["feature_channels"] = 4

    def build() -> Readout:
        return readout_cls(
            config, d_model=d_model, sessions=sessions, params_per_unit=params_per_unit, **extra
        )

    torch.manual_seed(0)
    readout = build()
    _check_known_sessions(what, readout, ["s-a", "s.b"])
    units = torch.tensor([0, 3, 6])
    h = torch.randn(5, d_model)
    for sid, idx in (("s-a", units), ("s.b", torch.tensor([1, 2]))):
        emb = readout.unit_embeddings(sid, idx)
        if tuple(emb.shape) != (len(idx), d_model):
            raise _fail(what, f"unit_embeddings must be [{len(idx)}, {d_model}], found {emb.shape}")
        _check_finite(what, "unit embeddings", emb)
        raw = readout.project(h, sid, idx)
        if tuple(raw.shape) != (5, len(idx), params_per_unit):
            raise _fail(
                what, f"project must be [5, {len(idx)}, {params_per_unit}], found {raw.shape}"
            )
        _check_finite(what, "projected outputs", raw)
    out = readout.project(h, "s-a", units)
    _check_gradients(what, readout, out + readout.unit_embeddings("s-a", units).sum())

    with torch.no_grad():
        no_units = readout.project(h, "s-a", units[:0])
        no_queries = readout.project(h[:0], "s-a", units)
        no_emb = readout.unit_embeddings("s-a", units[:0])
    if tuple(no_units.shape) != (5, 0, params_per_unit) or tuple(no_queries.shape) != (
        0,
        3,
        params_per_unit,
    ):
        raise _fail(what, f"empty inputs gave {tuple(no_units.shape)} / {tuple(no_queries.shape)}")
    if tuple(no_emb.shape) != (0, d_model):
        raise _fail(what, f"no units gave unit embeddings of shape {tuple(no_emb.shape)}")

    with torch.no_grad():
        before = readout.project(h, "s-a", units).clone()
        readout.add_sessions({"s-new": _session_units("s-new", 3, 2)})
        after = readout.project(h, "s-a", units)
        new = readout.project(h, "s-new", torch.arange(3))
    if not torch.equal(before, after):
        raise _fail(what, "add_sessions changed the outputs of an existing session")
    _check_finite(what, "outputs for an added session", new)
    _check_known_sessions(what, readout, ["s-a", "s.b", "s-new"])

    _check_batched(what, readout, h, units)
    _check_penalty(what, readout)
    _check_learning_rate_scales(what, readout)
    readout = build()
    _check_reload(what, build, readout, lambda m: (m.project(h, "s.b", torch.tensor([0, 3])),))
    if isinstance(readout, StimulusReadout):
        _check_stimulus_readout(what, readout, h, units, params_per_unit)


def _check_known_sessions(what: str, readout: Readout, expected: list[str]) -> None:
    found = readout.known_sessions()
    if sorted(found) != sorted(expected):
        raise _fail(
            what, f"known_sessions must list the session ids {expected} (those it was built "
            f"with and those added), found {found}"
        )  # fmt: skip


def _same(one: list, each: list) -> bool:
    return len(one) == len(each) and all(
        tuple(a.shape) == tuple(b.shape) and torch.allclose(a, b, atol=1e-5)
        for a, b in zip(one, each, strict=True)
    )


def _check_batched(what: str, readout: Readout, h: Tensor, units: Tensor) -> None:
    """The batched calls give, for every request, what the one-request calls give."""
    requests = [("s-a", units), ("s.b", torch.tensor([1, 2])), ("s-a", units[:1]),
                ("s.b", units[:0])]  # fmt: skip
    queries = [ReadoutQuery(h, "s-a", units), ReadoutQuery(h[:3], "s.b", torch.tensor([3, 0])),
               ReadoutQuery(h[:2], "s-a", units[1:]), ReadoutQuery(h, "s-a", units[:0])]  # fmt: skip
    readout.eval()
    with torch.no_grad():
        embeddings = readout.unit_embeddings_batch(requests)
        each_embedding = [readout.unit_embeddings(sid, u) for sid, u in requests]
        projected = readout.project_batch(queries)
        each_projected = [readout.project(q.h, q.session_id, q.units) for q in queries]
    readout.train()
    if not _same(list(embeddings), each_embedding):
        raise _fail(
            what, "unit_embeddings_batch must give, per request, what unit_embeddings gives"
        )
    if not _same(list(projected), each_projected):
        raise _fail(what, "project_batch must give, per query, what project gives")


def _check_stimulus_readout(
    what: str, readout: StimulusReadout, h: Tensor, units: Tensor, p: int
) -> None:
    generator = torch.Generator().manual_seed(1)
    times = torch.arange(h.shape[0], dtype=torch.float32) / 10.0
    values = torch.randn(8, readout.feature_channels, 5, 7, generator=generator)
    values.requires_grad_(True)
    fmap = FeatureMap(values, torch.arange(8, dtype=torch.float32) / 20.0, 1 / 20.0)
    eye = torch.randn(8, 2, generator=generator)
    readout.eval()
    with torch.no_grad():
        plain = readout.project(h, "s-a", units)
        none = readout.project_stimulus(h, "s-a", units, times, [])
    if not torch.allclose(plain, none, atol=1e-6):
        raise _fail(what, "project_stimulus with no stimulus view must equal project")
    for label, views in (("a view", [StimulusView(fmap)]),
                         ("a view with an eye position", [StimulusView(fmap, eye)]),
                         ("two views", [StimulusView(fmap), StimulusView(fmap, eye)])):  # fmt: skip
        raw = readout.project_stimulus(h, "s-a", units, times, views)
        if tuple(raw.shape) != (h.shape[0], len(units), p):
            raise _fail(
                what, f"project_stimulus with {label} gave {tuple(raw.shape)}, expected "
                f"[{h.shape[0]}, {len(units)}, {p}]",
            )  # fmt: skip
        _check_finite(what, f"outputs with {label}", raw)
    values.grad = None
    raw.sum().backward()
    if values.grad is None or not bool(values.grad.abs().sum() > 0):
        raise _fail(what, "project_stimulus outputs do not depend on the feature map")
    if readout.unit_read_times:
        _check_unit_read_times(what, readout, h, units, times, [StimulusView(fmap, eye)], p)
    other = FeatureMap(values.detach().flip(0), fmap.times, fmap.period_s)
    queries = [ReadoutQuery(h, "s-a", units, times, [StimulusView(fmap, eye)]),
               ReadoutQuery(h[:3], "s.b", units[:2] % 4, times[:3], []),
               ReadoutQuery(h, "s-a", units[1:], times, [StimulusView(other, eye)]),
               ReadoutQuery(h[:4], "s.b", units[:1], times[:4], [StimulusView(other)]),
               ReadoutQuery(h, "s-a", units, times, [StimulusView(fmap), StimulusView(other)])]  # fmt: skip
    with torch.no_grad():
        batched = readout.project_stimulus_batch(queries)
        each = [readout.project_stimulus(q.h, q.session_id, q.units, q.times, q.stimulus)
                for q in queries]  # fmt: skip
        empty = readout.project_stimulus(h[:0], "s-a", units, times[:0], [StimulusView(fmap)])
    if not _same(list(batched), each):
        raise _fail(
            what, "project_stimulus_batch must give, per query, what project_stimulus gives"
        )
    if tuple(empty.shape) != (0, len(units), p):
        raise _fail(what, f"no queries gave {tuple(empty.shape)}")
    readout.train()


def _check_unit_read_times(
    what: str,
    readout: StimulusReadout,
    h: Tensor,
    units: Tensor,
    times: Tensor,
    views: list[StimulusView],
    p: int,
) -> None:
    """``unit_read_times``: per-unit read times ``[Q, K]``; repeated query times equal ``[Q]``."""
    k = len(units)
    with torch.no_grad():
        plain = readout.project_stimulus(h, "s-a", units, times, views)
        repeated = readout.project_stimulus(h, "s-a", units, times[:, None].expand(-1, k), views)
        shifted = times[:, None] + torch.linspace(0.0, 0.2, k)[None, :]
        own = readout.project_stimulus(h, "s-a", units, shifted, views)
    if not torch.allclose(plain, repeated, atol=1e-6):
        raise _fail(
            what, "project_stimulus with the query times repeated per unit [Q, K] must equal "
            "project_stimulus with the query times [Q] (unit_read_times is set)",
        )  # fmt: skip
    if tuple(own.shape) != (h.shape[0], k, p):
        raise _fail(
            what, f"project_stimulus with per-unit read times [{h.shape[0]}, {k}] gave "
            f"{tuple(own.shape)}, expected [{h.shape[0]}, {k}, {p}]",
        )  # fmt: skip
    _check_finite(what, "outputs at per-unit read times", own)


# -- heads ------------------------------------------------------------------------------------
def check_head(
    head_cls: type[Head],
    config: PluginConfig | None = None,
    *,
    d_model: int = 32,
    channels: int = 3,
    name: str | None = None,
) -> None:
    """Check a head class against the :class:`~neurofm.Head` contract.

    As a channel-stream head: ``project`` ``[Q, channels, p]``, ``predict`` ``[Q, channels]``, a finite
    ``loss`` whose count equals the number of valid entries and which ignores invalid entries
    (whatever their value), gradients, empty batches and the safetensors round trip. As a per-unit
    head (``channels=None``): the same on raw outputs given by a readout. Targets are >= 0 (spike
    counts / calcium and z-scored behaviour both allow that). For both, ``metric_names`` names
    only metrics evaluation knows for that kind of stream
    (:func:`neurofm.core.evaluation.metric_names.known_metric_names`).
    """
    what = f"head plugin {_describe(head_cls)}"
    if not (isinstance(head_cls, type) and issubclass(head_cls, Head)):
        raise _fail(what, "must be a subclass of neurofm.Head")
    config = check_config(head_cls, config, name=name or _registered_name("heads", head_cls))

    def build() -> Head:
        return head_cls(config, d_model=d_model, channels=channels)

    torch.manual_seed(0)
    head = build()
    p = head.params_per_channel
    q = 6
    h = torch.randn(q, d_model)
    raw = head.project(h)
    if tuple(raw.shape) != (q, channels, p):
        raise _fail(what, f"project must give [{q}, {channels}, {p}], found {tuple(raw.shape)}")
    pred = head.predict(raw)
    if tuple(pred.shape) != (q, channels):
        raise _fail(what, f"predict must give [{q}, {channels}], found {tuple(pred.shape)}")
    _check_finite(what, "predictions", pred)

    target = torch.rand(q, channels) * 2
    valid = torch.ones(q, channels, dtype=torch.bool)
    valid[::2, 0] = False
    total, count = head.loss(raw, target, valid)
    _check_finite(what, "loss", total)
    if int(count) != int(valid.sum()):
        raise _fail(what, f"loss counted {int(count)} entries; {int(valid.sum())} are valid")
    _check_gradients(what, head, total.reshape(1))
    with torch.no_grad():
        garbage = torch.where(valid, target, torch.full_like(target, 1e4))
        a, _ = head.loss(raw, torch.where(valid, target, 0.0), valid)
        b, _ = head.loss(raw, garbage, valid)
    _check_finite(what, "loss with invalid entries", b)
    if not math.isclose(float(a), float(b), rel_tol=1e-5, abs_tol=1e-6):
        raise _fail(what, "the loss depends on target values marked invalid")
    _check_loss_terms(what, head, raw.detach(), target, garbage, valid)

    with torch.no_grad():
        empty_raw = head.project(h[:0])
        empty_total, empty_count = head.loss(
            empty_raw, target[:0], torch.zeros(0, channels, dtype=torch.bool)
        )
    if tuple(empty_raw.shape) != (0, channels, p) or int(empty_count) != 0:
        raise _fail(what, f"an empty batch gave raw {tuple(empty_raw.shape)}, count {empty_count}")
    _check_finite(what, "loss of an empty batch", empty_total)
    _check_penalty(what, head)
    _check_learning_rate_scales(what, head)
    _check_metric_names(head, per_unit=False)

    per_unit = head_cls(config, d_model=d_model, channels=None)
    _check_metric_names(per_unit, per_unit=True)
    unit_raw = torch.randn(q, 5, per_unit.params_per_channel, requires_grad=True)
    unit_target = torch.rand(q, 5) * 2
    total, count = per_unit.loss(unit_raw, unit_target, torch.ones(q, 5, dtype=torch.bool))
    _check_finite(what, "per-unit loss", total)
    total.backward()
    _check_finite(what, "gradient of the per-unit loss", unit_raw.grad)
    if tuple(per_unit.predict(unit_raw).shape) != (q, 5):
        raise _fail(what, "per-unit predict must give [Q, K]")

    _check_reload(what, build, head, lambda m: (m.project(h), m.predict(m.project(h))))


def _check_loss_terms(
    what: str, head: Head, raw: Tensor, target: Tensor, garbage: Tensor, valid: Tensor
) -> None:
    """A head's optional per-entry losses: ``[Q, C]``, 0 where not valid (whatever the target
    there), summing to :meth:`Head.loss`, also with the entries of several blocks side by side
    (``Q = 1``), as the model passes them."""
    with torch.no_grad():
        terms = head.loss_terms(raw, garbage, valid)
        if terms is None:
            return
        if tuple(terms.shape) != tuple(target.shape):
            raise _fail(
                what, f"loss_terms must give {list(target.shape)}, found {tuple(terms.shape)}"
            )
        _check_finite(what, "loss_terms", terms)
        if bool((terms[~valid] != 0).any()):
            raise _fail(what, "loss_terms must be 0 at entries that are not valid")
        total, _ = head.loss(raw, target, valid)
        flat = head.loss_terms(raw.reshape(1, -1, raw.shape[-1]), target.reshape(1, -1),
                               valid.reshape(1, -1))  # fmt: skip
    for got, shape in ((terms.sum(), "[Q, C]"), (flat.sum(), "[1, Q * C]")):
        if not math.isclose(float(got), float(total), rel_tol=1e-5, abs_tol=1e-6):
            raise _fail(
                what,
                f"loss_terms on {shape} entries sum to {float(got):.6g}, but loss gives "
                f"{float(total):.6g}; they must agree",
            )


def _check_metric_names(head: Head, *, per_unit: bool) -> None:
    """``head.metric_names(per_unit)`` names only metrics evaluation knows for the stream kind.
    The message is the one evaluation refuses the head with (it names the head)."""
    try:
        head_metric_names(head, per_unit=per_unit)
    except InvalidPluginError as error:
        raise AssertionError(str(error)) from error


def check_source(
    source_cls: type, config: PluginConfig | None = None, *, name: str | None = None
) -> None:
    """Check a data importer: it implements :class:`neurofm.core.data.sources.Source` and its config
    round-trips; it is built from its config."""
    from neurofm.core.data.sources import Source

    what = f"source {name or source_cls.__name__}"
    if not (isinstance(source_cls, type) and issubclass(source_cls, Source)):
        raise _fail(
            what, f"expected a subclass of neurofm.core.data.sources.Source, found {source_cls!r}"
        )
    config = check_config(source_cls, config, name=name)
    source = source_cls(config)
    if source.config != config:
        raise _fail(what, "the source does not keep the config it was built with as `config`")


_CHECKS: dict[str, Callable[..., None]] = {
    "modalities": check_modality,
    "readouts": check_readout,
    "heads": check_head,
    "sources": check_source,
}


def check_plugin(kind: str, name: str, config: PluginConfig | None = None, **kwargs: Any) -> None:
    """Run the check of ``kind`` on the plugin registered as ``name``, found through the registry
    exactly as a model config would find it.

    ``"modalities"``, ``"readouts"`` and ``"heads"`` get their full checks; a kind without a dedicated
    check (e.g. ``"sources"``, data importers) gets the interface and config checks.
    """
    reg = registry.get_registry(kind)
    plugin_cls = reg.get(name)
    check = _CHECKS.get(kind)
    if check is not None:
        check(plugin_cls, config, name=name, **kwargs)
        return
    interface = reg._interface()
    if not (isinstance(plugin_cls, type) and issubclass(plugin_cls, interface)):
        raise _fail(f"{reg.kind} plugin {name!r}", f"must be a subclass of {interface.__name__}")
    check_config(plugin_cls, config, name=name)
