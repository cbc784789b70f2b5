"""The model's forward pass asks its readout once per batch (identities, predictions); the batched
calls give what one call per request gives (losses, predictions and gradients)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.core.data import open_dataset
from neurofm.core.data.windows import WindowSampler, load_window
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config
from neurofm.core.tokens.tasks import get_task

TASKS = ["responses_from_stimulus_behaviour", "forecast", "population_8", "population_half",
         "behaviour_from_responses", "causal_50_stimulus_behaviour", "responses_from_stimulus",
         "forecast_with_stimulus_behaviour"]  # fmt: skip


def _run(model, batch, tasks):
    model.zero_grad()
    out = model(batch, tasks, np.random.default_rng(3))
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("stimulus_path", [True, False])
def test_one_readout_call_per_batch_matches_one_per_sample(
    tiny_data: Path, monkeypatch: pytest.MonkeyPatch, stimulus_path: bool
) -> None:
    sessions = open_dataset(tiny_data)
    torch.manual_seed(0)
    model = build_model(
        default_model_config("tiny", frame_size=(18, 32), stimulus_path=stimulus_path), sessions
    ).eval()  # eval: batch norm and dropout do not depend on the rest of the batch
    sampler = WindowSampler(sessions, 1.0, seed=1)
    draws = sampler.draw(2 * len(TASKS))
    batch = [load_window(sessions[i], t0, 1.0, model.normalization()) for i, t0 in draws]
    assert len({w.session_id for w in batch}) > 1  # several sessions in one batch
    tasks = [get_task(name) for name in TASKS * 2]
    readout = type(model.readout)
    names = ["unit_embeddings_batch", "project_batch"]
    if stimulus_path:
        names.append("project_stimulus_batch")
    batched = {name: getattr(readout, name) for name in names}
    calls = []

    def counted(name):
        def call(self, requests):
            calls.append((name, len(requests)))
            return batched[name](self, requests)

        return call

    def one_at_a_time(name):
        return lambda self, requests: [x for r in requests for x in batched[name](self, [r])]

    for name in names:
        monkeypatch.setattr(readout, name, counted(name))
    out, grads = _run(model, batch, tasks)
    blocks = sum(t.units is not None for t in out.targets)
    final = "project_stimulus_batch" if stimulus_path else "project_batch"
    assert (final, blocks) in calls and [c for c in calls if c[0] == final] == [(final, blocks)]
    for name in names:  # the same model answering one request at a time
        monkeypatch.setattr(readout, name, one_at_a_time(name))
    each, each_grads = _run(model, batch, tasks)
    assert abs(out.loss.item() - each.loss.item()) <= 1e-6 * max(1.0, abs(each.loss.item()))
    assert len(out.targets) == len(each.targets) > len(batch)
    for a, b in zip(out.targets, each.targets, strict=True):
        assert (a.sample, a.stream) == (b.sample, b.stream)
        torch.testing.assert_close(a.raw, b.raw, rtol=1e-5, atol=1e-6)
    assert grads.keys() == each_grads.keys()
    for name, g in grads.items():
        scale = each_grads[name].abs().max().clamp(min=1e-12)
        assert (g - each_grads[name]).abs().max() <= 1e-4 * scale, name


@pytest.mark.parametrize("stimulus_path", [True, False])
def test_one_loss_call_per_head_matches_one_per_block(
    tiny_data: Path, monkeypatch: pytest.MonkeyPatch, stimulus_path: bool
) -> None:
    """Heads that give per-entry losses (``Head.loss_terms``, the built-ins) are asked once per
    batch for all their blocks; a head without them (a third-party head written against
    ``loss`` alone) once per block. Both give the same losses, per-target sums and counts,
    predictions and gradients; ``ModelOutput.target_losses`` is each target's mean loss."""
    sessions = open_dataset(tiny_data)
    torch.manual_seed(0)
    model = build_model(
        default_model_config("tiny", frame_size=(18, 32), stimulus_path=stimulus_path), sessions
    ).eval()
    sampler = WindowSampler(sessions, 1.0, seed=2)
    batch = [load_window(sessions[i], t0, 1.0, model.normalization())
             for i, t0 in sampler.draw(2 * len(TASKS))]  # fmt: skip
    tasks = [get_task(name) for name in TASKS * 2]
    head_types = {type(h) for h in model.heads.values()}
    originals = {cls: cls.loss_terms for cls in head_types}
    calls = []
    for cls, terms in originals.items():

        def counted(self, raw, target, valid, terms=terms):
            calls.append(type(self).__name__)
            return terms(self, raw, target, valid)

        monkeypatch.setattr(cls, "loss_terms", counted)
    out, grads = _run(model, batch, tasks)
    streams = {t.stream for t in out.targets}
    assert len(calls) == len(streams) < len(out.targets)  # one call per head, not per block
    torch.testing.assert_close(
        out.target_losses, torch.stack([t.mean_loss() for t in out.targets]), rtol=0, atol=0
    )
    for cls, terms in originals.items():  # heads without per-entry losses: Head.loss per block
        monkeypatch.setattr(cls, "loss_terms", lambda self, raw, target, valid: None)
        monkeypatch.setattr(
            cls, "loss", lambda self, r, t, v, terms=terms: (terms(self, r, t, v).sum(), v.sum())
        )
    each, each_grads = _run(model, batch, tasks)
    assert abs(out.loss.item() - each.loss.item()) <= 1e-6 * max(1.0, abs(each.loss.item()))
    for a, b in zip(out.targets, each.targets, strict=True):
        assert (a.sample, a.stream) == (b.sample, b.stream)
        assert int(a.count) == int(b.count)
        torch.testing.assert_close(a.loss_sum, b.loss_sum, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.raw, b.raw, rtol=0, atol=0)
    assert grads.keys() == each_grads.keys()
    for name, g in grads.items():
        scale = each_grads[name].abs().max().clamp(min=1e-12)
        assert (g - each_grads[name]).abs().max() <= 1e-4 * scale, name
