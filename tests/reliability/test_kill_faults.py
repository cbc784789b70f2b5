"""Processes killed with SIGKILL in the middle of ``neurofm simulate`` and ``neurofm import`` leave
nothing at the output path; what they leave beside it is a hidden ``.partial-*`` folder that readers
ignore, and running the command again succeeds. Kills during checkpoint saves and training are in
tests/core/model/test_checkpoint.py and tests/core/training/test_resume.py."""

from __future__ import annotations

import json
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import start_python, write_small_session

from neurofm.core.cli import main
from neurofm.core.data import open_dataset
from neurofm.core.data.simulation import SimulationConfig
from neurofm.errors import SessionFormatError

sys.path.insert(0, str(Path(__file__).parents[1] / "plugins" / "sources"))
from source_fixtures import make_experanto

# Runs the CLI in a child process that reports the first session it finished writing, so the parent
# can kill it while the output is known to be half done. After the second session the child waits:
# the kill lands somewhere between the end of the first session and the end of the second, never
# after the last one (small sessions can all be written within the parent's random delay).
CHILD = """
import sys
import time
import {module} as target
real = target.{function}
calls = 0
def reporting(*args, **kwargs):
    global calls
    result = real(*args, **kwargs)
    calls += 1
    if calls == 1:
        print("session written", flush=True)
    else:
        time.sleep(120)
    return result
target.{function} = reporting
from neurofm.core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _kill_after_first_session(module: str, function: str, *argv: str) -> None:
    proc = start_python(CHILD.format(module=module, function=function), *argv)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "session written", (line, proc.stderr.read())
        time.sleep(random.uniform(0.0, 0.05))  # somewhere inside the next session
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the command finished before it was killed"


def _assert_nothing_visible(parent: Path, out: Path) -> None:
    assert not out.exists()
    partial = [p.name for p in parent.iterdir() if p.name.startswith(f".{out.name}.partial-")]
    assert partial, "the kill landed before any output was written"
    assert sorted(p.name for p in parent.iterdir() if not p.name.startswith(".")) == ["good"]
    assert [s.session_id for s in open_dataset(parent)] == ["good"]  # the partial is ignored
    with pytest.raises(SessionFormatError, match="does not exist"):
        open_dataset(out)


def test_sigkill_during_simulate_leaves_no_partial_dataset(tmp_path: Path) -> None:
    parent = tmp_path / "datasets"
    write_small_session(parent, "good")
    config = SimulationConfig.tiny().model_copy(update={"sessions_per_animal": 5})
    config_file = tmp_path / "sim.json"
    config_file.write_text(config.model_dump_json())
    out = parent / "sim"
    argv = ("simulate", str(out), "--config", str(config_file))
    _kill_after_first_session("neurofm.core.data.simulate_to_disk", "write_session", *argv)
    _assert_nothing_visible(parent, out)

    assert main(list(argv)) == 0  # the left-over partial does not block a new run
    assert len(open_dataset(out)) == 5
    assert json.loads((out / "simulation.json").read_text())["sessions_per_animal"] == 5


def test_sigkill_during_import_leaves_no_partial_dataset(tmp_path: Path) -> None:
    src = tmp_path / "experiments"
    for k in range(5):
        make_experanto(src / f"mouse1-1-{k}", np.random.default_rng(k))
    parent = tmp_path / "datasets"
    write_small_session(parent, "good")
    out = parent / "imported"
    argv = ("import", "experanto", str(src), str(out), "--quiet")
    _kill_after_first_session("neurofm.plugins.sources.experanto", "describe_session", *argv)
    _assert_nothing_visible(parent, out)

    assert main(list(argv)) == 0
    assert sorted(s.session_id for s in open_dataset(out)) == [f"mouse1-1-{k}" for k in range(5)]
