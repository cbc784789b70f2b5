"""Scaffold a third-party plugin package (``neurofm new-plugin KIND NAME``).

The package has a ``pyproject.toml`` declaring the plugin's entry point, a config class whose
``type`` tag is the plugin's name, a module implementing the interface, a README and tests that run
neurofm's conformance kit (:mod:`neurofm.testing`) on the plugin; ``pip install -e`` makes neurofm
find it.

Example:
    >>> from neurofm.scaffold import plugin_layout
    >>> layout = plugin_layout("modality", "mylab.lfp")
    >>> layout.package, layout.dist, layout.group, layout.cls
    ('neurofm_mylab_lfp', 'neurofm-mylab-lfp', 'neurofm.modalities', 'LfpEncoder')
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from neurofm.errors import NeurofmError
from neurofm.scaffold import templates

__all__ = ["KINDS", "PluginLayout", "plugin_layout", "scaffold_plugin"]


@dataclass(frozen=True)
class _Kind:
    registry: str  # registry name, e.g. "modalities"
    module: str  # module file stem
    suffix: str  # plugin class suffix
    files: dict[str, str]
    usage: str


KINDS: dict[str, _Kind] = {
    "modality": _Kind(
        "modalities", "encoder", "Encoder", templates.MODALITY, templates.MODALITY_USAGE
    ),
    "readout": _Kind("readouts", "readout", "Readout", templates.READOUT, templates.READOUT_USAGE),
    "head": _Kind("heads", "head", "Head", templates.HEAD, templates.HEAD_USAGE),
}
_ALIASES = {"modalities": "modality", "readouts": "readout", "heads": "head"}

_SEGMENT = r"[a-z][a-z0-9_]*"
NAME_PATTERN = re.compile(rf"{_SEGMENT}(\.{_SEGMENT})*")


@dataclass(frozen=True)
class PluginLayout:
    """Every name a scaffolded plugin package uses."""

    kind: str  # "modality", "readout" or "head"
    name: str  # registered name = config `type` tag, e.g. "mylab.lfp"
    package: str  # Python import package, e.g. "neurofm_mylab_lfp"
    dist: str  # distribution name, e.g. "neurofm-mylab-lfp"
    group: str  # entry-point group, e.g. "neurofm.modalities"
    module: str  # module file stem inside the package
    cls: str  # plugin class
    config: str  # config class

    @property
    def registry(self) -> str:
        return KINDS[self.kind].registry


def _kind(kind: str) -> str:
    kind = _ALIASES.get(kind, kind)
    if kind not in KINDS:
        raise NeurofmError(
            f"unknown plugin kind {kind!r}; expected one of {', '.join(KINDS)} "
            f"(e.g. `neurofm new-plugin modality mylab.lfp`)"
        )
    return kind


def _check_name(name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise NeurofmError(
            f"invalid plugin name {name!r}: expected lower-case segments of letters, digits and "
            f"'_', each starting with a letter, joined by '.' (e.g. 'mylab.lfp'); third-party "
            f"plugins put their lab or package name first"
        )


def _check_package(package: str) -> None:
    if not package.isidentifier() or keyword.iskeyword(package) or not package.isascii():
        raise NeurofmError(
            f"invalid Python package name {package!r}: expected an identifier such as "
            f"'neurofm_mylab_lfp' (letters, digits, '_', not starting with a digit)"
        )
    if package == "neurofm" or package.startswith("neurofm."):
        raise NeurofmError(f"package name {package!r} would shadow neurofm itself; choose another")


def _camel(segment: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in segment.split("_") if part)


def plugin_layout(kind: str, name: str, package: str | None = None) -> PluginLayout:
    """The names of a plugin package of ``kind`` registered as ``name``.

    Args:
        kind: ``"modality"``, ``"readout"`` or ``"head"`` (plural forms accepted).
        name: the registered name, e.g. ``"mylab.lfp"``; it is also the config's ``type`` tag.
        package: the Python package name (default: ``neurofm_`` + the name with '.' -> '_').

    Raises:
        NeurofmError: an unknown kind, or a name or package that is not valid.
    """
    kind = _kind(kind)
    _check_name(name)
    package = package or "neurofm_" + name.replace(".", "_")
    _check_package(package)
    spec = KINDS[kind]
    title = _camel(name.rsplit(".", 1)[-1])
    return PluginLayout(
        kind=kind,
        name=name,
        package=package,
        dist=package.replace("_", "-"),
        group=f"neurofm.{spec.registry}",
        module=spec.module,
        cls=title + spec.suffix,
        config=title + "Config",
    )


def scaffold_plugin(
    kind: str, name: str, out: str | Path | None = None, *, package: str | None = None
) -> Path:
    """Write a plugin package for a plugin of ``kind`` registered as ``name``; returns its folder.

    Args:
        kind: ``"modality"``, ``"readout"`` or ``"head"``.
        name: registered name (the config ``type`` tag), e.g. ``"mylab.lfp"``.
        out: the folder to create (default: ``./<distribution name>``); it must not exist, or be
            empty.
        package: Python package name (default derived from ``name``).

    Raises:
        NeurofmError: invalid kind/name/package, or ``out`` exists and is not empty.
    """
    from neurofm import __version__

    layout = plugin_layout(kind, name, package)
    out = Path(out) if out is not None else Path(layout.dist)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise NeurofmError(
            f"{out} already exists and is not an empty folder; choose another --out or remove it "
            f"(nothing was written)"
        )
    values = {
        "name": layout.name,
        "package": layout.package,
        "dist": layout.dist,
        "group": layout.group,
        "kind": layout.registry,
        "kind_singular": layout.kind,
        "module": layout.module,
        "cls": layout.cls,
        "config": layout.config,
        "neurofm_version": __version__,
    }
    values["usage"] = Template(KINDS[layout.kind].usage).substitute(values)
    files = {**templates.COMMON, **KINDS[layout.kind].files}
    rendered = {
        Template(rel).substitute(values): Template(text).substitute(values)
        for rel, text in files.items()
    }
    for rel, text in rendered.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return out
