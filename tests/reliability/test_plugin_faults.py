"""A third-party encoder, readout or head that returns outputs of the wrong shape is reported with its
stream, package and version, and neurofm and the other plugins keep working. Plugins that raise on import or claim
a taken name are covered in tests/test_registry.py::test_broken_third_party_plugins_are_isolated."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from reliability_helpers import write_small_session

from neurofm import registry
from neurofm.core.data import open_dataset
from neurofm.core.data.windows import load_window
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.tokens.tasks import PRESETS

PLUGIN = '''
from typing import Literal

import torch

from neurofm import Head, ModalityEncoder, PluginConfig, Readout, Tokens
from neurofm.plugins.readouts.neuron_embedding import NeuronEmbeddingConfig
from neurofm.plugins.readouts.neuron_embedding import NeuronEmbeddingReadout as _Embedding


class WrongShapeConfig(PluginConfig):
    type: Literal["wrongshape.running"] = "wrongshape.running"


class WrongShapeEncoder(ModalityEncoder):
    """Returns one feature too many per token."""

    Config = WrongShapeConfig
    role = "behaviour"

    def tokenize(self, stream, unit_embeddings=None):
        n = stream.values.shape[0]
        return Tokens(torch.zeros(n, self.d_model + 1), torch.zeros(n, 2))


class WrongShapeHeadConfig(PluginConfig):
    type: Literal["wrongshape.head"] = "wrongshape.head"


class WrongShapeHead(Head):
    """Predicts one channel too few."""

    Config = WrongShapeHeadConfig

    def project(self, h):
        return super().project(h)[:, :-1]

    def predict(self, raw):
        return raw[..., 0]

    def loss(self, raw, target, valid):
        return ((raw[..., 0] - target) ** 2).sum(), valid.sum()


class WrongShapeReadoutConfig(NeuronEmbeddingConfig):
    type: Literal["wrongshape.readout"] = "wrongshape.readout"


class WrongShapeReadout(Readout):
    """Delegates to the built-in embedding readout but drops the last unit's output."""

    Config = WrongShapeReadoutConfig

    def __init__(self, config, *, d_model, sessions, params_per_unit=1):
        super().__init__(config, d_model=d_model, sessions=sessions, params_per_unit=params_per_unit)
        inner = NeuronEmbeddingConfig(init_std=config.init_std)
        self.inner = _Embedding(inner, d_model=d_model, sessions=sessions, params_per_unit=params_per_unit)

    def unit_embeddings(self, session_id, units):
        return self.inner.unit_embeddings(session_id, units)

    def project(self, h, session_id, units):
        return self.inner.project(h, session_id, units)[:, :-1]

    def add_sessions(self, sessions):
        self.inner.add_sessions(sessions)

    def known_sessions(self):
        return self.inner.known_sessions()
'''
ENTRY_POINTS = """[neurofm.modalities]
wrongshape.running = neurofm_wrongshape:WrongShapeEncoder
wrongshape.unimportable = neurofm_wrongshape.unimportable:Encoder

[neurofm.heads]
wrongshape.head = neurofm_wrongshape:WrongShapeHead

[neurofm.readouts]
wrongshape.readout = neurofm_wrongshape:WrongShapeReadout
"""


@pytest.fixture
def wrong_shape_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An installed distribution ``neurofm-wrongshape 1.4.2`` (a folder with its dist-info on
    ``sys.path``) declaring a wrong-shape encoder and one that raises on import."""
    site = tmp_path / "site"
    package = site / "neurofm_wrongshape"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN)
    (package / "unimportable.py").write_text("raise RuntimeError('needs a GPU driver')\n")
    info = site / "neurofm_wrongshape-1.4.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: neurofm-wrongshape\nVersion: 1.4.2\n"
    )
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv(registry.AUTOLOAD_ENV, raising=False)
    for reg in registry.REGISTRIES.values():
        reg.reload()
    yield
    for name in [m for m in sys.modules if m.split(".")[0] == "neurofm_wrongshape"]:
        del sys.modules[name]
    for reg in registry.REGISTRIES.values():
        reg.reload()  # rediscovered lazily, after sys.path is restored


def _config(
    running: str, readout: str = "neuron_embedding", running_head: str | None = None
) -> ModelConfig:
    heads = {"calcium": {"type": "poisson"}}
    if running_head is not None:
        heads["running"] = {"type": running_head}
    return ModelConfig.model_validate({
        "backbone": {"d_model": 16, "n_heads": 2, "n_layers": 1, "n_latents": 4},
        "modalities": {"calcium": {"type": "calcium"}, "running": {"type": running}},
        "readout": {"type": readout},
        "heads": heads,
    })  # fmt: skip


def test_wrong_token_shapes_name_the_plugin_package_and_version(
    wrong_shape_package: None, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    sessions = open_dataset(write_small_session(tmp_path / "data").parent)
    sample = load_window(sessions[0], 0.0, 1.0, {"calcium": "scale", "running": "zscore"})
    task = PRESETS["responses_from_stimulus_behaviour"]

    model = build_model(_config("wrongshape.running"), sessions)
    with pytest.raises(
        ValueError,
        match=r"encoder for stream 'running' \(modality plugin 'wrongshape.running' from "
        r"neurofm-wrongshape 1\.4\.2\) returned features \(\d+, 17\) .*expected \[n, 16\]",
    ):
        model([sample], [task])

    # the unimportable sibling is reported with the same package; nothing else is affected
    (failed,) = [r for r in registry.modalities.records() if r.status == "failed"]
    assert (failed.name, failed.package, failed.version) == (
        "wrongshape.unimportable", "neurofm-wrongshape", "1.4.2"
    )  # fmt: skip
    assert "needs a GPU driver" in failed.error
    assert {"calcium", "running", "movie", "wrongshape.running"} <= set(registry.modalities.list())
    model = build_model(_config("running"), sessions)
    loss = model([sample], [task]).loss
    assert torch.isfinite(loss)
    loss.backward()


def test_wrong_readout_and_head_output_shapes_name_the_plugin_package_and_version(
    wrong_shape_package: None, tmp_path: Path
) -> None:
    torch.set_num_threads(1)
    sessions = open_dataset(write_small_session(tmp_path / "data").parent)
    sample = load_window(sessions[0], 0.0, 1.0, {"calcium": "scale", "running": "zscore"})

    model = build_model(_config("running", readout="wrongshape.readout"), sessions)
    with pytest.raises(
        ValueError,
        match=r"stream 'calcium' from readout plugin 'wrongshape.readout' from "
        r"neurofm-wrongshape 1\.4\.2 has shape \(\d+, \d+, 1\); expected",
    ):
        model([sample], [PRESETS["responses_from_stimulus_behaviour"]])

    model = build_model(_config("running", running_head="wrongshape.head"), sessions)
    with pytest.raises(
        ValueError,
        match=r"stream 'running' from head plugin 'wrongshape.head' from neurofm-wrongshape "
        r"1\.4\.2 has shape \(\d+, 0, 1\); expected \[\d+, 1, 1\]",
    ):
        model([sample], [PRESETS["behaviour_from_responses"]])
