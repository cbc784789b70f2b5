"""Progress bars: a few plain lines into a file or pipe, tqdm on a terminal."""

from __future__ import annotations

import io

from neurofm.core.progress import PlainProgress, progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_redirected_bar_writes_a_line_per_quarter() -> None:
    log = io.StringIO()
    bar = progress(total=1000, desc="training", unit="step", stream=log)
    assert isinstance(bar, PlainProgress)
    for step in range(1000):
        bar.update(1)
        if step == 600:
            bar.set_postfix(loss="0.5")
    bar.close()
    bar.close()  # twice is harmless
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split(" [")[0] for line in lines] == [
        "training: 250/1000 steps (25%)",
        "training: 500/1000 steps (50%)",
        "training: 750/1000 steps (75%)",
        "training: 1000/1000 steps (100%)",
    ]
    assert lines[-1].endswith("loss=0.5")


def test_iterables_slow_work_and_unknown_totals() -> None:
    log = io.StringIO()
    assert list(progress(range(3), desc="sessions", unit="session", stream=log)) == [0, 1, 2]
    assert log.getvalue().splitlines()[-1].startswith("sessions: 3/3 sessions (100%)")
    log = io.StringIO()
    bar = PlainProgress(desc="files", stream=log, every_s=0.0)  # every update is "a minute"
    bar.update(2)
    bar.update(3)
    bar.close()
    assert [line.split(" [")[0] for line in log.getvalue().splitlines()] == ["files: 2", "files: 5"]


def test_a_terminal_gets_tqdm_and_disabled_bars_write_nothing() -> None:
    screen = _Terminal()
    with progress(total=5, desc="eval", stream=screen) as bar:
        bar.update(5)
    assert "\r" in screen.getvalue() and "eval" in screen.getvalue()
    quiet = io.StringIO()
    bar = progress(total=5, desc="eval", enabled=False, stream=quiet)
    bar.update(5)
    bar.close()
    assert quiet.getvalue() == ""


def test_transient_bars_stay_quiet_in_a_log_unless_the_work_is_slow() -> None:
    log = io.StringIO()
    bar = progress(total=100, desc="session", leave=False, stream=log)
    for _ in range(100):
        bar.update(1)
    bar.close()
    assert log.getvalue() == ""  # quick transient work: nothing
    slow = PlainProgress(total=4, desc="session", stream=log, every_s=0.0, quiet=True)
    slow.update(2)
    slow.close()
    assert [line.split(" [")[0] for line in log.getvalue().splitlines()] == ["session: 2/4 (50%)"]
