"""Self-describing checkpoint folders: config, plugin versions, session vocabulary, safetensors weights.

Layout of a checkpoint folder::

    config.json        the validated ModelConfig (every plugin field kept)
    meta.json          neurofm version, the package and version of every plugin used, training info
    sessions.json      the readout's vocabulary: per session, its unit count, positions and areas
    weights.safetensors

Loading never unpickles anything: safetensors holds tensors only, the rest is JSON. Writes are
atomic: an interrupted save leaves the previous checkpoint in place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file

from neurofm import registry
from neurofm.core.builder import ModelConfig
from neurofm.core.config import validate_config
from neurofm.core.interfaces import SessionUnits
from neurofm.core.io import atomic_directory
from neurofm.errors import NeurofmError

__all__ = ["load_pretrained", "save_pretrained"]

_FILES = ("config.json", "meta.json", "sessions.json", "weights.safetensors")


def _plugin_versions(config: ModelConfig) -> dict[str, dict[str, str]]:
    used = [("modalities", c.type) for c in config.modalities.values()]
    used += [("heads", c.type) for c in config.heads.values()]
    if config.readout is not None:
        used.append(("readouts", config.readout.type))
    out: dict[str, dict[str, str]] = {}
    for kind, name in used:
        record = next(
            r
            for r in registry.get_registry(kind).records()
            if r.name == name and r.status == "loaded"
        )
        out[f"{kind}:{name}"] = {"package": record.package, "version": record.version}
    return out


def save_pretrained(
    model: Any,
    config: ModelConfig,
    path: str | Path,
    *,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write ``model`` (a :class:`~neurofm.NeuroFM` built from ``config``) to a checkpoint folder."""
    from neurofm import __version__

    path = Path(path)
    sessions = {}
    if model.readout is not None:
        for sid, units in getattr(model, "session_units", {}).items():
            sessions[sid] = {
                "count": units.count,
                "position_um": None
                if units.position_um is None
                else np.asarray(units.position_um).tolist(),
                "area": None if units.area is None else [str(a) for a in units.area],
            }
    meta = {
        "neurofm_version": __version__,
        "plugins": _plugin_versions(config),
        "target_channels": dict(getattr(model, "target_channels", {})),
        **dict(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_directory(path, overwrite=overwrite) as tmp:
        (tmp / "config.json").write_text(
            json.dumps(config.model_dump(mode="json"), indent=2) + "\n"
        )
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / "sessions.json").write_text(json.dumps(sessions) + "\n")
        save_file(state, str(tmp / "weights.safetensors"))
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NeurofmError(
            f"checkpoint file {path} is missing; expected a folder written by save_pretrained"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NeurofmError(
            f"checkpoint file {path} is corrupt ({exc}); re-save the checkpoint"
        ) from None


def load_pretrained(path: str | Path) -> tuple[Any, ModelConfig]:
    """Rebuild a model from a checkpoint folder; returns ``(model, config)``.

    Raises:
        NeurofmError: missing files, a plugin that is not installed, or weights that do not fit.
    """
    from neurofm.core.builder import build_model_from_units

    path = Path(path)
    if not path.is_dir():
        raise NeurofmError(f"checkpoint {path} does not exist or is not a folder")
    meta = _read_json(path / "meta.json")
    missing = []
    for key, info in meta.get("plugins", {}).items():
        kind, _, name = key.partition(":")
        if name not in registry.get_registry(kind):
            missing.append(
                f"{kind[:-1] if kind.endswith('s') else kind} {name!r} from {info['package']} {info['version']}"
            )
    if missing:
        raise NeurofmError(
            f"checkpoint {path} needs plugins that are not installed: {'; '.join(missing)}. "
            f"Install those packages (pip install <package>==<version>) and load again."
        )
    config = validate_config(
        ModelConfig, _read_json(path / "config.json"), source=f"checkpoint config {path}"
    )
    sessions = {
        sid: SessionUnits(
            sid,
            int(v["count"]),
            None if v["position_um"] is None else np.asarray(v["position_um"], np.float32),
            None if v["area"] is None else np.asarray(v["area"]),
        )
        for sid, v in _read_json(path / "sessions.json").items()
    }
    model = build_model_from_units(config, sessions, _target_shapes(config, path))
    try:
        state = load_file(str(path / "weights.safetensors"))
    except Exception as exc:
        raise NeurofmError(f"cannot read weights of checkpoint {path}: {exc}") from None
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise NeurofmError(
            f"weights of checkpoint {path} do not fit its config: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    return model, config


def _target_shapes(config: ModelConfig, path: Path) -> dict[str, int]:
    meta = _read_json(path / "meta.json")
    return {k: int(v) for k, v in meta.get("target_channels", {}).items()}
