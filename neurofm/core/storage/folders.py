"""What a folder holds, for errors that name the folder to pass instead.

The folders neurofm writes say what they are in their ``manifest.json`` (``format``:
``neurofm.session``, ``neurofm.checkpoint``, ...); a dataset is a folder of session folders, and
the demo's folder holds ``data/``, ``checkpoint/`` and ``report/``. :func:`describe` reads that
(one level down), so a checkpoint given as data, data given as a checkpoint or a parent folder
get one line naming what was found and which folder to pass.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["describe", "folder_format", "hint"]

_NAMES = {
    "neurofm.session": "a session folder",
    "neurofm.checkpoint": "a checkpoint folder",
}


def folder_format(path: Path) -> str | None:
    """The ``format`` its ``manifest.json`` states (``neurofm.session`` for a session folder,
    whose manifests state it too), or None without a readable manifest."""
    try:
        raw = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    value = raw.get("format") if isinstance(raw, dict) else None
    return value if isinstance(value, str) else None


def _subfolders(path: Path) -> list[Path]:
    """The visible sub-folders of ``path``, sorted (none when it cannot be listed)."""
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def _children(path: Path) -> dict[str, list[str]]:
    """format -> names of the sub-folders stating it."""
    out: dict[str, list[str]] = {}
    for sub in _subfolders(path):
        fmt = folder_format(sub)
        if fmt is not None:
            out.setdefault(fmt, []).append(sub.name)
    return out


def describe(path: Path) -> str:
    """``a checkpoint folder``, ``a folder of 4 sessions``, ``a folder holding a checkpoint
    (checkpoint/) and a folder of sessions (data/)``, ... or ``a folder neurofm did not write``."""
    fmt = folder_format(path)
    if fmt is not None:
        return _NAMES.get(fmt, f"a {fmt} folder")
    children = _children(path)
    if "neurofm.session" in children:
        return f"a folder of {len(children['neurofm.session'])} session(s)"
    parts = []
    for fmt, names in children.items():
        parts.append(f"{_NAMES.get(fmt, f'a {fmt} folder')} ({', '.join(n + '/' for n in names)})")
    for sub in _dataset_children(path):
        parts.append(f"a folder of sessions ({sub}/)")
    if parts:
        return "a folder holding " + " and ".join(parts)
    return "a folder neurofm did not write"


def _dataset_children(path: Path) -> list[str]:
    """Names of the sub-folders that are folders of sessions."""
    return [
        s.name
        for s in _subfolders(path)
        if folder_format(s) is None and "neurofm.session" in _children(s)
    ]


def hint(path: Path, want: str) -> str:
    """What to pass instead, when ``path`` is not a ``want`` (``"checkpoint"`` or ``"data"``)
    folder: the sub-folder that is one, or the role the folder can play."""
    if want == "checkpoint":
        subs = _children(path).get("neurofm.checkpoint", [])
        if subs:
            return f"pass {path / subs[0]}"
        if folder_format(path) == "neurofm.session" or "neurofm.session" in _children(path):
            return "pass it as --data, and the checkpoint folder as CHECKPOINT"
        return "pass a checkpoint folder (with config.json and weights.safetensors)"
    subs = _dataset_children(path)
    if subs:
        return f"pass --data {path / subs[0]}"
    if folder_format(path) == "neurofm.checkpoint":
        return "pass it as CHECKPOINT, and the folder of sessions as --data"
    return "pass a folder of session folders (neurofm simulate / neurofm import write one)"
