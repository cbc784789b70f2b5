"""Progress bars for long work: a tqdm bar on a terminal, a few plain lines into a file or pipe.

A bar redrawn with ``\\r`` thousands of times turns a redirected log (``neurofm demo > log``,
CI) into one enormous line; so when the stream is not a terminal, :func:`progress` writes one
line at each quarter of the work (and at most a minute apart when the total is unknown or the
work is slow), then a last line at the end.

Example:
    >>> import io
    >>> log = io.StringIO()
    >>> for _ in progress(range(1000), desc="training", unit="step", stream=log):
    ...     pass
    >>> print(log.getvalue().splitlines()[-1].split(" [")[0])
    training: 1000/1000 steps (100%)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tqdm.auto import tqdm

__all__ = ["PlainProgress", "progress"]


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool = True,
    leave: bool = True,
    stream: IO[str] | None = None,
) -> Any:
    """A progress bar over ``iterable`` (or updated by hand with ``update(n)``): tqdm when
    ``stream`` (default stderr) is a terminal, :class:`PlainProgress` otherwise, a silent tqdm
    when not ``enabled``. Both support ``update``, ``set_postfix``, ``close`` and ``with``."""
    stream = stream if stream is not None else sys.stderr
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if _is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, file=stream)
    return PlainProgress(
        iterable, total=total, desc=desc, unit=unit, stream=stream, quiet=not leave
    )


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class PlainProgress:
    """Progress as plain lines ``desc: n/total unit (p%) [elapsed] postfix``: at each quarter of
    ``total``, at least every ``every_s`` seconds of work otherwise, and at the end. ``quiet``
    (a transient bar, ``leave=False``: one session of an evaluation, say): only the lines of work
    that lasts longer than ``every_s``, and the last line only after one of them."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        stream: IO[str] | None = None,
        every_s: float = 60.0,
        quiet: bool = False,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.quiet = quiet
        self.n = 0
        self.postfix = ""
        self._start = self._last = time.monotonic()
        self._quarter = 0
        self._closed = False
        self._written_at = -1

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this progress bar has no iterable; call update(n)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        quarter = 4 * self.n // self.total if self.total and not self.quiet else 0
        if (self.total and quarter > self._quarter and self.n < self.total) or (
            now - self._last >= self.every_s
        ):
            self._quarter = max(self._quarter, quarter)
            self._write(now)

    def set_postfix(self, **values: object) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._written_at != self.n and not (self.quiet and self._written_at < 0):
            self._write(time.monotonic())

    def _write(self, now: float) -> None:
        self._last = now
        self._written_at = self.n
        units = f" {self.unit}s" if self.unit not in ("", "it") else ""
        count = f"{self.n}/{self.total}{units}" if self.total else f"{self.n}{units}"
        share = f" ({100 * self.n // self.total}%)" if self.total else ""
        elapsed = _clock(now - self._start)
        tail = f" {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {count}{share} [{elapsed}]{tail}", file=self.stream, flush=True)


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes}:{s:02d}"
