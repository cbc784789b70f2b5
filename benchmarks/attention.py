"""Benchmark: packed attention paths over variable-length samples (forward pass).

Compares, for self-attention over ``total`` packed tokens (4 heads, head dim 64):

- ``packed``: our ``sdpa`` backend (equal-length samples batched into one SDPA call, no dense mask);
- ``dense``: one SDPA call over all tokens with a dense ``total x total`` boolean block-diagonal
  mask (mask construction included, as it is rebuilt for every batch);
- ``loop``: one SDPA call per sample;
- ``xformers``: our xformers backend (``BlockDiagonalMask``), only on CUDA with xformers installed.

What is measured, honestly:

- time: best (minimum) wall time of ``--repeats`` forward calls after one warm-up call, under
  ``torch.no_grad``; the minimum is the figure least disturbed by other load on the machine;
- memory on CPU: each (variant, size, packing) runs in a fresh subprocess; the figure is the growth
  of the process's peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) during the
  first call, i.e. the extra peak memory of the attention call beyond its inputs. It includes
  allocator overheads and is quantised by page size; small figures (< 1 MiB) are noise.
- memory on CUDA: ``torch.cuda.max_memory_allocated`` growth during the first call.

Packings: ``4 equal`` (4 samples of total/4 tokens) and ``16 unequal`` (16 samples with lengths
proportional to 1..16, so no two samples share a length: the packed path degenerates to a loop plus
gathers). ``dense`` is skipped above ``--dense-max`` tokens (its mask alone is total^2 bytes).

Usage: ``python benchmarks/attention.py [--quick] [--device cuda]``. Ratios are from the same run.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurofm.core.backbone.attention import get_backend

HEADS, HEAD_DIM = 4, 64
SIZES = (1024, 2048, 4096, 8192, 16384, 32768)
PACKINGS = ("4 equal", "16 unequal")


def seqlens_for(packing: str, total: int) -> tuple[int, ...]:
    """Token counts of the samples of a packing, summing to ``total``."""
    if packing == "4 equal":
        return (total // 4,) * 4
    weights = list(range(1, 17))
    lens = [total * w // sum(weights) for w in weights]
    lens[-1] += total - sum(lens)
    return tuple(lens)


def run_variant(variant: str, q: torch.Tensor, lens: tuple[int, ...]) -> torch.Tensor:
    """One forward call of ``variant``. Shape: q ``[total, H, Dh]`` -> ``[total, H, Dh]``."""
    if variant in ("packed", "xformers"):
        backend = get_backend("sdpa" if variant == "packed" else "xformers")
        return backend(q, q, q, lens, lens)
    if variant == "dense":
        ids = torch.repeat_interleave(
            torch.arange(len(lens), device=q.device), torch.tensor(lens, device=q.device)
        )
        mask = ids[:, None] == ids[None, :]
        qh = q.transpose(0, 1)[None]
        return F.scaled_dot_product_attention(qh, qh, qh, attn_mask=mask)[0].transpose(0, 1)
    if variant == "loop":
        outs = []
        for qi in q.split(list(lens)):
            qh = qi.transpose(0, 1)[None]
            outs.append(F.scaled_dot_product_attention(qh, qh, qh)[0].transpose(0, 1))
        return torch.cat(outs)
    raise ValueError(f"unknown variant {variant!r}")


def child(variant: str, total: int, packing: str, device: str, repeats: int) -> dict[str, float]:
    """Measure one variant in this (fresh) process; see the module docstring."""
    dev = torch.device(device)
    lens = seqlens_for(packing, total)
    q = torch.randn(total, HEADS, HEAD_DIM, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    with torch.no_grad():
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        run_variant(variant, q, lens)
        sync()
        if dev.type == "cuda":
            peak = torch.cuda.max_memory_allocated() - base
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run_variant(variant, q, lens)
            sync()
            times.append(time.perf_counter() - start)
    return {"ms": 1e3 * min(times), "mib": peak / 2**20}


def measure(variant: str, total: int, packing: str, device: str, repeats: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", variant, str(total), packing, device, str(repeats)]
    cmd += ["--threads", str(torch.get_num_threads())]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} {total} {packing} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="stop at 4k tokens")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dense-max", type=int, default=16384, help="largest total for dense")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.child:
        variant, total, packing, device, repeats = args.child
        print(json.dumps(child(variant, int(total), packing, device, int(repeats))))
        return

    variants = ["packed", "dense", "loop"]
    if args.device.startswith("cuda"):
        try:
            get_backend("xformers", device=args.device)
            variants.append("xformers")
        except RuntimeError as err:
            print(f"xformers not measured: {err}")
    print(f"device {args.device}, {torch.get_num_threads()} threads, H={HEADS}, Dh={HEAD_DIM}")
    header = f"{'total':>6} {'packing':<11}" + "".join(
        f" {v + ' ms':>12} {'MiB':>8}" for v in variants
    )
    print(header + f" {'packed/dense':>16} {'packed/loop':>16}")
    sizes = [s for s in SIZES if not args.quick or s <= 4096]
    for total in sizes:
        for packing in PACKINGS:
            res = {}
            for variant in variants:
                if variant == "dense" and total > args.dense_max:
                    continue
                res[variant] = measure(variant, total, packing, args.device, args.repeats)
            row = f"{total:>6} {packing:<11}"
            for variant in variants:
                r = res.get(variant)
                row += f" {r['ms']:>12.1f} {r['mib']:>8.1f}" if r else f" {'skipped':>12} {'':>8}"
            for other in ("dense", "loop"):
                if other in res:
                    t = res["packed"]["ms"] / res[other]["ms"]
                    m = (res["packed"]["mib"] + 1e-9) / max(res[other]["mib"], 1e-9)
                    row += f" {f'{t:.2f}x t {m:.2f}x m':>16}"
                else:
                    row += f" {'-':>16}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
