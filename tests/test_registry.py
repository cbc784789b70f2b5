"""The plugin registries: lazy discovery, lookup, validation, isolation of broken third-party plugins,
and a third-party modality used end to end without any change to neurofm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
from pydantic import ConfigDict
from torch import Tensor, nn

from neurofm import registry
from neurofm.core.config import PluginConfig
from neurofm.core.interfaces import ModalityEncoder, StreamTensor, Tokens
from neurofm.errors import DuplicatePluginError, InvalidPluginError, UnknownPluginError
from neurofm.registry import Registry

BUILTIN_MODALITIES = {"movie", "pupil", "running", "calcium"}  # at least these


def _builtins(kind: str) -> set[str]:
    return {r.name for r in registry.REGISTRIES[kind].records() if r.package == "neurofm"}


BROKEN = {
    "broken.import": "ImportError",
    "broken.notaplugin": "InvalidPluginError",
    "broken.badtag": "InvalidPluginError",
    "broken.badrole": "InvalidPluginError",
    "broken.norole": "InvalidPluginError",
    "broken.badnormalization": "InvalidPluginError",
    "broken.badperunit": "InvalidPluginError",
    "lfp": "InvalidPluginError",
    "movie": "DuplicatePluginError",
}


def _fresh_registry() -> Registry:
    """A modality registry of an entry-point group nobody declares (no global state touched)."""
    return Registry(
        "modality", "neurofm.tests-no-such-group", "neurofm.core.interfaces:ModalityEncoder"
    )


class LfpConfig(PluginConfig):
    type: Literal["test.lfp"] = "test.lfp"
    channels: int = 4


class LfpEncoder(ModalityEncoder):
    Config = LfpConfig
    role = "neural"

    def __init__(self, config: LfpConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        self.embed = nn.Linear(config.channels, d_model)

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        times = torch.stack([stream.times, stream.times + stream.period_s], -1)
        return Tokens(self.embed(stream.values), times)


class OtherLfpEncoder(ModalityEncoder):
    Config = LfpConfig
    role = "neural"

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        raise NotImplementedError


class LfpSpikesConfig(PluginConfig):
    type: Literal["test.lfp_spikes"] = "test.lfp_spikes"


class LfpSpikesEncoder(ModalityEncoder):
    Config = LfpSpikesConfig
    role = "neural"

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        raise NotImplementedError


# -- discovery ----------------------------------------------------------------------------------
def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != registry.AUTOLOAD_ENV}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120
    )


def test_import_neurofm_is_lazy(plugin_site: Path) -> None:
    code = (
        "import sys, json\n"
        "import neurofm\n"
        "from neurofm import registry\n"
        "heavy = lambda: sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'neurofm_acme', 'neurofm_broken') or m.startswith('neurofm.plugins'))\n"
        "before = heavy()\n"
        "registry.modalities.list()\n"
        "print(json.dumps([before, heavy()]))\n"
    )
    done = _run(code, PYTHONPATH=str(plugin_site))
    assert done.returncode == 0, done.stderr
    before, after = json.loads(done.stdout)
    assert before == [], f"`import neurofm` imported {before}"
    # the first query discovers every plugin, built-in and installed
    assert "neurofm.plugins.modalities.movie" in after
    assert "neurofm_acme.whisker" in after


# -- register / get / list ----------------------------------------------------------------------
def test_register_get_and_list_with_glob() -> None:
    reg = _fresh_registry()
    assert reg.list() == []
    assert reg.register(LfpEncoder) is LfpEncoder
    reg.register(LfpSpikesEncoder)
    assert reg.get("test.lfp") is LfpEncoder
    assert "test.lfp" in reg and "test.nothing" not in reg
    assert reg.list() == ["test.lfp", "test.lfp_spikes"]
    assert reg.list("test.lfp_*") == ["test.lfp_spikes"]
    assert reg.list("other.*") == []
    (record,) = [r for r in reg.records() if r.name == "test.lfp"]
    assert record.status == "loaded" and record.target.endswith(":LfpEncoder")
    reg.unregister("test.lfp")
    assert reg.list() == ["test.lfp_spikes"]


def test_record_of_a_class() -> None:
    from neurofm.plugins.modalities.movie import MovieEncoder

    reg = _fresh_registry()
    reg.register(LfpEncoder)
    record = reg.record_of(LfpEncoder)
    assert (record.name, record.obj, record.status) == ("test.lfp", LfpEncoder, "loaded")
    assert registry.modalities.record_of(MovieEncoder).name == "movie"
    assert registry.modalities.record_of(MovieEncoder).package == "neurofm"
    with pytest.raises(UnknownPluginError) as info:
        reg.record_of(LfpSpikesEncoder)
    message = str(info.value)
    assert f"{__name__}:LfpSpikesEncoder is not a registered modality plugin" in message
    assert "register(cls)" in message and "neurofm.tests-no-such-group" in message
    # a class whose config tag names a plugin held by another class says who holds it
    with pytest.raises(UnknownPluginError, match=rf"'test.lfp', belongs to {__name__}:LfpEncoder"):
        reg.record_of(OtherLfpEncoder)
    with pytest.raises(UnknownPluginError, match="not a registered head plugin"):
        registry.heads.record_of(MovieEncoder)


def test_register_as_decorator() -> None:
    reg = _fresh_registry()
    decorated = reg.register()(LfpEncoder)
    assert decorated is LfpEncoder and reg.get("test.lfp") is LfpEncoder


def test_global_registries_hold_the_builtins() -> None:
    assert set(registry.modalities.list()) >= BUILTIN_MODALITIES
    assert registry.modalities.list("pu*") == ["pupil"]
    assert "neuron_embedding" in registry.readouts.list()
    assert {"poisson", "regression"} <= set(registry.heads.list())
    for reg in registry.REGISTRIES.values():
        for record in reg.records():
            if record.name in BUILTIN_MODALITIES | {"neuron_embedding", "poisson", "regression"}:
                assert (record.package, record.status) == ("neurofm", "loaded")
    assert registry.get_registry("heads") is registry.heads
    with pytest.raises(UnknownPluginError, match="no plugin kind"):
        registry.get_registry("encoders")


def test_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(UnknownPluginError, match=r"Did you mean 'movie' or 'movie_core'\?") as info:
        registry.modalities.get("moive")
    assert "neurofm plugins" in str(info.value)
    assert isinstance(info.value, LookupError)
    with pytest.raises(UnknownPluginError, match="no modality plugin named 'zzz'"):
        registry.modalities.get("zzz")


def test_duplicate_names_both_owners() -> None:
    reg = _fresh_registry()
    reg.register(LfpEncoder)
    with pytest.raises(DuplicatePluginError) as info:
        reg.register(OtherLfpEncoder)
    message = str(info.value)
    assert "'test.lfp'" in message
    assert f"{__name__}:LfpEncoder" in message and f"{__name__}:OtherLfpEncoder" in message
    assert reg.get("test.lfp") is LfpEncoder


def test_reregistering_the_same_class_is_fine() -> None:
    reg = _fresh_registry()
    reg.register(LfpEncoder)
    reg.register(LfpEncoder)
    assert reg.list() == ["test.lfp"]


def test_register_in_the_global_registry_and_use_it_in_a_config() -> None:
    from neurofm.core.model.config import ModelConfig

    registry.modalities.register(LfpEncoder)
    try:
        config = ModelConfig(modalities={"lfp": {"type": "test.lfp", "channels": 8}})
        assert isinstance(config.modalities["lfp"], LfpConfig)
        assert config.modalities["lfp"].channels == 8
    finally:
        registry.modalities.unregister("test.lfp")
    assert "test.lfp" not in registry.modalities


# -- invalid plugins ----------------------------------------------------------------------------
class NotAnEncoder:
    Config = LfpConfig


class AbstractLeft(ModalityEncoder):
    Config = LfpConfig
    role = "neural"


class LooseConfig(PluginConfig):
    model_config = ConfigDict(extra="allow")
    type: Literal["test.loose"] = "test.loose"


class LooseEncoder(ModalityEncoder):
    Config = LooseConfig
    role = "behaviour"

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        raise NotImplementedError


class NoConfigEncoder(ModalityEncoder):
    role = "behaviour"

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        raise NotImplementedError


@pytest.mark.parametrize(
    ("cls", "name", "message", "found"),
    [
        (NotAnEncoder, None, "does not implement neurofm.core.interfaces.ModalityEncoder",
         "found a class deriving from object"),
        (AbstractLeft, None, "abstract methods unimplemented: tokenize", "unimplemented: tokenize"),
        (LfpEncoder, "test.renamed", "config tag type='test.lfp'", "type='test.lfp'"),
        (LooseEncoder, None, "allows unknown fields", "extra='allow'"),
        (NoConfigEncoder, "test.noconfig", "`Config`", "found Config = None"),
        (NoConfigEncoder, None, "no config with a string `type` tag", "found no `Config`"),
    ],
)  # fmt: skip
def test_invalid_plugins_are_rejected(
    cls: type, name: str | None, message: str, found: str
) -> None:
    # refused, naming the plugin, its package and what was found
    package, _ = registry._owner_of(cls)
    reg = _fresh_registry()
    with pytest.raises(
        InvalidPluginError, match=message.replace("(", r"\(").replace("[", r"\[")
    ) as info:
        reg.register(cls, name=name)
    assert reg.list() == []
    text = str(info.value)
    assert f"{__name__}:{cls.__qualname__}" in text and f"from {package}" in text
    assert found in text


# -- installed third-party plugins ---------------------------------------------------------------
def test_broken_third_party_plugins_are_isolated(third_party_plugins: Path) -> None:
    from neurofm.plugins.modalities.movie import MovieEncoder

    names = registry.modalities.list()
    assert BUILTIN_MODALITIES | {"acme.whisker"} <= set(names)
    assert not (set(BROKEN) - {"movie"}) & set(names)
    assert registry.modalities.get("movie") is MovieEncoder  # the built-in kept its name
    failed = {r.name: r for r in registry.modalities.records() if r.status == "failed"}
    assert set(failed) == set(BROKEN)
    for name, error in BROKEN.items():
        record = failed[name]
        assert (record.package, record.version) == ("neurofm-broken-plugin", "6.6.6")
        assert record.obj is None and record.error.startswith(f"{error}: ")
    assert "acme_missing_dependency" in failed["broken.import"].error
    assert "broken.othertag" in failed["broken.badtag"].error
    assert (
        "role = 'visual'; allowed: 'stimulus', 'behaviour', 'neural'"
        in failed["broken.badrole"].error
    )
    assert "from neurofm-broken-plugin 6.6.6" in failed["broken.badrole"].error
    # each contract attribute: the plugin, its package, the attribute, what was found, what is allowed
    contract = {
        "broken.norole": "role = None (not set); allowed: 'stimulus', 'behaviour', 'neural'",
        "broken.badnormalization": "normalization = 'minmax'; allowed: 'zscore', 'scale', 'none'",
        "broken.badperunit": "per_unit = 1 (of type int, expected bool); allowed: False, True",
    }
    for name, found_and_allowed in contract.items():
        error = failed[name].error
        assert f"modality plugin {name!r}" in error and found_and_allowed in error, error
        assert "from neurofm-broken-plugin 6.6.6" in error, error
        assert f"Set the class attribute {found_and_allowed.split()[0]} to one of them" in error
    assert "bare name" in failed["lfp"].error and "'yourlab.lfp'" in failed["lfp"].error
    assert "neurofm.plugins.modalities.movie:MovieEncoder" in failed["movie"].error
    assert "neurofm_broken.duplicate:ImpostorMovieEncoder" in failed["movie"].error
    with pytest.raises(UnknownPluginError, match=r"failed to load .*ImportError"):
        registry.modalities.get("broken.import")
    (acme,) = [r for r in registry.modalities.records() if r.name == "acme.whisker"]
    assert (acme.package, acme.version, acme.status) == ("neurofm-acme-plugin", "0.3.1", "loaded")
    # the other kinds are untouched
    assert all(r.status == "loaded" for r in registry.readouts.records())


def test_autoload_can_be_disabled(third_party_plugins: Path, monkeypatch) -> None:
    builtins = _builtins("modalities")
    assert builtins >= BUILTIN_MODALITIES
    monkeypatch.setenv(registry.AUTOLOAD_ENV, "1")
    registry.modalities.reload()
    try:
        assert set(registry.modalities.list()) == builtins
        assert all(r.status == "loaded" for r in registry.modalities.records())
    finally:
        monkeypatch.delenv(registry.AUTOLOAD_ENV)
        registry.modalities.reload()
    assert "acme.whisker" in registry.modalities.list()


def _plugins_table(plugin_site: Path, **env: str) -> dict[tuple[str, str], list[str]]:
    full_env = {k: v for k, v in os.environ.items() if k != registry.AUTOLOAD_ENV}
    full_env.update(PYTHONPATH=str(plugin_site), **env)
    done = subprocess.run(
        [sys.executable, "-m", "neurofm", "plugins"],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["kind", "name", "package", "version", "status"]
    rows: dict[tuple[str, str], list[str]] = {}
    for line in lines[1:]:
        kind, name, package, version, status = line.split(maxsplit=4)
        rows.setdefault((kind, name), []).append(f"{package} {version} {status}")
    return rows


def test_cli_lists_installed_and_broken_plugins(plugin_site: Path) -> None:
    rows = _plugins_table(plugin_site)
    assert rows[("modalities", "acme.whisker")] == ["neurofm-acme-plugin 0.3.1 loaded"]
    for name, error in BROKEN.items():
        failures = [r for r in rows[("modalities", name)] if "failed" in r]
        assert len(failures) == 1, rows[("modalities", name)]
        assert failures[0].startswith(f"neurofm-broken-plugin 6.6.6 failed: {error}: ")
    for name in BUILTIN_MODALITIES:
        assert "neurofm 0.1.0 loaded" in rows[("modalities", name)]
    assert rows[("readouts", "neuron_embedding")] == ["neurofm 0.1.0 loaded"]
    assert rows[("heads", "poisson")] == ["neurofm 0.1.0 loaded"]

    rows = _plugins_table(plugin_site, **{registry.AUTOLOAD_ENV: "1"})
    assert {name for kind, name in rows if kind == "modalities"} == _builtins("modalities")
    assert all(r.startswith("neurofm 0.1.0 ") for v in rows.values() for r in v)
    for name in BUILTIN_MODALITIES:
        assert rows[("modalities", name)] == ["neurofm 0.1.0 loaded"]


# -- a third-party modality end to end -----------------------------------------------------------
@pytest.fixture
def whisker_sessions(tmp_path: Path) -> list:
    """The tiny simulated sessions plus a 50 Hz two-channel ``whisker`` stream, written to disk."""
    from neurofm.core.data import StreamInput, UnitTable, open_dataset, write_session
    from neurofm.core.data.simulation import SimulationConfig, simulate_session

    config = SimulationConfig.tiny()
    for index in range(config.sessions_per_animal):
        sim = simulate_session(config, 0, index)
        streams = {
            name: StreamInput(s.modality, s.data, s.timestamps, per_unit=name == "calcium")
            for name, s in sim.streams.items()
        }
        start = sim.streams["running"].timestamps[0]
        end = sim.streams["running"].timestamps[-1]
        ts = np.arange(start, end, 1 / 50)
        angle = np.stack([np.sin(3 * ts), np.cos(5 * ts)], 1).astype(np.float32)
        streams["whisker"] = StreamInput("whisker", angle, ts, sampling_rate_hz=50.0)
        write_session(
            tmp_path,
            session_id=sim.session_id,
            animal_id=sim.animal_id,
            species=sim.species,
            streams=streams,
            intervals=sim.intervals,
            units=UnitTable(sim.unit_ids, sim.unit_position_um, sim.unit_area),
        )
    return open_dataset(tmp_path)


def test_third_party_modality_in_a_model(
    third_party_plugins: Path, whisker_sessions: list, tmp_path: Path
) -> None:
    from neurofm_acme.whisker import WhiskerConfig, WhiskerEncoder

    from neurofm.core.data.windows import load_window
    from neurofm.core.model.builder import build_model
    from neurofm.core.model.checkpoint import load_pretrained, save_pretrained
    from neurofm.core.model.config import ModelConfig
    from neurofm.core.model.presets import default_model_config
    from neurofm.core.tokens.tasks import PRESETS
    from neurofm.core.training import Trainer
    from neurofm.core.training.config import TrainingConfig

    data = default_model_config("tiny", frame_size=(18, 32)).model_dump()
    data["modalities"]["whisker"] = {"type": "acme.whisker", "channels": 2, "patch_samples": 5}
    data["heads"]["whisker"] = {"type": "regression"}
    config = ModelConfig.model_validate(json.loads(json.dumps(data)))
    assert isinstance(config.modalities["whisker"], WhiskerConfig)
    assert config.model_dump()["modalities"]["whisker"]["patch_samples"] == 5

    torch.manual_seed(0)
    model = build_model(config, whisker_sessions)
    assert isinstance(model.encoder("whisker"), WhiskerEncoder)
    assert model.target_channels["whisker"] == 2

    # whisker visible: its encoder receives gradient
    sample = load_window(whisker_sessions[0], whisker_sessions[0].intervals("train")[0].start,
                         1.0, model.normalization())  # fmt: skip
    assert sample.streams["whisker"].values.shape == (50, 2)
    model([sample], [PRESETS["responses_from_stimulus_behaviour"]]).loss.backward()
    grad = model.encoder("whisker").embed.weight.grad
    assert grad is not None and bool(grad.abs().sum() > 0)
    model.zero_grad(set_to_none=True)

    # whisker as a target: one training step moves its head
    head_before = model.head("whisker").output.weight.detach().clone()
    training = TrainingConfig(
        steps=1, batch_size=2, eval_every=100, warmup_steps=0, device="cpu",
        tasks={"behaviour_from_responses": 1.0},
    )  # fmt: skip
    result = Trainer(model, whisker_sessions, training, window_s=1.0, progress=False).fit()
    assert result.steps == 1 and np.isfinite(result.train_loss).all()
    assert not torch.equal(head_before, model.head("whisker").output.weight)

    # the checkpoint names the plugin's package and reloads through the registry
    save_pretrained(model, config, tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / "meta.json").read_text())
    assert meta["plugins"]["modalities:acme.whisker"] == {
        "package": "neurofm-acme-plugin",
        "version": "0.3.1",
    }
    loaded, loaded_config = load_pretrained(tmp_path / "ckpt")
    assert loaded_config.model_dump() == config.model_dump()
    assert torch.equal(
        loaded.encoder("whisker").embed.weight, model.encoder("whisker").embed.weight
    )
