"""training.shard_sessions: sessions assigned to ranks, per-session parameters held by one rank
each, the same training as replicated parameters, complete checkpoints and exact resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_helpers import cli_env, run_cli, stimulus_model, write_experiment

from neurofm.core.data import open_dataset
from neurofm.core.model.checkpoint import load_checkpoint
from neurofm.core.training.sharding import SessionShards, assign_sessions, session_parameter_names
from neurofm.errors import NeurofmError

HERE = Path(__file__).parent


def test_assignment_balances_neurons_and_is_deterministic() -> None:
    loads = {f"s{i}": (n, 100.0 + i) for i, n in enumerate([900, 100, 500, 500, 400, 300, 200])}
    owner = assign_sessions(loads, 3)
    assert owner == assign_sessions(dict(reversed(loads.items())), 3)  # order of the mapping
    per_rank = [sum(loads[s][0] for s, r in owner.items() if r == rank) for rank in range(3)]
    assert sorted(per_rank) == [900, 1000, 1000]  # 2,900 neurons: the best split is 900/1000/1000
    # equal neuron counts: train time breaks the tie
    owner = assign_sessions({"a": (10, 50.0), "b": (10, 40.0), "c": (10, 5.0), "d": (10, 1.0)}, 2)
    assert owner["a"] != owner["b"] and owner["c"] != owner["d"]


def test_fewer_sessions_than_ranks_is_refused() -> None:
    with pytest.raises(NeurofmError, match=r"1 session\(s\) for 2 processes.*at most 1"):
        assign_sessions({"a": (5, 1.0)}, 2)


def test_per_session_parameters_are_the_readout_tables(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    model = stimulus_model(sessions)
    names = session_parameter_names(model)
    ids = {s.session_id for s in sessions}
    assert set(names.values()) == ids
    assert all(n.startswith("readout.") for n in names)
    assert {n.split(".")[1] for n in names} >= {"delta", "logits", "weights", "residual"}
    shared = [n for n, _ in model.named_parameters() if n not in names]
    assert not any(model.readout.parameter_key(s) in n for n in shared for s in ids)

    # rank 0 of 2 keeps one session's tensors; the other's are emptied, names kept
    shards = SessionShards(model, sessions, rank=0, world_size=2)
    before = shards.parameter_bytes(model)
    shards.release(model)
    assert shards.parameter_bytes(model) * 2 == before  # two sessions of 16 neurons
    params = dict(model.named_parameters())
    assert set(params) >= set(names)
    assert all(params[n].numel() == 0 for n in shards.other_names)
    assert all(params[n].shape == shards.shapes[n] for n in shards.owned_names)
    # a full state loads back with the other rank's entries emptied
    full = {n: torch.ones(shards.shapes[n]) for n in names}
    local = shards.localise({f"model.{n}": v for n, v in full.items()}, prefix="model.")
    assert all(local[f"model.{n}"].numel() == 0 for n in shards.other_names)
    assert all(local[f"model.{n}"].shape == shards.shapes[n] for n in shards.owned_names)


def _torchrun(*args: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", *args]  # fmt: skip
    env = {
        **cli_env(),
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.mark.slow
def test_sharded_training_matches_replicated_with_the_same_windows(
    tiny_data: Path, tmp_path: Path
) -> None:
    for mode in ("sharded", "replicated"):
        _torchrun(str(HERE / "shard_worker.py"), str(tiny_data), str(tmp_path), mode)
    runs = {
        (mode, rank): json.loads((tmp_path / f"{mode}-{rank}.json").read_text())
        for mode in ("sharded", "replicated")
        for rank in (0, 1)
    }
    reference = runs["replicated", 0]
    for rank in (0, 1):
        run = runs["sharded", rank]
        assert run["loss"] == pytest.approx(reference["loss"], rel=1e-6, abs=1e-7)
        assert [v for _, v in run["validation"]] == pytest.approx(
            [v for _, v in reference["validation"]], rel=1e-6
        )
        # each rank holds its share of the per-session parameters (two equal sessions: half)
        assert run["held"] * 2 == runs["replicated", rank]["held"]
    sharded = load_file(str(tmp_path / "sharded.safetensors"))
    replicated = load_file(str(tmp_path / "replicated.safetensors"))
    assert sharded.keys() == replicated.keys()
    for key, value in replicated.items():
        assert sharded[key].shape == value.shape, key
        torch.testing.assert_close(sharded[key], value, rtol=1e-5, atol=1e-6, msg=key)


@pytest.mark.slow
def test_sharded_run_saves_every_session_and_resumes_exactly(
    tiny_data: Path, tmp_path: Path
) -> None:
    # FSDP2 for the shared parameters (DDP: the test above): ignored per-session parameters,
    # a global clipping norm over DTensors and plain tensors, validation in step on every rank
    config = write_experiment(tmp_path / "run.json", tiny_data, shard_sessions=True, fsdp=True)
    out = tmp_path / "out"
    done = run_cli("train", str(config), "--out", str(out), "--no-progress", torchrun=2)
    assert "sessions sharded over 2 processes" in done.stdout
    assert "rank 1: 1 session(s), 16 neurons (50 %)" in done.stdout
    uninterrupted = load_file(str(out / "weights.safetensors"))

    # the checkpoint holds every session at full size and loads in one process
    model = load_checkpoint(out).model
    params = dict(model.named_parameters())
    names = session_parameter_names(model)
    assert len({names[n] for n in names}) == 2
    assert all(params[n].numel() > 0 for n in names)
    assert all(torch.equal(params[n].detach(), uninterrupted[n]) for n in names)

    # resumed from the state saved at step 9 (gathered there, localised again on load)
    state = tmp_path / "out.state"
    assert (state / "latest").read_text().strip() == "step-00000012"
    shutil.rmtree(state / "step-00000012")
    (state / "latest").write_text("step-00000009\n")
    run_cli("train", str(config), "--out", str(out), "--resume", "--no-progress", torchrun=2)
    resumed = load_file(str(out / "weights.safetensors"))
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), f"{key} differs after the resume"
