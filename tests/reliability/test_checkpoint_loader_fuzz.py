"""The checkpoint loader under generated bad input: damaged, truncated or extra files, and content
rewritten and re-sealed (as another installation would) all give a NeurofmError, never another
exception and never a silently different model. Named damages and plugin checks are in
tests/core/model/test_checkpoint.py."""

from __future__ import annotations

import json
import math
import pickle
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import copy_folder

from neurofm.core.data import open_dataset
from neurofm.core.model import checkpoint
from neurofm.core.model.builder import build_model
from neurofm.core.model.checkpoint import load_pretrained
from neurofm.core.model.presets import default_model_config
from neurofm.core.storage.sealing import seal
from neurofm.errors import NeurofmError

FIXTURE_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
JSON_FILES = ["config.json", "meta.json", "sessions.json", "statistics.json"]


@pytest.fixture(scope="module")
def saved(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = default_model_config("tiny", frame_size=(18, 32))
    model = build_model(config, open_dataset(tiny_data))
    path = tmp_path_factory.mktemp("ckpt") / "model"
    model.save_pretrained(path, extra={"window_s": 1.0})
    return model.state_dict(), path


def _same_weights(model: Any, state: dict) -> bool:
    loaded = model.state_dict()
    return loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


@FIXTURE_SETTINGS
@given(
    data=st.data(),
    damage=st.sampled_from(["truncate", "flip", "garbage", "append", "empty", "delete", "extra"]),
)
def test_damaged_checkpoints_are_refused(saved, data, damage: str) -> None:
    state, source = saved
    names = sorted(p.name for p in source.iterdir())
    name = data.draw(st.sampled_from(names), label="file")
    with tempfile.TemporaryDirectory() as tmp:
        path = copy_folder(source, Path(tmp) / "model")
        file = path / name
        raw = file.read_bytes()
        if damage == "truncate":
            file.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1), label="keep")])
        elif damage == "flip":
            at = data.draw(st.integers(0, len(raw) - 1), label="at")
            file.write_bytes(raw[:at] + bytes([raw[at] ^ (1 << data.draw(st.integers(0, 7)))])
                             + raw[at + 1 :])  # fmt: skip
        elif damage == "garbage":
            file.write_bytes(data.draw(st.binary(max_size=200), label="garbage"))
        elif damage == "append":
            file.write_bytes(raw + data.draw(st.binary(min_size=1, max_size=32), label="tail"))
        elif damage == "empty":
            file.write_bytes(b"")
        elif damage == "delete":
            file.unlink()
        else:
            extra = data.draw(st.sampled_from(["x.pkl", "weights.pt", ".hidden", "sub"]))
            (path / extra).mkdir() if extra == "sub" else (path / extra).write_bytes(b"\x80\x04.")
        try:
            model, _ = load_pretrained(path)
        except NeurofmError as exc:
            assert str(path) in str(exc)  # the message names the checkpoint
            return
        # only an edit the manifest does not protect (e.g. its own "version") may load, unchanged
        assert name == "manifest.json" and damage == "flip", f"{damage} {name} was not detected"
        assert _same_weights(model, state)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            out += _paths(v, (*prefix, i))
    return out


# Sizes are small or far too large to allocate at all (refused at once): sizes in between would
# make the loader build a model of many gigabytes, which is out of this test's scope.
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 1000),
    st.sampled_from([2**48, 2**62, -(2**62), 2**80]),
    st.floats(-1e3, 1e3),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300]),
    st.text(max_size=8),
    st.sampled_from(["0.1.0", "99.0.0", "neurofm", "modalities:movie", "heads:x", "readouts"]),
    st.lists(st.integers(-2, 3), max_size=3),
    st.dictionaries(st.sampled_from(["count", "package", "version", "mean", "type"]),
                    st.one_of(st.integers(-2, 3), st.text(max_size=3), st.none()), max_size=3),
)  # fmt: skip


@FIXTURE_SETTINGS
@given(data=st.data())
def test_rewritten_and_resealed_contents_give_neurofm_errors(saved, data) -> None:
    """Valid hashes do not make content trustworthy: any JSON field of a re-sealed checkpoint
    replaced, deleted or retyped loads, or is refused with a NeurofmError."""
    _, source = saved
    name = data.draw(st.sampled_from(JSON_FILES), label="file")
    with tempfile.TemporaryDirectory() as tmp:
        path = copy_folder(source, Path(tmp) / "model")
        content = json.loads((path / name).read_text())
        for _ in range(data.draw(st.integers(1, 2), label="edits")):
            where = data.draw(st.sampled_from(_paths(content)), label="path")
            if not where:
                content = data.draw(_VALUES, label="whole file")
                continue
            parent = content
            for key in where[:-1]:
                parent = parent[key]
            if data.draw(st.booleans(), label="delete") and isinstance(parent, dict):
                del parent[where[-1]]
            else:
                parent[where[-1]] = data.draw(_VALUES, label="value")
        (path / name).write_text(json.dumps(content))
        seal(path, checkpoint.FORMAT)
        try:
            load_pretrained(path)
        except NeurofmError as exc:
            assert str(exc)


def _reseal_meta(path: Path, edit) -> None:
    meta = json.loads((path / "meta.json").read_text())
    edit(meta)
    (path / "meta.json").write_text(json.dumps(meta))
    seal(path, checkpoint.FORMAT)


def test_checkpoint_of_another_neurofm_major_version_is_refused(saved, tmp_path: Path) -> None:
    """A checkpoint written by neurofm 99: refused, naming both versions (the built-in plugins it
    used come from that neurofm too)."""
    path = copy_folder(saved[1], tmp_path / "model")

    def from_neurofm_99(meta: dict) -> None:
        meta["neurofm_version"] = "99.0.0"
        for info in meta["plugins"].values():
            if info["package"] == "neurofm":
                info["version"] = "99.0.0"

    _reseal_meta(path, from_neurofm_99)
    with pytest.raises(NeurofmError, match=r"saved with neurofm 99\.0\.0 but neurofm 0\.\S+ is "):
        load_pretrained(path)


def test_checkpoint_naming_only_another_neurofm_version_is_refused(saved, tmp_path) -> None:
    """The backbone is core code: another neurofm major version is refused even when every plugin
    is third-party (here: only ``neurofm_version`` differs)."""
    path = copy_folder(saved[1], tmp_path / "model")
    _reseal_meta(path, lambda meta: meta.update(neurofm_version="99.0.0"))
    with pytest.raises(NeurofmError, match=r"neurofm 99\.0\.0"):
        load_pretrained(path)


def test_a_pickle_in_place_of_the_weights_is_never_unpickled(saved, tmp_path: Path) -> None:
    """Weights that are a pickle (even re-sealed) are refused by safetensors; the pickle's payload
    does not run."""
    path = copy_folder(saved[1], tmp_path / "model")
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (path / "weights.safetensors").write_bytes(pickle.dumps({"w": Payload()}))
    seal(path, checkpoint.FORMAT)
    with pytest.raises(NeurofmError, match="cannot read weights"):
        load_pretrained(path)
    assert not marker.exists()
