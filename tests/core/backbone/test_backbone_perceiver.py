"""PerceiverIO: packing equivalence, isolation of samples, empty samples, backends, compile."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurofm.core.backbone.packing import PackedSequence
from neurofm.core.backbone.perceiver import PerceiverIO
from neurofm.core.backbone.presets import BackboneConfig, tiny

D = tiny().d_model


def _tokens(n: int, duration: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    start = torch.rand(n, generator=gen) * duration
    end = torch.minimum(start + 0.1, torch.tensor(duration))
    return torch.randn(n, D, generator=gen), torch.stack((start, end), dim=1)


def _batch(in_lens, q_lens, durations, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ins = [_tokens(n, d, gen) for n, d in zip(in_lens, durations, strict=True)]
    qs = [_tokens(n, d, gen) for n, d in zip(q_lens, durations, strict=True)]
    pack = PackedSequence.pack
    return pack(*zip(*ins, strict=True)), pack(*zip(*qs, strict=True)), torch.tensor(durations)


def _model(**overrides) -> PerceiverIO:
    torch.manual_seed(0)
    config = tiny().model_copy(update={"n_layers": 2, **overrides})
    return PerceiverIO(BackboneConfig.model_validate(config.model_dump())).eval()


def _assert_packed_equals_separate(model, in_lens, q_lens, durations, seed=0) -> None:
    inputs, queries, dur = _batch(in_lens, q_lens, durations, seed)
    with torch.no_grad():
        packed = model(inputs, queries, model.latent_times(dur)).split(list(q_lens))
        for i, (x, t, qx, qt) in enumerate(
            zip(
                inputs.split(),
                inputs.split_times(),
                queries.split(),
                queries.split_times(),
                strict=True,
            )
        ):
            alone = model(
                PackedSequence.pack([x], [t]),
                PackedSequence.pack([qx], [qt]),
                model.latent_times(dur[i : i + 1]),
            )
            assert torch.isfinite(alone).all()
            torch.testing.assert_close(packed[i], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"local_every": 2},
        {"decoder_reads_inputs": True},
        {"decoder_reads_inputs": True, "decoder_lookback_s": 0.5},
    ],
)
def test_packed_batch_equals_each_sample_alone(overrides) -> None:
    model = _model(**overrides)
    _assert_packed_equals_separate(model, (7, 0, 12, 7), (3, 2, 5, 3), (2.0, 1.0, 2.0, 0.5))


_MODEL_LOCAL = _model(local_every=2)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sizes=st.lists(
        st.tuples(st.integers(0, 20), st.integers(0, 6), st.floats(0.1, 10.0)),
        min_size=1,
        max_size=4,
    ),
    seed=st.integers(0, 1000),
)
def test_packing_property_random_sessions(sizes, seed) -> None:
    in_lens, q_lens, durations = (tuple(s[j] for s in sizes) for j in range(3))
    _assert_packed_equals_separate(_MODEL_LOCAL, in_lens, q_lens, durations, seed)


def test_perturbing_one_sample_leaves_others_unchanged() -> None:
    model = _model(local_every=2)
    inputs, queries, dur = _batch((5, 6), (4, 3), (2.0, 2.0))
    lat = model.latent_times(dur)
    with torch.no_grad():
        base = model(inputs, queries, lat)
        x = inputs.x.clone()
        x[5:] += torch.randn_like(x[5:])
        q = queries.x.clone()
        q[4:] += 1.0
        out = model(inputs.with_x(x), queries.with_x(q), lat)
    torch.testing.assert_close(out[:4], base[:4], atol=0, rtol=0)
    assert not torch.allclose(out[4:], base[4:])


@pytest.mark.parametrize("lookback", [None, 0.5])
def test_decoder_reads_the_inputs_within_its_lookback(lookback) -> None:
    gen = torch.Generator().manual_seed(1)
    spans = torch.tensor([[0.0, 0.1], [0.9, 1.0], [1.8, 1.9]])
    inputs = PackedSequence.pack([torch.randn(3, D, generator=gen)], [spans])
    query_spans = torch.tensor([[0.3, 0.4], [1.5, 1.6]])
    queries = PackedSequence.pack([torch.randn(2, D, generator=gen)], [query_spans])
    x = inputs.x.clone()
    x[0] += torch.randn(D, generator=gen)  # the token at [0, 0.1) s
    outs = {}
    for reads, trained in ((False, False), (True, False), (True, True)):
        model = _model(decoder_reads_inputs=reads, decoder_lookback_s=lookback)
        with torch.no_grad():  # latents that ignore the inputs: only the decoder can read them
            model.encoder.attn.out_proj.weight.zero_()
            model.encoder.attn.out_proj.bias.zero_()
            if trained:  # the block's residual branches start at zero; give them weights
                for layer in (model.input_decoder.attn.out_proj, model.input_decoder.mlp.net[2]):
                    layer.weight.normal_(generator=gen)
            lat = model.latent_times(torch.tensor([2.0]))
            outs[reads, trained] = (
                model(inputs, queries, lat),
                model(inputs.with_x(x), queries, lat),
            )
    for untrained in ((False, False), (True, False)):  # a new block is the identity
        base, moved = outs[untrained]
        torch.testing.assert_close(moved, base, atol=0, rtol=0)
    base, moved = outs[True, True]
    assert not torch.allclose(moved[0], base[0])  # 0.3 s: the token is within 0.5 s before it
    if lookback is None:
        assert not torch.allclose(moved[1], base[1])
    else:  # 1.5 s: the token is 1.4 s earlier, beyond the lookback
        torch.testing.assert_close(moved[1], base[1], atol=0, rtol=0)


def test_sample_without_inputs_is_finite_and_trains() -> None:
    model = _model().train()
    inputs, queries, dur = _batch((0, 4), (3, 2), (2.0, 2.0))
    out = model(inputs, queries, model.latent_times(dur))
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_backends_give_the_same_backbone_output() -> None:
    inputs, queries, dur = _batch((6, 0, 9), (2, 4, 3), (2.0, 2.0, 1.0))
    outs = []
    for name in ("reference", "sdpa", "auto"):
        model = _model(attention=name, local_every=2)
        with torch.no_grad():
            outs.append(model(inputs, queries, model.latent_times(dur)))
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], atol=1e-5, rtol=1e-4)


def test_latent_times_tile_the_window() -> None:
    model = _model()
    lat = model.latent_times(torch.tensor([2.0, 0.5]))
    assert lat.shape == (2, tiny().n_latents, 2)
    torch.testing.assert_close(lat[:, 0, 0], torch.zeros(2))
    torch.testing.assert_close(lat[:, -1, 1], torch.tensor([2.0, 0.5]))
    torch.testing.assert_close(lat[:, 1:, 0], lat[:, :-1, 1])


def test_wrong_shapes_are_explained() -> None:
    model = _model()
    inputs, queries, dur = _batch((3, 2), (1, 1), (1.0, 1.0))
    with pytest.raises(ValueError, match="latent_times"):
        model(inputs, queries, model.latent_times(dur[:1]))


@pytest.mark.slow  # about 15 s of compilation on 2 cores
def test_compiled_backbone_matches_eager() -> None:
    eager = _model()
    compiled = _model(compile=True)
    compiled.load_state_dict(eager.state_dict())
    inputs, queries, dur = _batch((5, 0, 3), (2, 2, 1), (1.0, 1.0, 1.0))
    with torch.no_grad():
        want = eager(inputs, queries, eager.latent_times(dur))
        try:
            got = compiled(inputs, queries, compiled.latent_times(dur))
        except Exception as err:  # inductor needs a working C++ toolchain
            pytest.skip(f"torch.compile does not run on this machine: {type(err).__name__}: {err}")
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
