"""A run's identity: the fingerprint its state folder records, and who may continue it.

A run writes a checkpoint folder ``OUT`` and a training-state folder (``OUT.state``). The state
folder holds ``run.json``: the run's fingerprint (the experiment's model, data and training
settings, the data path and the ids of the sessions opened, the number of processes and the
neurofm version). :func:`prepare_run_folders` enforces, before any training step:

- without ``resume``, an existing ``OUT`` or non-empty state folder is refused unless
  ``overwrite``, which removes both first;
- with ``resume``, the state is continued only if its fingerprint equals this run's, except for
  the fields in :data:`MAY_CHANGE_ON_RESUME`; otherwise the error lists every difference.

It also removes the temporaries that killed writers left in the state folder and beside ``OUT``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurofm.core.data.session import Session
from neurofm.core.storage.files import atomic_write_text, remove_stale_temporaries
from neurofm.core.storage.sealing import read_json
from neurofm.errors import NeurofmError

__all__ = [
    "MAY_CHANGE_ON_RESUME",
    "RUN_FILE",
    "RunFolders",
    "fingerprint_differences",
    "prepare_run_folders",
    "run_fingerprint",
]

RUN_FILE = "run.json"
FORMAT = "neurofm.run"

#: Fingerprint fields a resumed run may change deliberately. ``training.steps`` extends (or
#: shortens, not below the saved step) a run; the learning-rate schedule then follows the new
#: length from the saved step on. ``eval_every`` and ``checkpoint_every`` only change when
#: validation and saves happen, never the weights.
MAY_CHANGE_ON_RESUME = ("training.steps", "training.eval_every", "training.checkpoint_every")


def run_fingerprint(
    kind: str,
    settings: Mapping[str, Any],
    data_path: str | Path,
    sessions: Sequence[Session],
    world_size: int,
) -> dict[str, Any]:
    """The fingerprint of a run: what it trains (``settings``, JSON data), on which data, how.

    ``kind``: ``"train"`` or ``"finetune"``.
    """
    from neurofm import __version__

    return {
        "format": FORMAT,
        "kind": kind,
        "neurofm_version": __version__,
        "world_size": world_size,
        "data": {
            "path": str(Path(data_path).resolve()),
            "session_ids": [s.session_id for s in sessions],
        },
        "settings": dict(settings),
    }


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def fingerprint_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``"field: saved A, now B"`` for every field that differs (fields as dotted paths)."""
    a, b = _flatten(saved), _flatten(current)
    out = []
    for key in sorted(set(a) | set(b)):
        if key not in b:
            out.append(f"{key}: saved {_short(a[key])}, now absent")
        elif key not in a:
            out.append(f"{key}: absent in the saved run, now {_short(b[key])}")
        elif a[key] != b[key]:
            out.append(f"{key}: saved {_short(a[key])}, now {_short(b[key])}")
    return out


def _allowed(difference: str) -> bool:
    field = difference.split(":", 1)[0]
    return any(field == f"settings.{name}" for name in MAY_CHANGE_ON_RESUME)


@dataclass
class RunFolders:
    """What :func:`prepare_run_folders` decided: resume (from which state folder, None: the
    newest) or start at step 0, and what it cleaned up or noticed on the way."""

    resume: bool
    resume_from: Path | None
    notes: list[str]


def _occupied(folder: Path) -> bool:
    return folder.exists() and (not folder.is_dir() or any(folder.iterdir()))


def _clear(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def prepare_run_folders(
    out: Path,
    state: Path,
    fingerprint: Mapping[str, Any],
    *,
    resume: bool,
    overwrite: bool,
    resume_from: str | None = None,
    state_step: Callable[[Path, str | None], tuple[Path | None, int]] | None = None,
) -> RunFolders:
    """Check and prepare the checkpoint folder ``out`` and state folder ``state`` of a run.

    Call it holding the lock of ``out``, before training. ``state_step(state, resume_from)``
    gives the state folder a resume starts from and its step (default:
    :func:`neurofm.core.training.state.resume_point`).

    Raises:
        NeurofmError: an existing run without ``resume``/``overwrite``; a state of another run
            (listing the differences); a state below the saved step; a state folder that is not
            one.
    """
    if state_step is None:
        from neurofm.core.training.state import resume_point as state_step
    notes = []
    removed = remove_stale_temporaries(state)
    removed += remove_stale_temporaries(out.parent, (out.name,))
    if removed:
        notes.append(
            f"removed {len(removed)} temporary file(s)/folder(s) left by killed writers: "
            f"{', '.join(p.name for p in removed[:3])}{' ...' if len(removed) > 3 else ''}"
        )
    if resume and overwrite:
        raise NeurofmError("--resume and --overwrite contradict each other; pass one of them")
    run_file = state / RUN_FILE
    if not resume:
        existing = [p for p in (out, state) if _occupied(p)]
        if existing and not overwrite:
            what = " and ".join(str(p) for p in existing)
            verb = "exist" if len(existing) > 1 else "exists"
            raise NeurofmError(
                f"{what} already {verb} from an earlier run; pass --resume to continue that "
                f"run, --overwrite to delete it and start again, or choose another --out"
            )
        for path in existing:
            _clear(path)
            notes.append(f"removed {path} (--overwrite)")
        _write(run_file, fingerprint)
        return RunFolders(False, None, notes)
    # --resume
    if not _occupied(state):
        if out.exists():
            raise NeurofmError(
                f"{out} exists but there is no training state at {state} to continue; "
                f"pass --overwrite to train again from step 0, or choose another --out"
            )
        notes.append(f"no training state under {state}; starting from step 0")
        _write(run_file, fingerprint)
        return RunFolders(False, None, notes)
    if not run_file.is_file():
        raise NeurofmError(
            f"{state} has no {RUN_FILE}: it is not the training state of a run of this neurofm "
            f"(or was written by an older version), so it cannot be checked to be this run's. "
            f"Pass --overwrite to start again, or --state to use another folder"
        )
    saved = read_json(run_file)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise NeurofmError(
            f"{run_file} is not a {FORMAT} file; pass --overwrite to start the run again"
        )
    differences = fingerprint_differences(saved, fingerprint)
    refused = [d for d in differences if not _allowed(d)]
    if refused:
        raise NeurofmError(
            f"--resume refused: the training state in {state} belongs to another run; it differs "
            f"from this one in {len(refused)} field(s): {'; '.join(refused[:8])}"
            f"{' ...' if len(refused) > 8 else ''}. Only {', '.join(MAY_CHANGE_ON_RESUME)} may "
            f"change on resume. Restore the run's settings, or pass --overwrite (instead of "
            f"--resume) to start a new run"
        )
    folder, step = state_step(state, resume_from)
    steps = fingerprint.get("settings", {}).get("training", {}).get("steps")
    if folder is not None and isinstance(steps, int) and steps < step:
        raise NeurofmError(
            f"--resume refused: training.steps is {steps} but the state {folder} is already at "
            f"step {step}; set steps >= {step}"
        )
    if differences:
        notes.append(f"resuming with changed settings: {'; '.join(differences)}")
        _write(run_file, fingerprint)
    if folder is None:
        notes.append(f"no saved step under {state} yet; starting from step 0")
    return RunFolders(folder is not None, folder, notes)


def _write(path: Path, fingerprint: Mapping[str, Any]) -> None:
    import json

    atomic_write_text(path, json.dumps(dict(fingerprint), indent=1) + "\n")
