"""The backbone alone at given sizes: step time, FLOPs, FLOP/s and where the time goes.

One training step of ``PerceiverIO`` (forward, backward of a squared-output loss, AdamW) on a
packed batch of ``--batch`` samples, each with ``--tokens`` input tokens and ``--queries``
output queries over a 2 s window. Defaults are the sizes of the comparison with POYO (d 256,
6 layers, 4 heads, 256 latents, batch 8, 512 queries).

    python benchmarks/backbone.py [--tokens 2048,8192] [--steps 4] [--profile]

Prints per size: median step time, tokens/s, GFLOP per step (``FlopCounterMode``), GFLOP/s and
peak RSS; with ``--profile`` the operators that take the most time.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurofm.core.backbone import BackboneConfig, PackedSequence, PerceiverIO


def packed(n_samples: int, n_tokens: int, d: int, generator: torch.Generator) -> PackedSequence:
    xs, spans = [], []
    for _ in range(n_samples):
        start = torch.sort(torch.rand(n_tokens, generator=generator) * 2.0).values
        xs.append(torch.randn(n_tokens, d, generator=generator))
        spans.append(torch.stack([start, start + 0.05], -1))
    return PackedSequence.pack(xs, spans)


def measure(args: argparse.Namespace, n_tokens: int) -> None:
    torch.manual_seed(0)
    config = BackboneConfig(d_model=args.d_model, n_heads=args.heads, n_layers=args.layers,
                            n_latents=args.latents)  # fmt: skip
    model = PerceiverIO(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    generator = torch.Generator().manual_seed(0)
    inputs = packed(args.batch, n_tokens, args.d_model, generator)
    queries = packed(args.batch, args.queries, args.d_model, generator)
    latents = model.latent_times(torch.full((args.batch,), 2.0))

    def step() -> None:
        model(inputs, queries, latents).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as counter:
        model(inputs, queries, latents).pow(2).mean().backward()
    optimizer.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    step()  # warm-up
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    tokens = args.batch * (n_tokens + args.queries)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)
    print(f"{n_tokens:>6} tokens/sample: {step_s:6.3f} s/step | {tokens / step_s:8.0f} tokens/s | "
          f"{flops / 1e9:6.1f} GFLOP/step | {flops / step_s / 1e9:6.1f} GFLOP/s | peak RSS "
          f"{peak:.2f} GiB (the process so far)")  # fmt: skip
    if args.profile:
        from torch.profiler import profile

        with profile() as prof:
            step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", default="2048,8192", help="input tokens per sample, a list")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--queries", type=int, default=512)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--latents", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="print the top operators")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; d {args.d_model}, "
          f"{args.layers} layers, {args.heads} heads, {args.latents} latents, batch "
          f"{args.batch}, {args.queries} queries")  # fmt: skip
    for n_tokens in (int(n) for n in args.tokens.split(",")):
        measure(args, n_tokens)


if __name__ == "__main__":
    main()
