"""Content manifests for folders: the sha256 and size of every file, checked before reading.

``seal(folder, format)`` writes ``manifest.json``; ``verify(folder, format, required)`` refuses a
folder with a changed, truncated, missing or unlisted file, naming the file and what to do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from neurofm.errors import NeurofmError

__all__ = ["MANIFEST", "read_json", "seal", "sha256_file", "verify"]

MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path: Path) -> Any:
    """Parse a JSON file; a missing or corrupt file is a :class:`NeurofmError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NeurofmError(f"{path} is missing; expected a folder written by neurofm") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NeurofmError(f"{path} is corrupt ({exc}); re-create the folder") from None


def seal(folder: Path, format_name: str) -> None:
    """Write ``manifest.json`` listing every file directly in ``folder`` with its sha256 and size."""
    files = {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    text = json.dumps({"format": format_name, "version": 1, "files": files}, indent=2)
    (folder / MANIFEST).write_text(text + "\n")


def verify(folder: Path, format_name: str, required: Iterable[str] = ()) -> None:
    """Check every file of ``folder`` against its manifest.

    Raises:
        NeurofmError: no or corrupt manifest, a file listed but missing, a file whose size or hash
            differs (changed or truncated), a file present but not listed (unknown), a required file
            not listed.
    """
    from neurofm.core.storage.folders import describe, hint

    checkpoint = format_name == "neurofm.checkpoint"
    if not (folder / MANIFEST).is_file():
        found = describe(folder) if checkpoint and folder.is_dir() else None
        if found is not None and found != "a folder neurofm did not write":
            raise NeurofmError(
                f"{folder} is {found}, not a checkpoint; {hint(folder, 'checkpoint')}"
            )
        raise NeurofmError(
            f"{folder} has no {MANIFEST}: it is not a {format_name} folder written by this "
            f"neurofm (or was written by an older one); re-save it"
        )
    manifest = read_json(folder / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != format_name:
        found = manifest.get("format") if isinstance(manifest, dict) else manifest
        if checkpoint and found == "neurofm.session":
            raise NeurofmError(
                f"{folder} is a session folder, not a checkpoint; {hint(folder, 'checkpoint')}"
            )
        raise NeurofmError(f"{folder / MANIFEST} describes {found!r}, expected {format_name!r}")
    listed = manifest.get("files", {})
    if not isinstance(listed, dict):
        raise NeurofmError(
            f"{folder / MANIFEST} is malformed: 'files' is {type(listed).__name__}, expected a "
            f"mapping of file name -> {{sha256, bytes}}; re-save the folder"
        )
    problems = []
    for name in required:
        if name not in listed:
            problems.append(f"{name} is not listed in {MANIFEST}")
    present = {p.name for p in folder.iterdir()} - {MANIFEST}
    for name in sorted(present - set(listed)):
        problems.append(f"unknown file {name!r} (not written by neurofm; remove it)")
    for name, info in listed.items():
        path = folder / name
        if not isinstance(info, dict):
            problems.append(
                f"{MANIFEST} entry of {name!r} is {type(info).__name__}, expected a mapping "
                f"with its sha256 and bytes"
            )
        elif "/" in name or "\\" in name or name.startswith("."):
            problems.append(f"{MANIFEST} lists an invalid file name {name!r}")
        elif not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != info.get("bytes"):
            problems.append(
                f"{name} has {path.stat().st_size} bytes, expected {info.get('bytes')} "
                f"(truncated or changed)"
            )
        elif sha256_file(path) != info.get("sha256"):
            problems.append(f"{name} does not match its sha256 (changed after it was written)")
    if problems:
        raise NeurofmError(
            f"{format_name} folder {folder} failed verification: {'; '.join(problems)}. "
            f"Restore the original files or re-save the folder."
        )
