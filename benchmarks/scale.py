"""Per-rank memory of per-session parameters, replicated and sharded (``training.shard_sessions``).

A synthetic corpus of many sessions (default 64 sessions x 2,000 neurons, the ``7M`` preset: d
256) is trained for a few steps under ``torchrun`` with 1, 2 and 4 CPU processes (gloo), each with
the per-session parameters replicated on every rank and sharded over the ranks. Each rank reports:

- the bytes of the per-session parameters it holds, their gradients and their AdamW state
  (counted from the tensors: exact);
- the same for the shared parameters;
- its peak resident memory (``ru_maxrss``; the whole process: Python, torch, data, activations);
- its median step time.

Printed per run: the per-session bytes of the largest rank against (all sessions' bytes /
processes); the target is within 10 %.

    python benchmarks/scale.py [--sessions 64] [--neurons 2000] [--preset 7M] [--processes 1,2,4]
                               [--steps 3] [--data DIR]

``--data`` reuses a corpus written by an earlier run (it is simulated into a temporary folder
otherwise: about 1 GB for the defaults). On a 2-core machine 4 processes share 2 cores, so the
step times are only comparable within one process count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def worker(args: argparse.Namespace) -> None:
    """One rank of a run (started by torchrun): train, then write this rank's figures."""
    import torch

    from neurofm.core.data import open_dataset
    from neurofm.core.model.builder import build_model
    from neurofm.core.model.presets import default_model_config
    from neurofm.core.training import Trainer
    from neurofm.core.training.config import TrainingConfig
    from neurofm.core.training.distributed import init_distributed
    from neurofm.core.training.sharding import session_parameter_names

    info, _ = init_distributed("cpu")
    sessions = open_dataset(args.data)
    height, width = sessions[0].stream_data("movie").shape[1:3]
    torch.manual_seed(0)
    model = build_model(default_model_config(args.preset, frame_size=(height, width)), sessions)
    per_session = set(session_parameter_names(model))
    config = TrainingConfig(
        steps=args.steps, batch_size=args.batch_size, warmup_steps=1, eval_every=10**6,
        device="cpu", num_workers=1, prefetch=2, shard_sessions=args.mode == "sharded",
    )  # fmt: skip
    trainer = Trainer(model, sessions, config, window_s=1.0, progress=False)
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - start)

    def local(t: torch.Tensor) -> torch.Tensor:  # this rank's part of an FSDP2 DTensor
        return t.to_local() if hasattr(t, "to_local") else t

    held = {"sessions": [], "shared": []}
    for name, p in model.named_parameters():
        kind = "sessions" if name in per_session else "shared"
        state = trainer.optimizer.state.get(p, {}).values()
        tensors = [p, p.grad, *(v for v in state if isinstance(v, torch.Tensor) and v.ndim > 0)]
        held[kind].extend(local(t) for t in tensors if t is not None)
    record = {
        "rank": info.rank,
        "sessions_bytes": tensor_bytes(held["sessions"]),
        "shared_bytes": tensor_bytes(held["shared"]),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "step_s": statistics.median(times[1:] or times),
    }
    Path(args.out, f"rank{info.rank}.json").write_text(json.dumps(record))
    if info.distributed:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def run(args: argparse.Namespace, processes: int, mode: str, out: Path) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
           "--standalone", __file__, "--worker", "--mode", mode, "--data", str(args.data),
           "--out", str(out), "--preset", args.preset, "--steps", str(args.steps),
           "--batch-size", str(args.batch_size)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, args.threads // processes))}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"{processes} process(es), {mode}: failed\n{done.stderr[-3000:]}")
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(processes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--neurons", type=int, default=2000)
    parser.add_argument("--preset", default="7M")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads shared by the ranks")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="replicated", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from neurofm.core.data.simulate_to_disk import simulate_to_disk
    from neurofm.core.data.simulation import SimulationConfig

    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            animals = max(1, args.sessions // 4)
            sim = SimulationConfig(
                n_animals=animals, sessions_per_animal=args.sessions // animals,
                neurons_per_session=args.neurons, n_train_trials=2, n_validation_trials=0,
                n_test_clips=1, trial_duration_s=2.0, height=18, width=32,
            )  # fmt: skip
            start = time.perf_counter()
            args.data = simulate_to_disk(Path(tmp) / "data", sim, progress=True)
            print(f"corpus simulated in {time.perf_counter() - start:.0f} s: {args.data}")
        print(f"{args.sessions} sessions x {args.neurons} neurons, preset {args.preset}, "
              f"batch {args.batch_size} per rank, {args.steps} steps, "
              f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        print("| processes | per-session parameters | per-session MiB per rank (min-max) "
              "| all sessions / processes | largest / share | shared MiB per rank "
              "| peak RSS MiB per rank (max) | step s (median) |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        total = 0
        for processes in [int(p) for p in args.processes.split(",")]:
            modes = ["replicated"] if processes == 1 else ["replicated", "sharded"]
            for mode in modes:
                ranks = run(args, processes, mode, Path(tmp) / f"{processes}-{mode}")
                held = [r["sessions_bytes"] for r in ranks]
                if mode == "replicated":  # every rank holds every session
                    total = max(held)
                share = total / processes
                mib = 2**20
                print(
                    f"| {processes} | {mode} | {min(held) / mib:.1f}-{max(held) / mib:.1f} "
                    f"| {share / mib:.1f} | {max(held) / share:.3f} "
                    f"| {max(r['shared_bytes'] for r in ranks) / mib:.1f} "
                    f"| {max(r['peak_rss_bytes'] for r in ranks) / mib:.0f} "
                    f"| {statistics.median(r['step_s'] for r in ranks):.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
