"""Self-describing checkpoint folders: config, plugin versions, vocabularies, statistics, weights.

Layout of a checkpoint folder::

    config.json          the validated ModelConfig (every plugin field kept)
    meta.json            neurofm version, package and version of every plugin used, training info
    sessions.json        the readout's vocabulary: per session, its unit count, positions, areas
                         and animal
    statistics.json      normalisation statistics of every session's streams (from the manifests)
    weights.safetensors  the weights (tensors only)
    manifest.json        format tag and the sha256 and size of every other file

Loading never unpickles anything: safetensors holds tensors only, the rest is JSON. Every file is
checked against ``manifest.json`` first, so a changed, truncated, missing or unknown file is
refused with a message naming it. Writes are atomic: an interrupted save leaves the previous
checkpoint in place.

Example:
    >>> save_pretrained(model, config, "ckpt")          # doctest: +SKIP
    >>> model, config = load_pretrained("ckpt")         # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file

from neurofm import registry
from neurofm.core.config import validate_config
from neurofm.core.interfaces import SessionUnits
from neurofm.core.model.config import ModelConfig
from neurofm.core.storage.files import atomic_directory, disk_full_guard
from neurofm.core.storage.sealing import read_json, seal, verify
from neurofm.errors import NeurofmError, UnknownPluginError

__all__ = [
    "LoadedCheckpoint",
    "load_checkpoint",
    "load_pretrained",
    "plugin_versions",
    "save_pretrained",
]

logger = logging.getLogger("neurofm.checkpoint")

FORMAT = "neurofm.checkpoint"
_FILES = ("config.json", "meta.json", "sessions.json", "statistics.json", "weights.safetensors")


def plugin_versions(config: ModelConfig) -> dict[str, dict[str, str]]:
    """``"kind:name" -> {"package", "version"}`` of every plugin ``config`` uses."""
    used = [("modalities", c.type) for c in config.modalities.values()]
    used += [("heads", c.type) for c in config.heads.values()]
    if config.readout is not None:
        used.append(("readouts", config.readout.type))
    out: dict[str, dict[str, str]] = {}
    for kind, name in used:
        record = registry.get_registry(kind).record(name)
        out[f"{kind}:{name}"] = {"package": record.package, "version": record.version}
    return out


def _vocabulary(model: Any) -> dict[str, dict]:
    sessions = {}
    if model.readout is not None:
        for sid, units in model.session_units.items():
            sessions[sid] = {
                "count": units.count,
                "position_um": None
                if units.position_um is None
                else np.asarray(units.position_um).tolist(),
                "area": None if units.area is None else [str(a) for a in units.area],
                "animal_id": units.animal_id,
            }
    return sessions


def save_pretrained(
    model: Any,
    config: ModelConfig,
    path: str | Path,
    *,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = True,
    weights: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` (a :class:`~neurofm.NeuroFM` built from ``config``) to a checkpoint folder.

    ``weights`` replaces ``model.state_dict()`` (e.g. the gathered full state of a sharded model).
    """
    from neurofm import __version__

    path = Path(path)
    meta = {
        "neurofm_version": __version__,
        "plugins": plugin_versions(config),
        "target_channels": dict(model.target_channels),
        **dict(extra or {}),
    }
    source = model.state_dict() if weights is None else weights
    state = {k: v.detach().cpu().contiguous() for k, v in source.items()}
    needed = sum(t.numel() * t.element_size() for t in state.values())
    with disk_full_guard(path, needed), atomic_directory(path, overwrite=overwrite) as tmp:
        (tmp / "config.json").write_text(
            json.dumps(config.model_dump(mode="json"), indent=2) + "\n"
        )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "sessions.json").write_text(json.dumps(_vocabulary(model)) + "\n")
        (tmp / "statistics.json").write_text(json.dumps(model.stream_statistics) + "\n")
        save_file(state, str(tmp / "weights.safetensors"))
        seal(tmp, FORMAT)
    return path


def _major(version: str) -> str:
    return version.split(".", 1)[0]


def check_plugins(meta: Mapping[str, Any], where: str) -> None:
    """Refuse a checkpoint of another neurofm major version or with missing/other-major plugins."""
    from neurofm import __version__

    problems = []
    saved = str(meta.get("neurofm_version", ""))
    if saved and _major(saved) != _major(__version__):
        problems.append(
            f"it was saved with neurofm {saved} but neurofm {__version__} is installed "
            f"(major versions differ)"
        )
    for key, info in meta.get("plugins", {}).items():
        kind, _, name = key.partition(":")
        reg = registry.get_registry(kind)
        what = f"{reg.kind} {name!r}"
        wanted = f"{info['package']} {info['version']}".strip()
        try:
            record = reg.record(name)
        except UnknownPluginError:
            problems.append(f"{what} (from {wanted}) is not installed")
            continue
        if record.status == "failed":  # installed, but broken: say why, not "not installed"
            problems.append(
                f"{what} is installed ({record.package} {record.version}) but failed to load: "
                f"{record.error}"
            )
            continue
        if info["version"] and record.version and _major(record.version) != _major(info["version"]):
            problems.append(
                f"{what} was saved with {wanted} but {record.package} {record.version} is installed "
                f"(major versions differ)"
            )
    if problems:
        raise NeurofmError(
            f"checkpoint {where} cannot be loaded: {'; '.join(problems)}. Install the packages it "
            f"was saved with (pip install '<package>==<version>') and load again."
        )


def _recover(path: Path) -> Path:
    """The folder to load: ``path``, or the previous checkpoint an interrupted overwrite left."""
    if path.is_dir():
        return path
    old = sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.is_dir() else []
    if old:  # killed between the two renames of an overwrite: the previous checkpoint
        logger.warning(
            "checkpoint %s is missing: an overwrite of it was interrupted; loading the previous "
            "checkpoint %s (move it back to %s to keep it)",
            path,
            old[-1],
            path,
        )
        return old[-1]
    raise NeurofmError(f"checkpoint {path} does not exist or is not a folder")


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A loaded checkpoint: the model, its config, ``meta.json`` and the folder it was read from
    (the previous copy when an overwrite of the checkpoint was interrupted)."""

    model: Any
    config: ModelConfig
    meta: dict[str, Any]
    path: Path


def load_pretrained(path: str | Path) -> tuple[Any, ModelConfig]:
    """Rebuild a model from a checkpoint folder; returns ``(model, config)``.

    Raises:
        NeurofmError: missing, changed or unknown files, a plugin that is not installed or of
            another major version, or weights that do not fit the config.
    """
    loaded = load_checkpoint(path)
    return loaded.model, loaded.config


def load_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """:func:`load_pretrained` that also returns ``meta.json`` and the folder read; the one
    loader every command reads checkpoints through (it recovers an interrupted overwrite)."""
    from neurofm.core.model.builder import build_model_from_units

    path = _recover(Path(path))
    verify(path, FORMAT, _FILES)
    meta = read_json(path / "meta.json")
    try:
        if not isinstance(meta, dict):
            raise TypeError(
                f"meta.json holds {type(meta).__name__}, expected a mapping"
            )  # the files passed their hashes, but may still not be what neurofm writes
        check_plugins(meta, str(path))
        config = validate_config(
            ModelConfig, read_json(path / "config.json"), source=f"checkpoint config {path}"
        )
        sessions = {
            sid: SessionUnits(
                sid,
                int(v["count"]),
                None if v["position_um"] is None else np.asarray(v["position_um"], np.float32),
                None if v["area"] is None else np.asarray(v["area"]),
                v.get("animal_id"),  # absent in checkpoints from before 0.1.0's animal maps
            )
            for sid, v in read_json(path / "sessions.json").items()
        }
        channels = {k: int(v) for k, v in meta.get("target_channels", {}).items()}
        statistics = read_json(path / "statistics.json")
        model = build_model_from_units(config, sessions, channels, statistics=statistics)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RuntimeError) as exc:
        if isinstance(exc, NeurofmError):
            raise
        raise NeurofmError(
            f"checkpoint {path} has malformed contents ({type(exc).__name__}: {exc}); it was "
            f"edited or not written by neurofm's save_pretrained. Re-save it from the model."
        ) from exc
    try:
        state = load_file(str(path / "weights.safetensors"))
    except Exception as exc:
        raise NeurofmError(f"cannot read weights of checkpoint {path}: {exc}") from None
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of other shapes than the config gives
        raise NeurofmError(f"weights of checkpoint {path} do not fit its config: {exc}") from None
    if result.missing_keys or result.unexpected_keys:
        raise NeurofmError(
            f"weights of checkpoint {path} do not fit its config: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return LoadedCheckpoint(model, config, meta, path)
