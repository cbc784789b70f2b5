"""One writer per output folder: a lock file beside the folder, held for the whole run.

``FolderLock(path)`` holds ``<path>.lock``, a JSON file with the holder's pid, host and start
time, for as long as the block runs. The file is created atomically (written, locked with
``flock`` and then linked into place), so a second run sees a complete lock and is refused with
the holder's pid and host. A lock whose holder died (killed, crashed, machine rebooted) is
*stale*: its ``flock`` is free. A stale lock is never broken without a word: it is reported
(``on_stale`` receives a line naming the dead holder) and then taken over.

Example:
    >>> with FolderLock("runs/model", command="neurofm train"):   # doctest: +SKIP
    ...     ...  # write runs/model and runs/model.state
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from neurofm.errors import NeurofmError

__all__ = ["FolderLock", "LockedError", "lock_path"]


class LockedError(NeurofmError):
    """The folder is being written by another live process."""


def lock_path(path: str | Path) -> Path:
    """The lock file of output folder ``path``: ``<path>.lock`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def _describe(info: object) -> str:
    if not isinstance(info, dict):
        return "an unknown process"
    started = info.get("started")
    since = (
        f", since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}"
        if isinstance(started, int | float)
        else ""
    )
    command = f" ({info['command']})" if isinstance(info.get("command"), str) else ""
    return f"process {info.get('pid')} on host {info.get('host')}{command}{since}"


def _read(fd: int) -> object:
    with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 1 << 16).decode("utf-8"))
    return None


class FolderLock:
    """Hold the lock of output folder ``path`` (a context manager; also ``acquire``/``release``).

    Raises :class:`LockedError` on entry when a live process holds it, naming its pid and host.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        command: str = "neurofm",
        on_stale: Callable[[str], None] | None = None,
    ) -> None:
        self.folder = Path(path)
        self.path = lock_path(path)
        self.command = command
        self.on_stale = on_stale
        self._fd: int | None = None

    def _new_lock_file(self) -> int:
        """A locked, filled temporary file beside the lock; returns its descriptor."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.name}.{os.getpid()}-", suffix=".tmp", dir=self.path.parent
        )
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                "command": self.command, "folder": str(self.folder)}  # fmt: skip
        os.write(fd, (json.dumps(info) + "\n").encode("utf-8"))
        os.fsync(fd)
        self._tmp = Path(tmp)
        return fd

    def acquire(self) -> None:
        fd = self._new_lock_file()
        try:
            for _ in range(20):
                try:
                    os.link(self._tmp, self.path)  # atomic: fails if a lock is there
                    self._fd = fd
                    return
                except FileExistsError:
                    pass
                if self._take_over_if_stale(fd):
                    self._fd = fd
                    return
            raise LockedError(f"could not take the lock {self.path}; try again")
        except BaseException:
            if self._fd is None:
                os.close(fd)
            raise
        finally:
            with contextlib.suppress(OSError):
                self._tmp.unlink()

    def _take_over_if_stale(self, fd: int) -> bool:
        """Replace an existing lock whose holder is dead with ours; raise if it is alive."""
        try:
            other = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False  # released meanwhile: try to link again
        try:
            info = _read(other)
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockedError(
                    f"{self.folder} is in use by {_describe(info)}: its lock {self.path} is held. "
                    f"Wait for that run to finish (or stop it), or write to another folder"
                ) from None
            try:
                if os.stat(self.path).st_ino != os.fstat(other).st_ino:
                    return False  # someone else replaced it meanwhile: start again
            except FileNotFoundError:
                return False
            os.replace(self._tmp, self.path)  # we hold the dead holder's lock: swap in ours
        finally:
            os.close(other)
        if self.on_stale is not None:
            self.on_stale(
                f"{self.path} was left by {_describe(info)}, which no longer runs (killed or "
                f"crashed); taking it over"
            )
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
