"""``neurofm simulate OUT``: write a simulated mouse V1 dataset."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    from neurofm.core.config import load_config_file
    from neurofm.core.data.simulate_to_disk import simulate_to_disk
    from neurofm.core.data.simulation import SimulationConfig

    if args.config:
        config = load_config_file(args.config, SimulationConfig)
    else:
        config = SimulationConfig.tiny() if args.tiny else SimulationConfig()
    if args.seed is not None:
        config = config.model_copy(update={"seed": args.seed})
    progress = sys.stderr.isatty()  # no progress bar in logs and pipes
    out = simulate_to_disk(args.out, config, overwrite=args.overwrite, progress=progress)
    print(f"wrote {config.n_animals * config.sessions_per_animal} simulated sessions to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="write a simulated mouse V1 dataset (session folders)")
    p.add_argument("out", help="output folder (must not exist unless --overwrite)")
    p.add_argument("--config", help="SimulationConfig as JSON or YAML")
    p.add_argument("--tiny", action="store_true", help="the small test-size configuration")
    p.add_argument("--seed", type=int, default=None, help="seed over the configuration's")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=run)
