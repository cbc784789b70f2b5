"""Checkpoint folders: exact round trip, verification, plugin checks, atomic saves."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofm.core.data import open_dataset
from neurofm.core.data.windows import load_window
from neurofm.core.model import checkpoint
from neurofm.core.model.builder import build_model
from neurofm.core.model.checkpoint import load_pretrained, save_pretrained
from neurofm.core.model.neurofm import NeuroFM
from neurofm.core.model.presets import default_model_config
from neurofm.core.storage.sealing import seal
from neurofm.core.tokens.tasks import PRESETS
from neurofm.errors import NeurofmError

CONFIG = default_model_config("tiny", frame_size=(18, 32))


@pytest.fixture(scope="module")
def saved(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[NeuroFM, Path]:
    torch.manual_seed(1)
    model = build_model(CONFIG, open_dataset(tiny_data))
    path = tmp_path_factory.mktemp("ckpt") / "model"
    model.save_pretrained(path, extra={"window_s": 1.0})
    return model, path


def _copy(path: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(path, tmp_path / "copy"))


def test_round_trip_is_exact(saved, tiny_data: Path) -> None:
    model, path = saved
    loaded = NeuroFM.from_pretrained(path)
    for (k, a), (k2, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b)
    sessions = open_dataset(tiny_data)
    batch = [load_window(s, s.intervals("train")[0].start, 1.0, model.normalization())
             for s in sessions]  # fmt: skip
    tasks = [PRESETS["responses_from_stimulus_behaviour"], PRESETS["forecast"]]
    model.eval(), loaded.eval()
    with torch.no_grad():
        a = model(batch, tasks, np.random.default_rng(0))
        b = loaded(batch, tasks, np.random.default_rng(0))
    assert torch.equal(a.loss, b.loss)
    assert all(torch.equal(x.raw, y.raw) for x, y in zip(a.targets, b.targets, strict=True))
    # vocabulary and normalisation statistics travel with the weights
    sid = sessions[0].session_id
    assert loaded.session_units[sid].count == 16
    assert loaded.session_units[sid].animal_id == sessions[0].animal_id
    assert loaded.stream_statistics[sid]["calcium"] == (
        sessions[0].manifest.streams["calcium"].statistics.model_dump(mode="json")
    )
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == set(checkpoint._FILES)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("flip", "does not match its sha256"),
        ("truncate", "truncated or changed"),
        ("unknown", "unknown file 'notes.pkl'"),
        ("missing", "weights.safetensors is missing"),
        ("no-manifest", "has no manifest.json"),
    ],
)
def test_damaged_checkpoints_are_refused_clearly(saved, tmp_path, damage, message) -> None:
    path = _copy(saved[1], tmp_path)
    weights = path / "weights.safetensors"
    data = weights.read_bytes()
    if damage == "flip":
        weights.write_bytes(data[:-10] + bytes([data[-10] ^ 1]) + data[-9:])
    elif damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "unknown":
        (path / "notes.pkl").write_bytes(b"\x80\x04")
    elif damage == "missing":
        weights.unlink()
    else:
        (path / "manifest.json").unlink()
    with pytest.raises(NeurofmError, match=message):
        load_pretrained(path)


def _edit_meta(path: Path, edit) -> None:
    meta = json.loads((path / "meta.json").read_text())
    edit(meta["plugins"])
    (path / "meta.json").write_text(json.dumps(meta))
    seal(path, checkpoint.FORMAT)  # as if written by another installation


def test_missing_plugin_is_named(saved, tmp_path) -> None:
    path = _copy(saved[1], tmp_path)
    _edit_meta(path, lambda p: p.update({"modalities:acme.lfp": {"package": "acme-lfp",
                                                                 "version": "1.2.0"}}))  # fmt: skip
    with pytest.raises(NeurofmError, match=r"modalit\w* 'acme.lfp' \(from acme-lfp 1.2.0\) is not"):
        load_pretrained(path)


def test_installed_but_broken_plugin_gives_its_import_error(
    saved, tmp_path, third_party_plugins
) -> None:
    path = _copy(saved[1], tmp_path)
    _edit_meta(path, lambda p: p.update({"modalities:broken.import": {
        "package": "neurofm-broken-plugin", "version": "6.6.6"}}))  # fmt: skip
    with pytest.raises(NeurofmError, match=r"modality 'broken.import' is installed") as err:
        load_pretrained(path)
    assert "failed to load: ImportError" in str(err.value)
    assert "acme_missing_dependency" in str(err.value)
    assert "is not installed" not in str(err.value).split("failed to load")[0]


def test_plugin_major_version_mismatch_is_refused(saved, tmp_path) -> None:
    path = _copy(saved[1], tmp_path)
    _edit_meta(path, lambda p: p["modalities:movie_core"].update(version="99.0.0"))
    with pytest.raises(NeurofmError, match="major versions differ"):
        load_pretrained(path)


def test_failed_save_keeps_previous_checkpoint(saved, tmp_path, monkeypatch) -> None:
    model, source = saved
    path = _copy(source, tmp_path)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(model, CONFIG, path)
    load_pretrained(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no partial folder left


SAVE_LOOP = """
import sys, torch
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config
from neurofm.core.data import open_dataset
torch.manual_seed(0)
model = build_model(default_model_config("7M", frame_size=(18, 32)), open_dataset(sys.argv[1]))
for i in range(1000):
    model.backbone.latents.data.fill_(float(i))
    model.save_pretrained(sys.argv[2])
    print(i, flush=True)
"""


@pytest.mark.slow
def test_sigkill_during_save_leaves_previous_checkpoint_loadable(tiny_data, tmp_path) -> None:
    path = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, "-c", SAVE_LOOP, str(tiny_data), str(path)],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "0"  # one complete checkpoint exists
        time.sleep(np.random.default_rng().uniform(0.05, 0.5))  # somewhere inside a later save
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    model, _ = load_pretrained(path)  # verified against its manifest
    value = float(model.backbone.latents[0, 0].detach())
    assert value == int(value) and torch.all(model.backbone.latents == value)
