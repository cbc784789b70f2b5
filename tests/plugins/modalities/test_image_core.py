"""The image encoder on the stimulus path: presentations laid onto steps, then the shared core."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neurofm.core.data import open_dataset
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig
from neurofm.core.data.windows import WindowSampler, load_window
from neurofm.core.interfaces import StreamTensor
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.model.presets import default_model_config
from neurofm.core.tokens.tasks import get_task
from neurofm.plugins.modalities.image_core import ImageCoreConfig, ImageCoreEncoder
from neurofm.testing import check_modality

CORE = {"channels": 4, "layers": 2, "spatial_kernels": (3, 3), "temporal_kernels": (3, 1)}


def _stream(
    onsets: list[float], valid: list[bool] | None = None, period_s: float = 0.2
) -> StreamTensor:
    k = len(onsets)
    values = torch.arange(1, k + 1, dtype=torch.float32).view(k, 1, 1).expand(k, 6, 8).clone()
    valid_t = torch.ones(k, 6, 8, dtype=torch.bool)
    if valid is not None:
        valid_t[~torch.tensor(valid)] = False
        values[~valid_t] = 0.0  # as the loader gives them
    return StreamTensor(values, valid_t, torch.tensor(onsets), period_s)


def _encoder(**changes) -> ImageCoreEncoder:
    config = ImageCoreConfig(height=6, width=8, core=CORE, token_rows=1, token_cols=2, **changes)
    return ImageCoreEncoder(config, d_model=16)


def test_presentations_become_steps_until_the_next_onset() -> None:
    stepped = _encoder(step_s=0.1).render(_stream([0.2, 0.5, 0.6, 0.8]))
    # the last presentation lasts the sampling period (0.2 s)
    assert torch.allclose(stepped.times, torch.arange(2, 10) / 10)
    assert stepped.values[:, 0, 0].tolist() == [1.0, 1.0, 1.0, 2.0, 3.0, 3.0, 4.0, 4.0]
    assert stepped.valid.all() and stepped.period_s == 0.1


def test_a_fixed_duration_leaves_mean_luminance_after_it() -> None:
    stepped = _encoder(step_s=0.1, duration_s=0.2).render(_stream([0.0, 0.5], [True, False]))
    assert stepped.values[:, 0, 0].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    # steps showing a missing presentation are invalid (and give no tokens)
    assert stepped.valid.tolist() == [True] * 5 + [False] * 2


def test_the_last_presentation_lasts_at_most_max_last_s() -> None:
    slow = _stream([0.0, 0.5], period_s=30.0)  # e.g. a rate estimated over long gaps
    assert _encoder(step_s=0.1).render(slow).times.shape == (25,)  # 5 + 2 s
    assert _encoder(step_s=0.1, max_last_s=0.3).render(slow).times.shape == (8,)


def test_conforms_and_gives_features_at_the_step_times() -> None:
    encoder = _encoder(step_s=0.1)
    check_modality(ImageCoreEncoder, encoder.config, d_model=16)
    out = encoder.encode_batch([_stream([0.2, 0.5, 0.6, 0.8]), _stream([])])
    assert out[0].features.values.shape == (8, 4, 3, 4)
    assert out[0].features.period_s == pytest.approx(0.1)
    assert out[1].features.values.shape[0] == 0 and out[1].tokens.features.shape[0] == 0


@pytest.fixture(scope="module")
def image_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sim = SimulationConfig.tiny().model_copy(update={"stimulus": "image"})
    return simulate_to_disk(tmp_path_factory.mktemp("images") / "data", sim, progress=False)


def test_retinotopic_readout_reads_flashed_images(image_data: Path) -> None:
    sessions = open_dataset(image_data)
    data = default_model_config("tiny", frame_size=(18, 32), stimulus_path=True).model_dump()
    movie = data["modalities"].pop("movie")
    data["modalities"]["image"] = {**movie, "type": "image_core", "step_s": 0.1}
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(data), sessions)
    assert model.reads_stimulus
    sampler = WindowSampler(sessions, 2.0, seed=0)
    batch = [load_window(sessions[i], t0, 2.0, model.normalization()) for i, t0 in sampler.draw(4)]
    out = model(batch, [get_task("responses_from_stimulus")] * len(batch))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    key = model.readout.parameter_key(batch[0].session_id)
    assert model.encoder("image").core.spatial[0].weight.grad.abs().sum() > 0
    assert model.readout.weights[key].grad.abs().sum() > 0
