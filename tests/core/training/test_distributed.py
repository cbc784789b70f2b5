"""torchrun with 2 CPU processes (gloo) matches one process with the same global batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
from training_helpers import experiment, run_cli, write_experiment

from neurofm.core.model.presets import default_model_config


@pytest.mark.slow
def test_ddp_and_fsdp_match_single_process_with_same_global_batch(
    tiny_data: Path, tmp_path: Path
) -> None:
    # batch norm on CPU uses each process's own batch statistics (SyncBatchNorm is CUDA-only), so
    # the exact comparison runs the default model with a normalisation-free core; a plugin
    # penalty is on, which must count once per step whatever the number of processes
    plain = {"core_norm": "none", "readout": {"feature_l1": 0.05}}
    one = write_experiment(tmp_path / "one.json", tiny_data, batch_size=4, **plain)
    two = write_experiment(tmp_path / "two.json", tiny_data, batch_size=2, **plain)
    sharded = write_experiment(tmp_path / "fsdp.json", tiny_data, batch_size=2, fsdp=True, **plain)
    run_cli("train", str(one), "--out", str(tmp_path / "single"), "--no-progress")
    done = run_cli("train", str(two), "--out", str(tmp_path / "ddp"), "--no-progress", torchrun=2)
    assert "2 process(es) x batch 2" in done.stdout
    run_cli("train", str(sharded), "--out", str(tmp_path / "fsdp"), "--no-progress", torchrun=2)

    single = load_file(str(tmp_path / "single" / "weights.safetensors"))
    for name in ("ddp", "fsdp"):
        other = load_file(str(tmp_path / name / "weights.safetensors"))
        assert other.keys() == single.keys()
        worst, key = max(
            (float((single[k] - other[k]).abs().max()), k)
            for k in single
            if not k.endswith("num_batches_tracked")
        )
        assert worst < 1e-4, f"{name} differs from single-process training by {worst} in {key}"
    meta = json.loads((tmp_path / "ddp" / "meta.json").read_text())
    assert meta["steps"] == 12
    assert (tmp_path / "ddp.state" / "latest").read_text().strip() == "step-00000012"


@pytest.mark.slow
def test_stimulus_path_model_trains_under_torchrun(tiny_data: Path, tmp_path: Path) -> None:
    """The core runs on every rank's batch (a rank without stimulus adds zero gradients); with
    per-process batch norm on CPU the run completes and saves."""
    data = experiment(tiny_data, batch_size=2, steps=4, checkpoint_every=4, eval_every=4)
    model = default_model_config("tiny", frame_size=(18, 32), stimulus_path=True)
    data["model"] = model.model_dump(mode="json")
    path = tmp_path / "stimulus.json"
    path.write_text(json.dumps(data))
    done = run_cli("train", str(path), "--out", str(tmp_path / "out"), "--no-progress", torchrun=2)
    assert "2 process(es) x batch 2" in done.stdout
    weights = load_file(str(tmp_path / "out" / "weights.safetensors"))
    assert any(k.startswith("readout.logits.") for k in weights)
