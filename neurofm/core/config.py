"""Typed configuration: the plugin config base class and registry-validated config fields.

A plugin's config is a pydantic model deriving from :class:`PluginConfig` whose ``type`` tag equals
the plugin's registered name. Fields of a larger config that hold a plugin config are declared with
:func:`plugin_config_field`; they validate through the registry at validation time, so a plugin
installed after neurofm was written validates too, and they serialise with all the plugin's own
fields (not just the base class's).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, SerializeAsAny, ValidationError

from neurofm.errors import ConfigError, NeurofmError

__all__ = [
    "PluginConfig",
    "StrictModel",
    "dump_config",
    "format_validation_error",
    "load_config_file",
    "plugin_config_field",
    "validate_config",
]

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of every neurofm config: unknown fields are errors and a config is frozen (change one
    with ``config.model_copy(update={...})``, which returns a new config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PluginConfig(StrictModel):
    """Base of every plugin's config. Subclasses narrow ``type`` to ``Literal["<name>"]``.

    Example:
        >>> from typing import Literal
        >>> class LfpConfig(PluginConfig):
        ...     type: Literal["acme.lfp"] = "acme.lfp"
        ...     channels: int = 32
        >>> LfpConfig(channels=16).model_dump()
        {'type': 'acme.lfp', 'channels': 16}
    """

    type: str


def _validate_plugin_config(kind: str, value: Any) -> PluginConfig:
    from neurofm import registry

    reg = registry.get_registry(kind)
    if isinstance(value, PluginConfig):
        try:
            expected = reg.get(value.type).Config
        except NeurofmError as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(value, expected):
            raise ValueError(
                f"config object of class {type(value).__name__} has type={value.type!r}, but the "
                f"{reg.kind} plugin {value.type!r} expects {expected.__name__}"
            )
        return value
    if not isinstance(value, dict):
        raise ValueError(
            f"expected a mapping with a 'type' field naming a {reg.kind} plugin, "
            f"found {type(value).__name__}: {value!r}"
        )
    tag = value.get("type")
    if not isinstance(tag, str):
        raise ValueError(
            f"expected a 'type' field naming a {reg.kind} plugin (known: {', '.join(reg.list())}), "
            f"found {'no type field' if tag is None else repr(tag)}"
        )
    try:
        plugin = reg.get(tag)
    except NeurofmError as exc:
        raise ValueError(str(exc)) from None
    try:
        return plugin.Config.model_validate(value)
    except ValidationError as exc:
        raise ValueError(
            f"invalid config for {reg.kind} plugin {tag!r}: "
            + "; ".join(format_validation_error(exc))
        ) from None


def plugin_config_field(kind: str) -> Any:
    """Annotation for a field holding the config of a plugin of ``kind`` (validated via the registry).

    Example:
        >>> from neurofm.core.config import StrictModel, plugin_config_field
        >>> class Parts(StrictModel):
        ...     head: plugin_config_field("heads")
        >>> Parts(head={"type": "poisson"}).head.type
        'poisson'
    """
    return Annotated[
        SerializeAsAny[PluginConfig], BeforeValidator(partial(_validate_plugin_config, kind))
    ]


def format_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: ``path: message (found: value)``."""
    lines = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(p) for p in err["loc"]) or "<root>"
        msg = err["msg"].removeprefix("Value error, ")
        found = err.get("input")
        shown = "" if err["type"] in ("missing", "value_error") else f" (found: {found!r:.80})"
        lines.append(f"{path}: {msg}{shown}")
    return lines


def validate_config(model: type[M], data: Any, *, source: str = "config") -> M:
    """Validate ``data`` into ``model``; on failure raise :class:`ConfigError` listing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = format_validation_error(exc)
        raise ConfigError(
            f"{source} has {len(problems)} problem(s):\n  - " + "\n  - ".join(problems)
        ) from None


def load_config_file(path: str | Path, model: type[M]) -> M:
    """Read a ``.json``, ``.yaml`` or ``.yml`` file and validate it into ``model``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text ({exc})") from None
    loader: Callable[[str], Any] = json.loads if path.suffix == ".json" else yaml.safe_load
    try:
        data = loader(text)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        # ValueError: bad JSON, or values no parser accepts (a YAML date 2024-02-30, a huge int)
        raise ConfigError(
            f"config file {path} is not valid {path.suffix[1:].upper() or 'YAML'}: {exc}"
        ) from None
    return validate_config(model, data, source=f"config file {path}")


def dump_config(config: BaseModel, path: str | Path) -> None:
    """Write a config as JSON or YAML (by suffix), atomically; plugin fields are kept."""
    from neurofm.core.storage.files import atomic_write_text

    path = Path(path)
    data = config.model_dump(mode="json")
    if path.suffix == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False)
    atomic_write_text(path, text)
