"""Run under torchrun by test_shard_sessions.py: train a few steps with sessions sharded over the
ranks, or replicated with each rank drawing the windows it would draw sharded, and write the
per-step losses, this rank's per-session parameter bytes and (rank 0) every weight.

    python -m torch.distributed.run --nproc_per_node 2 shard_worker.py DATA OUT sharded|replicated
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from training_helpers import stimulus_model

from neurofm.core.data import open_dataset
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.distributed import init_distributed
from neurofm.core.training.sharding import SessionShards, session_parameter_names


def main(data: str, out: str, mode: str) -> None:
    info, _ = init_distributed("cpu")
    sessions = open_dataset(data)
    # no feature-weight L1: a penalty over every session's table sees only the rank's own
    # sessions when they are sharded (docs/scale-out.md), so the losses would differ by design
    model = stimulus_model(sessions, readout={"feature_l1": 0.0}, core={"norm": "none"})
    config = TrainingConfig(
        steps=6,
        batch_size=2,
        warmup_steps=2,
        eval_every=3,
        device="cpu",
        num_workers=1,
        prefetch=2,
        shard_sessions=mode == "sharded",
        grad_clip=0.05,
    )  # fmt: skip  (a small clip: the clipping norm must be the global one to match)
    trainer = Trainer(model, sessions, config, window_s=1.0, progress=False)
    if mode == "replicated":  # the windows the sharded run draws on this rank
        plan = SessionShards(model, sessions, rank=info.rank, world_size=info.world_size)
        trainer.loader = trainer.make_loader(plan.own_sessions(sessions))
    params = dict(model.named_parameters())
    names = session_parameter_names(model)
    held = sum(params[n].numel() * params[n].element_size() for n in names)
    result = trainer.fit()
    gathered = trainer.gather_sessions()
    folder = Path(out)
    if info.is_main:
        weights = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        if gathered is not None:
            weights.update(gathered)
        save_file(weights, str(folder / f"{mode}.safetensors"))
    record = {"loss": result.train_loss, "validation": result.validation_loss, "held": held}
    (folder / f"{mode}-{info.rank}.json").write_text(json.dumps(record))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:4])
