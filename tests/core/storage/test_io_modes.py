"""Files and folders written atomically get the usual modes (the umask's), not the 0600 / 0700 of
temporary files, so a report or a checkpoint can be read by the rest of a lab."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from neurofm.core.storage.files import atomic_directory, atomic_write_text


def test_atomic_files_and_folders_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        with atomic_directory(tmp_path / "out") as tmp:
            atomic_write_text(tmp / "b.txt", "b")
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.txt", "p")
    finally:
        os.umask(old)
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "a.json") == 0o644
    assert mode(tmp_path / "out") == 0o755
    assert mode(tmp_path / "out" / "b.txt") == 0o644
    assert mode(tmp_path / "private.txt") == 0o600
