"""The GPU path in one command: attention backends' numerics and speed, and bf16 training steps.

    python benchmarks/gpu_check.py [--device cuda] [--quick] [--json FILE]

1. **Attention** on packed batches (4 heads, head dim 64; 2,048 and 8,192 tokens; 4 equal and
   16 unequal samples; global and time-local): the ``xformers`` backend against ``sdpa`` in
   fp32 (relative error = max |difference| / max |sdpa|, must be < 1e-3), and the forward time
   of each (best of ``--repeats``). Without xformers (or on CPU) ``reference`` stands in for it,
   so the numerics part still runs.
2. **Training steps** of the default model (stimulus path) at the ``7M`` and ``28M`` presets on
   simulated data, batch 16: bf16 autocast (CUDA only), without and with ``torch.compile`` of
   the backbone; median step time, input+query tokens per second, peak memory
   (``torch.cuda.max_memory_allocated``; on CPU the process's peak RSS).

3. **Synchronisations**: one forward pass of the default model (``tiny``) and one training step
   under CUDA's sync debug mode (``torch.cuda.set_sync_debug_mode("warn")``), counting the calls
   that made the host wait: none is expected in the forward pass, and in the step only the
   reads after its backward pass (the loss and the gradient norm). On a CPU this part is
   skipped: ``tests/core/model/test_no_device_sync.py`` checks the same on a simulated device.

Everything is printed and, with ``--json``, written as one JSON object. ``--quick`` shrinks the
sizes (2 presets -> ``tiny``, fewer steps) for a smoke run on a CPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurofm.core.backbone.attention import get_backend, xformers_available
from neurofm.core.data import open_dataset
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig

HEADS, HEAD_DIM = 4, 64


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seqlens(packing: str, total: int) -> tuple[int, ...]:
    if packing == "4 equal":
        return (total // 4,) * 4
    weights = range(1, 17)
    lens = [total * w // sum(weights) for w in weights]
    lens[-1] += total - sum(lens)
    return tuple(lens)


def _times(lens: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Token spans: each sample's tokens tile [0, 2 s) in order."""
    spans = []
    for n in lens:
        start = torch.linspace(0.0, 2.0, n + 1, device=device)
        spans.append(torch.stack([start[:-1], start[1:] + 0.05], -1))
    return torch.cat(spans)


def _best(fn, device: torch.device, repeats: int) -> float:
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def attention_check(device: torch.device, sizes: list[int], repeats: int) -> list[dict]:
    other = "xformers" if device.type == "cuda" and xformers_available() else "reference"
    sdpa, alt = get_backend("sdpa", device), get_backend(other, device)
    rows = []
    gen = torch.Generator(device="cpu").manual_seed(0)
    for total in sizes:
        for packing in ("4 equal", "16 unequal"):
            lens = _seqlens(packing, total)
            q, k, v = (torch.randn(total, HEADS, HEAD_DIM, generator=gen).to(device)
                       for _ in range(3))  # fmt: skip
            times = _times(lens, device)
            for local in (False, True):
                kw = {"q_times": times, "kv_times": times, "local": local} if local else {}
                with torch.no_grad():
                    a = sdpa(q, k, v, lens, lens, **kw)
                    b = alt(q, k, v, lens, lens, **kw)
                    error = float((a - b).abs().max() / a.abs().max().clamp(min=1e-12))
                    t_sdpa = _best(partial(sdpa, q, k, v, lens, lens, **kw), device, repeats)
                    t_alt = _best(partial(alt, q, k, v, lens, lens, **kw), device, repeats)
                rows.append({
                    "tokens": total, "packing": packing, "local": local, "against": other,
                    "rel_error": error, "ok": error < 1e-3,
                    "sdpa_ms": 1e3 * t_sdpa, f"{other}_ms": 1e3 * t_alt,
                })  # fmt: skip
                print(f"attention {total:>6} tokens, {packing:>10}, local={local!s:5}: "
                      f"{other} vs sdpa rel. error {error:.1e} ({'ok' if error < 1e-3 else 'FAIL'}); "
                      f"sdpa {1e3 * t_sdpa:7.2f} ms, {other} {1e3 * t_alt:7.2f} ms")  # fmt: skip
    return rows


def _peak_memory(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB (Linux)


def step_check(device: torch.device, presets: list[str], steps: int, sessions, sim) -> list[dict]:
    rows = []
    bf16 = device.type == "cuda"
    for preset in presets:
        for compile_backbone in (False, True):
            torch.manual_seed(0)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            model = build_model(
                default_model_config(preset, frame_size=(sim.height, sim.width)), sessions
            )
            training = TrainingConfig(
                steps=steps + 3, batch_size=16, warmup_steps=1, eval_every=10_000,
                device=device.type, bf16=bf16, compile=compile_backbone,
            )  # fmt: skip
            trainer = Trainer(model, sessions, training, window_s=2.0, progress=False)
            tokens: list[int] = []
            hook = model.backbone.register_forward_hook(
                lambda m, inp, out, tokens=tokens: tokens.append(
                    int(inp[0].x.shape[0] + inp[1].x.shape[0])
                )
            )
            try:
                for _ in range(3):  # warm-up (and compilation)
                    trainer.train_step()
                _sync(device)
                times = []
                for _ in range(steps):
                    start = time.perf_counter()
                    trainer.train_step()
                    _sync(device)
                    times.append(time.perf_counter() - start)
            except Exception as exc:  # e.g. no compiler toolchain for torch.compile
                print(f"step {preset} compile={compile_backbone}: failed: {type(exc).__name__}: "
                      f"{exc}")  # fmt: skip
                rows.append({"preset": preset, "compile": compile_backbone, "error": str(exc)})
                continue
            finally:
                hook.remove()
            step_s = statistics.median(times)
            n_tokens = statistics.mean(tokens[3:]) if len(tokens) > 3 else float("nan")
            row = {
                "preset": preset, "compile": compile_backbone, "bf16": bf16,
                "params_M": sum(p.numel() for p in model.parameters()) / 1e6,
                "ms_per_step": 1e3 * step_s, "tokens_per_s": n_tokens / step_s,
                "peak_MiB": _peak_memory(device),
            }  # fmt: skip
            rows.append(row)
            print(f"step {preset:>5} compile={compile_backbone!s:5} bf16={bf16!s:5}: "
                  f"{row['params_M']:.1f}M params, {row['ms_per_step']:8.1f} ms/step, "
                  f"{row['tokens_per_s']:9.0f} tokens/s, peak {row['peak_MiB']:.0f} MiB")  # fmt: skip
    return rows


def _synchronising_calls(fn) -> list[str]:
    """Messages of the synchronising CUDA calls ``fn()`` makes (CUDA's sync debug mode)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [str(w.message) for w in caught if "synchroniz" in str(w.message).lower()]


def sync_check(device: torch.device, sessions, sim) -> dict:
    if device.type != "cuda":
        print("sync: skipped on a CPU (tests/core/model/test_no_device_sync.py checks it on a "
              "simulated device)")  # fmt: skip
        return {"skipped": "not on CUDA"}
    torch.manual_seed(0)
    model = build_model(default_model_config("tiny", frame_size=(sim.height, sim.width)), sessions)
    training = TrainingConfig(steps=10, batch_size=16, warmup_steps=1, eval_every=10_000,
                              device="cuda")  # fmt: skip
    trainer = Trainer(model, sessions, training, window_s=2.0, progress=False)
    trainer.train_step()  # caches and optimizer state
    batch = trainer.loader.load(trainer.loader.plan.plan(10_000))
    torch.cuda.synchronize(device)
    forward = _synchronising_calls(
        lambda: model(batch.samples, batch.tasks, np.random.default_rng(0))
    )
    torch.cuda.synchronize(device)
    step = _synchronising_calls(trainer.train_step)
    print(f"sync: {len(forward)} synchronising calls in a forward pass (0 expected), "
          f"{len(step)} in a training step (the reads after its backward)")  # fmt: skip
    for message in forward[:3]:
        print(f"  forward: {message.splitlines()[0]}")
    return {"forward": len(forward), "step": len(step), "forward_first": forward[:3]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run on CPU")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device here; run it on a GPU machine (or --device "
                         "cpu --quick for a smoke run)")  # fmt: skip
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, device {name}, xformers "
          f"{'available' if xformers_available() else 'not available'}")  # fmt: skip
    sizes = [256, 1024] if args.quick else [2048, 8192]
    presets = ["tiny"] if args.quick else ["7M", "28M"]
    steps = min(args.steps, 3) if args.quick else args.steps
    result = {"torch": torch.__version__, "device": name,
              "attention": attention_check(device, sizes, 2 if args.quick else args.repeats)}  # fmt: skip
    sim = SimulationConfig(n_animals=1, sessions_per_animal=2, n_train_trials=10)
    with tempfile.TemporaryDirectory() as tmp:
        sessions = open_dataset(simulate_to_disk(Path(tmp) / "data", sim, progress=False))
        result["steps"] = step_check(device, presets, steps, sessions, sim)
        result["sync"] = sync_check(device, sessions, sim)
    ok = all(r["ok"] for r in result["attention"])
    print(f"attention numerics: {'all within 1e-3' if ok else 'SOME ABOVE 1e-3'}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
        print(f"figures written to {args.json}")


if __name__ == "__main__":
    main()
