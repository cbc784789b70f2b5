"""Attention backends: agreement with the reference, zero-length samples, locality, selection."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neurofm.core.backbone.attention import (
    BackendUnavailableError,
    SdpaBackend,
    get_backend,
    time_local_mask,
    xformers_available,
)

HEADS, HEAD_DIM = 2, 8
CPU_BACKENDS = ["reference", "sdpa"]


def _times(n: int, gen: torch.Generator) -> torch.Tensor:
    start = torch.rand(n, generator=gen) * 2.0
    return torch.stack((start, start + 0.05 + torch.rand(n, generator=gen) * 0.5), dim=1)


def _problem(q_lens, kv_lens, seed=0):
    gen = torch.Generator().manual_seed(seed)
    tq, tk = sum(q_lens), sum(kv_lens)
    q = torch.randn(tq, HEADS, HEAD_DIM, generator=gen)
    k = torch.randn(tk, HEADS, HEAD_DIM, generator=gen)
    v = torch.randn(tk, HEADS, HEAD_DIM, generator=gen)
    grad = torch.randn(tq, HEADS, HEAD_DIM, generator=gen)
    return q, k, v, _times(tq, gen), _times(tk, gen), grad


def _run(name, q, k, v, q_lens, kv_lens, q_times, kv_times, local, grad):
    q, k, v = (x.clone().requires_grad_(True) for x in (q, k, v))
    out = get_backend(name)(
        q, k, v, q_lens, kv_lens, q_times=q_times, kv_times=kv_times, local=local
    )
    connected = 0.0 * (q.sum() + k.sum() + v.sum())  # gradients exist even if no query has keys
    ((out * grad).sum() + connected).backward()
    return out.detach(), q.grad, k.grad, v.grad


def _assert_backends_agree(q_lens, kv_lens, local, seed=0):
    q, k, v, q_times, kv_times, grad = _problem(q_lens, kv_lens, seed)
    args = (q, k, v, q_lens, kv_lens, q_times, kv_times, local, grad)
    expected = _run("reference", *args)
    for t in expected:
        assert torch.isfinite(t).all()
    for name in [*CPU_BACKENDS, "auto"]:
        for got, want in zip(_run(name, *args), expected, strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


PACKINGS = [
    ((5,), (7,)),  # one sample
    ((4, 4, 4), (6, 6, 6)),  # uniform: reshape path
    ((3, 0, 5, 3), (4, 2, 0, 4)),  # zero-length queries and keys, repeated lengths grouped
    ((0, 0), (3, 1)),  # no queries at all
    ((2, 6, 1), (1, 9, 3)),  # all different
]


@pytest.mark.parametrize("local", [False, True])
@pytest.mark.parametrize(("q_lens", "kv_lens"), PACKINGS)
def test_backends_agree_forward_and_backward(q_lens, kv_lens, local) -> None:
    _assert_backends_agree(q_lens, kv_lens, local)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lens=st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=6),
    local=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_backends_agree_on_random_packings(lens, local, seed) -> None:
    q_lens, kv_lens = (tuple(p[j] for p in lens) for j in (0, 1))
    _assert_backends_agree(q_lens, kv_lens, local, seed)


def test_queries_without_keys_get_zeros() -> None:
    q, k, v, _, kv_times, _ = _problem((3, 2), (0, 4))
    for name in CPU_BACKENDS:
        out = get_backend(name)(q, k, v, (3, 2), (0, 4))
        assert torch.isfinite(out).all()
        assert (out[:3] == 0).all()
    # time-local: a query whose span overlaps no key also gets zeros
    far = torch.tensor([[50.0, 51.0]] * 3 + [[0.0, 10.0]] * 2)
    for name in CPU_BACKENDS:
        out = get_backend(name)(q, k, v, (3, 2), (0, 4), q_times=far, kv_times=kv_times, local=True)
        assert (out[:3] == 0).all() and torch.isfinite(out).all()


def test_attention_never_crosses_samples() -> None:
    q_lens, kv_lens = (3, 4, 2), (5, 3, 6)
    q, k, v, *_ = _problem(q_lens, kv_lens)
    for name in CPU_BACKENDS:
        base = get_backend(name)(q, k, v, q_lens, kv_lens)
        k2, v2 = k.clone(), v.clone()
        k2[5:8] += 10.0  # keys/values of sample 1 only
        v2[5:8] -= 3.0
        out = get_backend(name)(q, k2, v2, q_lens, kv_lens)
        torch.testing.assert_close(out[:3], base[:3], atol=0, rtol=0)
        torch.testing.assert_close(out[7:], base[7:], atol=0, rtol=0)
        assert not torch.allclose(out[3:7], base[3:7])


def test_time_local_mask_is_half_open_overlap() -> None:
    q_times = torch.tensor([[0.0, 1.0]])
    kv_times = torch.tensor([[1.0, 2.0], [0.5, 0.6], [-1.0, 0.0], [-1.0, 0.01], [0.99, 5.0]])
    assert time_local_mask(q_times, kv_times).tolist() == [[False, True, False, True, True]]


def _block_diagonal(q_lens, kv_lens) -> torch.Tensor:
    """Dense allowed-matrix of a packing; the block structure the sdpa path computes group-wise."""
    q_id = torch.repeat_interleave(torch.arange(len(q_lens)), torch.tensor(q_lens))
    kv_id = torch.repeat_interleave(torch.arange(len(kv_lens)), torch.tensor(kv_lens))
    return q_id[:, None] == kv_id[None, :]


def test_sdpa_path_equals_dense_block_mask() -> None:
    q_lens, kv_lens = (3, 5, 3, 1), (4, 2, 4, 6)
    q, k, v, *_ = _problem(q_lens, kv_lens)
    mask = _block_diagonal(q_lens, kv_lens)
    dense = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=mask
    ).transpose(0, 1)
    torch.testing.assert_close(SdpaBackend()(q, k, v, q_lens, kv_lens), dense, atol=1e-5, rtol=1e-5)


def test_xformers_block_diagonal_mask_matches_our_blocks() -> None:
    pytest.importorskip("xformers")
    from xformers.ops.fmha.attn_bias import BlockDiagonalMask

    q_lens, kv_lens = [3, 5, 1, 4], [4, 2, 6, 4]
    bias = BlockDiagonalMask.from_seqlens(q_seqlen=q_lens, kv_seqlen=kv_lens)
    dense = bias.materialize((sum(q_lens), sum(kv_lens)), dtype=torch.float32, device="cpu")
    assert torch.equal(dense == 0, _block_diagonal(q_lens, kv_lens))
    assert torch.isinf(dense[dense != 0]).all()


def test_backend_selection_on_cpu() -> None:
    assert get_backend("auto", device="cpu").name == "sdpa"
    assert get_backend("reference").name == "reference"
    assert get_backend("auto").name == "auto"
    with pytest.raises(ValueError, match="known backends: auto, sdpa, reference, xformers"):
        get_backend("flash")
    with pytest.raises(BackendUnavailableError, match=r"neurofm\[cuda\]|attention=\"sdpa\""):
        get_backend("xformers", device="cpu")
    if not xformers_available():
        with pytest.raises(BackendUnavailableError, match=r"pip install neurofm\[cuda\]"):
            get_backend("xformers")


def test_invalid_shapes_are_explained() -> None:
    q, k, v, *_ = _problem((3,), (4,))
    backend = get_backend("sdpa")
    with pytest.raises(ValueError, match="one length per sample"):
        backend(q, k, v, (2,), (4,))
    with pytest.raises(ValueError, match="local=True needs"):
        backend(q, k, v, (3,), (4,), local=True)
