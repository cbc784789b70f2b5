"""Atomic file and folder writes: a reader sees the old content or the new, never half of either.

Temporary names carry the writer's process id (``.<name>.partial-<pid>-*`` folders,
``.<name>.<pid>-*.tmp`` files, ``.<name>.old-<pid>`` copies), so the left-overs of a writer that
was killed can be told from those of one still running (:func:`remove_stale_temporaries`).
A write that fails because the disk (or the file-size limit) is full raises
:class:`~neurofm.errors.DiskFullError` naming the path and the bytes it needed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from neurofm.errors import DiskFullError

__all__ = [
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_text",
    "disk_full_guard",
    "folder_bytes",
    "is_disk_full",
    "pid_alive",
    "remove_stale_temporaries",
]

_FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_FULL_TEXT = ("no space left", "file too large", "disk quota", "os error 28", "os error 27")
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")
_TEMPORARY = re.compile(r"^\..+\.(?:partial-(\d+)-.*|(\d+)-.*\.tmp|old-(\d+))$")


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a write failed for lack of space (or the file-size limit).

    safetensors reports the operating-system error inside its own exception type, so the
    message is checked as well as ``errno``.
    """
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    text = str(exc).lower()
    if isinstance(exc, OSError) and _SHORT_WRITE.search(text):
        return True  # numpy's tofile: the file system took fewer bytes than were written
    return any(t in text for t in _FULL_TEXT)


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        with contextlib.suppress(OSError):
            if folder.exists():
                return shutil.disk_usage(folder).free
    return None


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@contextlib.contextmanager
def disk_full_guard(path: str | Path, needed_bytes: int | None) -> Iterator[None]:
    """Turn a disk-full failure inside the block into a :class:`DiskFullError` naming ``path``."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        path = Path(getattr(exc, "filename", None) or path)
        need = "" if needed_bytes is None else f"it needed about {_size(needed_bytes)}, "
        free = _free_bytes(path)
        free_text = "" if free is None else f"{_size(free)} are free there"
        raise DiskFullError(
            f"no space left writing {path} ({need}{free_text or 'free space unknown'}; "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else exc!r}); "
            f"free some space or write somewhere else, then run again"
        ) from None


def _umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def folder_bytes(path: Path) -> int:
    """Total size of the files directly and recursively under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with disk_full_guard(path, len(data)):
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent
        )
        try:
            os.chmod(tmp, 0o666 & ~_umask())  # as open() would create it, not mkstemp's 0600
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name and move it to ``path`` only if the block succeeds.

    On error (or ``KeyboardInterrupt``/kill before the rename) nothing appears at ``path``; a left-over
    temporary folder is named ``.<name>.partial-<pid>-*`` beside it and is ignored by readers. With
    ``overwrite=True`` an existing folder is replaced (the old one is moved to ``.<name>.old-<pid>``
    and removed only after the new one is in place).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; choose another output path or pass overwrite=True (--overwrite)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-{os.getpid()}-", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # as mkdir would create it, not mkdtemp's 0700
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        os.replace(path, old)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(
    folder: str | Path, names: tuple[str, ...] | None = None
) -> list[Path]:
    """Remove the ``.partial``/``.tmp`` left-overs of writers that no longer run; returns them.

    Only temporaries whose writer's process id is recorded in their name and is not running are
    removed (``names``: only those of these target names). An ``.old-<pid>`` copy is removed only
    when the folder it was the previous version of exists again (the overwrite finished);
    otherwise it is the only copy and is kept for recovery.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in sorted(folder.iterdir()):
        match = _TEMPORARY.match(entry.name)
        if match is None:
            continue
        if names is not None and not any(entry.name.startswith(f".{n}.") for n in names):
            continue
        partial, tmp, old = match.groups()
        pid = int(partial or tmp or old)
        if pid == os.getpid() or pid_alive(pid):
            continue
        if old is not None:
            target = entry.name[1 : -len(f".old-{old}")]
            if not (folder / target).exists():
                continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry)
    return removed
