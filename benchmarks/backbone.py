"""The backbone alone at given sizes: step time, FLOPs, FLOP/s and where the time goes.

One training step of ``PerceiverIO`` (forward, backward of a squared-output loss, AdamW) on a
packed batch of ``--batch`` samples, each with ``--tokens`` input tokens and ``--queries``
output queries over a 2 s window. Defaults are the sizes of the comparison with POYO (d 256,
6 layers, 4 heads, 256 latents, batch 8, 512 queries).

    python benchmarks/backbone.py [--tokens 2048,8192] [--steps 4] [--profile] [--no-poyo]

Prints per size: median step time, tokens/s, GFLOP per step (``FlopCounterMode``), GFLOP/s and
peak RSS; with ``--profile`` the operators that take the most time. ``FlopCounterMode`` counts
no FLOPs for the fused CPU attention kernel (``scaled_dot_product_attention`` counts 0 on CPU),
so on CPU the GFLOP figures leave out the attention products, on both models alike.

POYO side by side. When ``torch_brain`` (torch-brain 0.2.1, which holds POYO) imports, each size
is measured for both models in the same run: ``torch_brain.models.POYO`` is built at the same
sizes (``dim`` d, ``depth`` layers, ``cross_heads`` = ``self_heads`` = heads with ``dim_head``
d / heads, so every attention works in d channels as neurofm's does; the latents laid out as
POYO lays them, gcd(latents, 16) latent steps over the same 2 s window, 256 latents as 16 steps
of 16; dropout 0, as neurofm's default) and
called through its own ``forward`` with the same batch, token counts and queries: unit indices
and token types (all spikes) ``[B, N]``, timestamps ``[B, N]`` (the midpoints of the spans
neurofm's tokens get, from the same random stream), latent indices and timestamps from
``torch_brain.models.poyo.create_linspace_latent_tokens``, one session, output timestamps
``[B, Q]``. Every sample has the same length, so neither side pads: POYO gets no masks, and
neurofm's packing is a reshape; both reach the same ``scaled_dot_product_attention``. The loss
is ``output.pow(2).mean()`` on both, and both train with the same AdamW.

What the POYO measurement includes beyond neurofm's backbone: the embedding lookups that make
its input tokens and queries (unit table of ``--poyo-units`` rows, token-type, latent and session
tables; their gradients and AdamW updates) and the readout ``Linear(d, d)`` after the decoder,
since its ``forward`` cannot be cut short without copying it. neurofm's measurement starts from
given token vectors and ends with the backbone's final LayerNorm (no readout). Both have the
same blocks: input cross-attention + MLP, ``layers`` latent self-attention + MLP, output
cross-attention + MLP. They differ inside them as the two designs do: POYO's MLPs are GEGLU
(``Linear(d, 8d)``, ``Linear(4d, d)``: 1.5x the parameters of neurofm's GELU ``d-4d-d``), it
rotates values as well as queries and keys in the input cross-attention and the self-attentions,
and rotates half of each head's channels.

Interleaving and fairness. Each model runs in its own fresh subprocess per size (this script
with ``--worker``): built, FLOPs counted, one warm-up step, then the parent asks the two for
their timed steps in turn, alternating which goes first (neurofm, POYO; POYO, neurofm; ...), so
load on the machine falls on both alike; while one steps, the other waits on a pipe. Peak
memory is each subprocess's own ``ru_maxrss`` (a per-process high-water mark), so neither model
is charged for the other's memory; both subprocesses import the same modules (torch, neurofm,
torch_brain), and the RSS right after those imports is printed beside each peak. Ratios are
neurofm ÷ POYO (tokens/s: above 1 means neurofm is faster; peak RSS: below 1 means neurofm
needs less). Without torch_brain (or with ``--no-poyo``) neurofm is measured in this process as
before, peak RSS being that of the process so far.

Installing POYO, into a venv of its own (torch-brain's declared dependencies include pynwb,
ray and more; only what ``from torch_brain.models import POYO`` imports is installed here, and
that chain does import ray). From the repository root:

    python3 -m venv poyo-venv && . poyo-venv/bin/activate
    pip install torch==2.13.0      # pin torch: an unpinned one can pull a multi-GB CUDA build
    pip install --no-deps torch-brain==0.2.1
    pip install numpy h5py pandas rich ray==2.60.0
    pip install --no-deps -e . && pip install "pydantic>=2.6,<3" "torchdata>=0.10" \\
        "tqdm>=4.66" pyyaml "matplotlib>=3.8" "safetensors>=0.4"
    OMP_NUM_THREADS=2 python benchmarks/backbone.py
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from neurofm.core.backbone import BackboneConfig, PackedSequence, PerceiverIO

try:  # optional: POYO, from torch-brain (see the docstring for how to install it)
    import torch_brain
    from torch_brain.models import POYO
    from torch_brain.models.poyo import create_linspace_latent_tokens

    POYO_MISSING = ""
except ImportError as error:
    POYO_MISSING = f"{type(error).__name__}: {error}"

WINDOW_S = 2.0
MODELS = ("neurofm", "POYO")
INSTALL_HINT = (
    "pip install --no-deps torch-brain==0.2.1 && pip install numpy h5py pandas rich ray==2.60.0 "
    "(in a venv with a pinned torch; see this script's docstring)"
)


def packed(n_samples: int, n_tokens: int, d: int, generator: torch.Generator) -> PackedSequence:
    xs, spans = [], []
    for _ in range(n_samples):
        start = torch.sort(torch.rand(n_tokens, generator=generator) * 2.0).values
        xs.append(torch.randn(n_tokens, d, generator=generator))
        spans.append(torch.stack([start, start + 0.05], -1))
    return PackedSequence.pack(xs, spans)


def rss_gib() -> float:
    """This process's peak resident set size so far, GiB (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def build_neurofm(
    args: argparse.Namespace, n_tokens: int
) -> tuple[torch.nn.Module, Callable[[], torch.Tensor]]:
    """neurofm's backbone and its loss on one batch."""
    torch.manual_seed(0)
    config = BackboneConfig(d_model=args.d_model, n_heads=args.heads, n_layers=args.layers,
                            n_latents=args.latents)  # fmt: skip
    model = PerceiverIO(config)
    generator = torch.Generator().manual_seed(0)
    inputs = packed(args.batch, n_tokens, args.d_model, generator)
    queries = packed(args.batch, args.queries, args.d_model, generator)
    latents = model.latent_times(torch.full((args.batch,), WINDOW_S))
    return model, lambda: model(inputs, queries, latents).pow(2).mean()


def build_poyo(
    args: argparse.Namespace, n_tokens: int
) -> tuple[torch.nn.Module, Callable[[], torch.Tensor]]:
    """POYO at the same sizes and its loss on a batch with the same token times (docstring)."""
    torch.manual_seed(0)
    n_steps = math.gcd(args.latents, 16)  # POYO's layout: latents repeated at each latent step
    model = POYO(
        sequence_length=WINDOW_S, latent_step=WINDOW_S / n_steps,
        num_latents_per_step=args.latents // n_steps, dim_out=args.d_model, dim=args.d_model,
        depth=args.layers, dim_head=args.d_model // args.heads, cross_heads=args.heads,
        self_heads=args.heads, ffn_dropout=0.0, lin_dropout=0.0, atn_dropout=0.0,
    )  # fmt: skip
    model.unit_emb.initialize_vocab([f"unit{i}" for i in range(args.poyo_units)])
    model.session_emb.initialize_vocab(["session"])
    generator = torch.Generator().manual_seed(0)
    b = args.batch
    # the same random stream as neurofm's side: the same token and query times
    input_times = packed(b, n_tokens, args.d_model, generator).times.mean(-1)
    output_times = packed(b, args.queries, args.d_model, generator).times.mean(-1)
    latent_index, latent_times = create_linspace_latent_tokens(
        0.0, WINDOW_S, step=WINDOW_S / n_steps, num_latents_per_step=args.latents // n_steps
    )
    if latent_index.size != args.latents:
        raise ValueError(f"POYO got {latent_index.size} latents, expected {args.latents}")
    batch = {
        "input_unit_index": torch.randint(
            1, args.poyo_units + 1, (b, n_tokens), generator=generator
        ),  # 0 is POYO's "NA" entry
        "input_timestamps": input_times.reshape(b, n_tokens),
        "input_token_type": torch.zeros(b, n_tokens, dtype=torch.long),
        "latent_index": torch.from_numpy(latent_index).expand(b, -1),
        "latent_timestamps": torch.from_numpy(latent_times).float().expand(b, -1),
        "session_index": torch.full((b,), model.session_emb.tokenizer("session")),
        "output_timestamps": output_times.reshape(b, args.queries),
    }
    return model, lambda: model(**batch).pow(2).mean()


class Runner:
    """One model's training step at one size: built, FLOPs counted, warmed up, ready to time."""

    def __init__(self, model_name: str, args: argparse.Namespace, n_tokens: int) -> None:
        build = build_neurofm if model_name == "neurofm" else build_poyo
        self.model, self.loss = build(args, n_tokens)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, foreach=True)
        with FlopCounterMode(display=False) as counter:
            self.loss().backward()
        self.optimizer.zero_grad(set_to_none=True)
        self.flops = counter.get_total_flops()
        self.step()  # warm-up

    def step(self) -> None:
        self.loss().backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def timed_step(self) -> float:
        start = time.perf_counter()
        self.step()
        return time.perf_counter() - start

    def profile(self) -> str:
        from torch.profiler import profile

        with profile() as prof:
            self.step()
        return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10)


def measure(args: argparse.Namespace, n_tokens: int) -> None:
    """neurofm alone, in this process."""
    runner = Runner("neurofm", args, n_tokens)
    flops = runner.flops
    step_s = statistics.median(runner.timed_step() for _ in range(args.steps))
    tokens = args.batch * (n_tokens + args.queries)
    peak = rss_gib()
    print(f"{n_tokens:>6} tokens/sample: {step_s:6.3f} s/step | {tokens / step_s:8.0f} tokens/s | "
          f"{flops / 1e9:6.1f} GFLOP/step | {flops / step_s / 1e9:6.1f} GFLOP/s | peak RSS "
          f"{peak:.2f} GiB (the process so far)")  # fmt: skip
    if args.profile:
        print(runner.profile())


def worker(args: argparse.Namespace) -> None:
    """One model at one size in this fresh process, driven over stdin/stdout by ``compare``.

    Replies are JSON lines: when ready, one per ``step`` request, and one (the peak RSS) at the
    end; anything else printed goes to stderr.
    """
    replies, sys.stdout = sys.stdout, sys.stderr

    def reply(**fields: object) -> None:
        replies.write(json.dumps(fields) + "\n")
        replies.flush()

    start_rss = rss_gib()
    runner = Runner(args.worker, args, int(args.tokens))
    reply(flops=runner.flops, params=runner.params, threads=torch.get_num_threads(),
          start_rss=start_rss)  # fmt: skip
    for line in iter(sys.stdin.readline, ""):
        if line.strip() != "step":
            break
        reply(seconds=runner.timed_step())
    peak = rss_gib()  # before the profiler, which holds its own records
    reply(peak_rss=peak, profile=runner.profile() if args.profile else "")


class Worker:
    """The parent's end of one ``--worker`` subprocess."""

    def __init__(self, model_name: str, args: argparse.Namespace, n_tokens: int) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", model_name,
                   "--tokens", str(n_tokens)]  # fmt: skip
        for name in ("batch", "queries", "d_model", "layers", "heads", "latents", "poyo_units"):
            command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        command += ["--profile"] if args.profile else []
        self.name = model_name
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.ready = self.read()

    def read(self) -> dict:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker exited ({self.process.wait()})")
        return json.loads(line)

    def ask(self, request: str) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> dict:
        end = self.ask("done")
        self.process.wait()
        return end


def compare(args: argparse.Namespace, n_tokens: int) -> None:
    """neurofm and POYO at one size, each in its own subprocess, timed steps interleaved."""
    workers = {}
    for name in MODELS:  # one after the other: each builds and warms up alone
        workers[name] = Worker(name, args, n_tokens)
    times: dict[str, list[float]] = {name: [] for name in MODELS}
    for i in range(args.steps):
        for name in MODELS if i % 2 == 0 else MODELS[::-1]:
            times[name].append(workers[name].ask("step")["seconds"])
    ends = {name: worker.close() for name, worker in workers.items()}
    tokens = args.batch * (n_tokens + args.queries)
    rate, peak = {}, {}
    print(f"{n_tokens:>6} tokens/sample ({tokens} tokens/step):")
    for name in MODELS:
        step_s, ready, end = statistics.median(times[name]), workers[name].ready, ends[name]
        rate[name], peak[name] = tokens / step_s, end["peak_rss"]
        spread = f"{min(times[name]):.3f}-{max(times[name]):.3f}"
        print(f"  {name:<8} {step_s:6.3f} s/step ({spread}) | {rate[name]:8.0f} tokens/s | "
              f"{ready['flops'] / 1e9:6.1f} GFLOP/step | {ready['flops'] / step_s / 1e9:6.1f} "
              f"GFLOP/s | {ready['params'] / 1e6:5.2f} M params | peak RSS {peak[name]:.2f} GiB "
              f"({ready['start_rss']:.2f} after imports), {ready['threads']} threads")  # fmt: skip
    print(f"  neurofm ÷ POYO: tokens/s {rate['neurofm'] / rate['POYO']:.2f}x | peak RSS "
          f"{peak['neurofm'] / peak['POYO']:.2f}x")  # fmt: skip
    if args.profile:
        for name in MODELS:
            print(f"{name}, one step:\n{ends[name]['profile']}")


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
    parser.add_argument("--no-poyo", action="store_true",
                        help="measure neurofm only, even where torch_brain imports")  # fmt: skip
    parser.add_argument("--poyo-units", type=int, default=256,
                        help="rows of POYO's unit embedding table (its input tokens' units)")  # fmt: skip
    parser.add_argument("--worker", choices=MODELS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; d {args.d_model}, "
          f"{args.layers} layers, {args.heads} heads, {args.latents} latents, batch "
          f"{args.batch}, {args.queries} queries")  # fmt: skip
    with_poyo = not (POYO_MISSING or args.no_poyo)
    if POYO_MISSING:
        print(f"POYO not measured: torch_brain does not import here ({POYO_MISSING}); to measure "
              f"it beside neurofm: {INSTALL_HINT}")  # fmt: skip
    elif args.no_poyo:
        print("POYO not measured (--no-poyo)")
    else:
        print(f"beside POYO from torch-brain {torch_brain.__version__}: each model in its own "
              f"subprocess, timed steps interleaved, peak RSS per process")  # fmt: skip
    for n_tokens in (int(n) for n in args.tokens.split(",")):
        (compare if with_poyo else measure)(args, n_tokens)


if __name__ == "__main__":
    main()
