"""Plugin registries: one per plugin kind, filled from entry points on first use.

Built-in plugins are declared as entry points in neurofm's own ``pyproject.toml``, exactly as a
third-party package declares its own, so both are found the same way::

    [project.entry-points."neurofm.modalities"]
    "acme.lfp" = "acme_lfp.encoder:LfpEncoder"

Discovery is lazy: nothing is imported on ``import neurofm``; the first ``get``/``list``/``records``
call of a registry loads its entry-point group. A plugin that fails to import or to validate is
recorded as *failed* with its package name and version and never prevents the others from loading.
Validation covers the interface (a subclass, no abstract method left), the ``Config`` (a
``PluginConfig`` whose ``type`` tag is the registered name, unknown fields refused), the class
attributes of the contract (a modality's ``role``, ``normalization`` and ``per_unit``), and the
name: a third-party plugin's is namespaced (``acme.lfp``); bare names are neurofm's built-ins'.
``NEUROFM_DISABLE_PLUGIN_AUTOLOAD=1`` turns off discovery of third-party plugins (built-ins still load).

Example:
    >>> from neurofm import registry
    >>> "movie" in registry.modalities.list()
    True
    >>> registry.modalities.list("pu*")
    ['pupil']
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import os
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Literal

from neurofm.errors import DuplicatePluginError, InvalidPluginError, UnknownPluginError

__all__ = [
    "AUTOLOAD_ENV",
    "REGISTRIES",
    "PluginRecord",
    "Registry",
    "describe_plugin",
    "get_registry",
    "heads",
    "modalities",
    "readouts",
    "sources",
    "stimuli",
]

AUTOLOAD_ENV = "NEUROFM_DISABLE_PLUGIN_AUTOLOAD"
_BUILTIN_DISTRIBUTION = "neurofm"


@dataclass(frozen=True)
class PluginRecord:
    """What the registry knows of one plugin, loaded or not.

    ``status`` is ``"loaded"`` or ``"failed"``; a failed record has ``obj=None`` and ``error`` says why.
    ``package``/``version`` name the distribution that declared the entry point (or the module that
    called :meth:`Registry.register` directly).
    """

    kind: str
    name: str
    package: str
    version: str
    status: Literal["loaded", "failed"]
    obj: type | None = None
    error: str | None = None
    target: str = ""

    def describe(self) -> str:
        where = f"{self.package} {self.version}".strip()
        return f"{self.kind} plugin {self.name!r} from {where}"


def _owner_of(obj: Any) -> tuple[str, str]:
    """Best-effort (package, version) of a class registered directly in Python."""
    module = getattr(obj, "__module__", "") or ""
    top = module.split(".")[0]
    try:
        dists = metadata.packages_distributions().get(top, [])
        if dists:
            return dists[0], metadata.version(dists[0])
    except Exception:
        pass
    return top or "<unknown>", ""


def _autoload_disabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in ("", "0", "false", "no")


class Registry:
    """The plugins of one kind (``modalities``, ``readouts``, ``heads``, ``sources``, ``stimuli``).

    Args:
        kind: the kind's name, used in messages.
        group: the entry-point group that declares plugins of this kind.
        interface: ``"module:Class"`` path of the abstract class every plugin must subclass
            (imported on first validation, so the registry itself stays import-light).
    """

    def __init__(self, kind: str, group: str, interface: str) -> None:
        self.kind = kind
        self.group = group
        self._interface_path = interface
        self._records: dict[str, PluginRecord] = {}
        self._failures: list[PluginRecord] = []
        self._discovered = False
        self._lock = threading.RLock()

    # -- public API -------------------------------------------------------------------------
    def register(self, obj: type | None = None, *, name: str | None = None) -> Any:
        """Register a plugin class under ``name`` (default: its config's ``type`` tag).

        Usable as ``registry.register(Cls)`` or as a decorator ``@registry.register``.
        Re-registering the identical class is a no-op.

        Raises:
            DuplicatePluginError: another class already holds the name.
            InvalidPluginError: the class does not implement the interface or its config tag differs.
        """
        if obj is None:
            return lambda cls: self.register(cls, name=name)
        package, version = _owner_of(obj)
        name = name if name is not None else self._tag_of(obj, package, version)
        record = PluginRecord(self.kind, name, package, version, "loaded", obj, None, _path_of(obj))
        with self._lock:
            self._validate(obj, name, package, version)
            self._add(record)
        return obj

    def record(self, name: str) -> PluginRecord:
        """What the registry knows of ``name``: its loaded record, else the record of a plugin of
        that name that failed to load (with the reason).

        Raises:
            UnknownPluginError: no plugin of that name was seen.
        """
        with self._lock:
            self._discover()
            if name in self._records:
                return self._records[name]
            for failed in self._failures:
                if failed.name == name:
                    return failed
            raise self._unknown(name)

    def record_of(self, cls: type) -> PluginRecord:
        """The record of the loaded plugin ``cls`` (the name it is registered under, its package
        and version).

        Raises:
            UnknownPluginError: ``cls`` is not a loaded plugin of this registry; the message says
                whether another class holds the name its config tag asks for.
        """
        with self._lock:
            self._discover()
            for record in self._records.values():
                if record.obj is cls:
                    return record
            field = getattr(getattr(cls, "Config", None), "model_fields", {}).get("type")
            tag = getattr(field, "default", None)
            holder = self._records.get(tag) if isinstance(tag, str) else None
            taken = (
                f" The name its config tag asks for, {tag!r}, belongs to {holder.target} "
                f"(from {holder.package} {holder.version})."
                if holder is not None
                else ""
            )
            known = ", ".join(sorted(self._records)) or "none"
            raise UnknownPluginError(
                f"{_path_of(cls)} is not a registered {self.kind} plugin: no {self.kind} plugin "
                f"(known: {known}) is this class.{taken} Register it with this registry's "
                f"`register(cls)`, or declare an entry point in group {self.group!r} and install "
                f"its package; `neurofm plugins` lists all."
            )

    def unregister(self, name: str) -> None:
        """Remove a plugin (mainly for tests); unknown names raise :class:`UnknownPluginError`."""
        with self._lock:
            self._discover()
            if name not in self._records:
                raise self._unknown(name)
            del self._records[name]

    def get(self, name: str) -> type:
        """The plugin class registered as ``name``.

        Raises:
            UnknownPluginError: no such plugin; the message suggests close names and says
                whether a plugin of that name failed to load (and why).
        """
        with self._lock:
            self._discover()
            record = self._records.get(name)
            if record is None:
                raise self._unknown(name)
            assert record.obj is not None
            return record.obj

    def __contains__(self, name: object) -> bool:
        with self._lock:
            self._discover()
            return name in self._records

    def list(self, pattern: str = "*") -> list[str]:
        """Sorted names of loaded plugins matching a glob ``pattern`` (e.g. ``"acme.*"``)."""
        with self._lock:
            self._discover()
            return sorted(n for n in self._records if fnmatch.fnmatchcase(n, pattern))

    def records(self) -> list[PluginRecord]:
        """Every plugin seen, loaded ones first, then failures (with their reasons)."""
        with self._lock:
            self._discover()
            loaded = sorted(self._records.values(), key=lambda r: r.name)
            return loaded + list(self._failures)

    def reload(self) -> None:
        """Forget entry-point discoveries and look again (after installing a package at run time)."""
        with self._lock:
            self._records.clear()
            self._failures.clear()
            self._discovered = False

    # -- internals --------------------------------------------------------------------------
    def _interface(self) -> type:
        module, _, attr = self._interface_path.partition(":")
        return getattr(importlib.import_module(module), attr)

    def _tag_of(self, obj: Any, package: str, version: str = "") -> str:
        config = getattr(obj, "Config", None)
        field = getattr(config, "model_fields", {}).get("type") if config is not None else None
        if field is None or not isinstance(field.default, str):
            if config is None:
                found = "no `Config`"
            elif field is None:
                found = f"Config = {config!r} without a `type` field"
            else:
                found = f"`type` defaults to {field.default!r}"
            raise InvalidPluginError(
                f"{self.kind} plugin {_path_of(obj)} ({_from(package, version)}) has no config "
                f"with a string `type` tag: found {found}; expected a nested `Config` class "
                f"deriving from neurofm.PluginConfig with "
                f'`type: Literal["<name>"] = "<name>"`. Add one.'
            )
        return field.default

    def _validate(self, obj: Any, name: str, package: str, version: str = "") -> None:
        from neurofm.core.config import PluginConfig

        plugin = f"{self.kind} plugin {name!r} ({_path_of(obj)}, {_from(package, version)})"
        interface = self._interface()
        if not (isinstance(obj, type) and issubclass(obj, interface)):
            found = (
                f"a {type(obj).__name__}, not a class"
                if not isinstance(obj, type)
                else f"a class deriving from {', '.join(c.__qualname__ for c in obj.__mro__[1:])}"
            )
            raise InvalidPluginError(
                f"{plugin} does not implement {interface.__module__}.{interface.__name__}: "
                f"expected a subclass of it, found {found}. Derive the plugin class from "
                f"{interface.__name__}."
            )
        abstract = sorted(getattr(obj, "__abstractmethods__", ()))
        if abstract:
            raise InvalidPluginError(
                f"{plugin} leaves abstract methods unimplemented: {', '.join(abstract)}; expected "
                f"every abstract method of {interface.__name__} implemented. Implement them."
            )
        config = getattr(obj, "Config", None)
        if not (isinstance(config, type) and issubclass(config, PluginConfig)):
            raise InvalidPluginError(
                f"{plugin} has no `Config` deriving from neurofm.PluginConfig (found "
                f"Config = {config!r}). Declare one with a `type` tag: "
                f'`type: Literal["{name}"] = "{name}"`.'
            )
        tag = self._tag_of(obj, package, version)
        if tag != name:
            raise InvalidPluginError(
                f"{self.kind} plugin registered as {name!r} ({_path_of(obj)}, "
                f"{_from(package, version)}) has config tag type={tag!r}; the tag must equal the "
                f"registered name {name!r}. Rename the entry point or set "
                f'`type: Literal["{name}"] = "{name}"` in its Config.'
            )
        extra = config.model_config.get("extra")
        if extra != "forbid":
            raise InvalidPluginError(
                f"{plugin}: its Config allows unknown fields (model_config extra={extra!r}); "
                f"expected extra='forbid' so a misspelt option is an error. Derive Config from "
                f"neurofm.PluginConfig and do not override `extra`."
            )
        violations = self.class_attribute_violations(obj)
        if violations:
            attribute, found_and_allowed = violations[0]
            raise InvalidPluginError(
                f"{plugin} has {found_and_allowed}. Set the class attribute {attribute} to one of "
                f"them ({_WHY.get(attribute, 'the contract fixes its values')})."
            )
        if package != _BUILTIN_DISTRIBUTION and "." not in name:
            raise InvalidPluginError(
                f"{plugin} has a bare name (found {name!r}); names without a '.' are kept for "
                f"neurofm's built-ins, a third-party plugin's name is namespaced. Register it "
                f"under a namespaced name such as 'yourlab.{name}' (entry-point name and Config "
                f"tag)."
            )

    def class_attribute_violations(self, cls: type) -> list[tuple[str, str]]:
        """``(attribute, found_and_allowed)`` for each class attribute of this kind's contract (a
        modality's ``role``, ``normalization`` and ``per_unit``) that ``cls`` leaves unset or sets
        to a value outside the allowed ones, e.g. ``("role", "role = 'visual'; allowed:
        'stimulus', 'behaviour', 'neural'")``. Registration refuses a plugin with any; the
        conformance kit (:mod:`neurofm.testing`) checks the same.

        A value must be one of the allowed ones and of its type: ``per_unit = 1`` is not a bool.
        """
        violations = []
        for attribute, allowed in _class_attributes(self.kind).items():
            found = getattr(cls, attribute, None)
            if not any(found is value or (type(found) is type(value) and found == value)
                       for value in allowed):  # fmt: skip
                listed = ", ".join(map(repr, allowed))
                violations.append(
                    (attribute, f"{_found(attribute, found, allowed)}; allowed: {listed}")
                )
        return violations

    def _add(self, record: PluginRecord) -> None:
        self._check_unclaimed(record)
        self._records.setdefault(record.name, record)

    def _check_unclaimed(self, record: PluginRecord) -> None:
        existing = self._records.get(record.name)
        if existing is not None and existing.obj is not record.obj:
            raise DuplicatePluginError(
                f"two {self.kind} plugins claim the name {record.name!r}: {existing.target} "
                f"(from {existing.package} {existing.version}) and {record.target} "
                f"(from {record.package} {record.version}). Uninstall one of the packages or "
                f"give the new plugin a namespaced name such as 'yourlab.{record.name}'."
            )

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True
        skip_third_party = _autoload_disabled()
        for ep in sorted(metadata.entry_points(group=self.group), key=_builtin_first):
            dist = ep.dist
            package = dist.name if dist is not None else "<unknown>"
            version = dist.version if dist is not None else ""
            if skip_third_party and package != _BUILTIN_DISTRIBUTION:
                continue
            if ep.name in self._records and self._records[ep.name].target == ep.value:
                continue  # the same distribution seen twice on sys.path
            try:
                obj = ep.load()
                record = PluginRecord(
                    self.kind, ep.name, package, version, "loaded", obj, None, ep.value
                )
                self._check_unclaimed(record)
                self._validate(obj, ep.name, package, version)
                self._add(record)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                self._failures.append(
                    PluginRecord(
                        self.kind, ep.name, package, version, "failed", None, reason, ep.value
                    )
                )

    def _unknown(self, name: str) -> UnknownPluginError:
        known = sorted(self._records)
        hint = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        failed = [r for r in self._failures if r.name == name]
        parts = [f"no {self.kind} plugin named {name!r}."]
        if failed:
            parts.append(
                f"A plugin of that name failed to load ({failed[0].describe()}): {failed[0].error}."
            )
        if hint:
            parts.append(f"Did you mean {' or '.join(repr(h) for h in hint)}?")
        parts.append(
            f"Known: {', '.join(known) or 'none'}. Install the package that provides it "
            f"(it must declare an entry point in group {self.group!r}); `neurofm plugins` lists all."
        )
        return UnknownPluginError(" ".join(parts))


def _class_attributes(kind: str) -> dict[str, tuple[Any, ...]]:
    """The class attributes of ``kind``'s contract that registration checks, with their allowed
    values, read from the interface's own types (``Role``, ``Normalization``), so the two cannot
    disagree. Imported when first needed, as the interfaces themselves are (``_interface``):
    importing them loads torch, which this module does not need otherwise."""
    if kind != "modality":
        return {}
    from typing import get_args

    from neurofm.core.interfaces import Normalization, Role

    return {"role": get_args(Role), "normalization": get_args(Normalization),
            "per_unit": (False, True)}  # fmt: skip


# why each contract attribute matters, for the refusal's "what to do"
_WHY = {
    "role": "tasks select streams by it: any other value is never matched",
    "normalization": "the data pipeline normalises the stream by it",
    "per_unit": "it says whether the stream's columns are the session's units",
}


def _from(package: str, version: str) -> str:
    return f"from {package} {version}".strip()


def _found(attribute: str, found: Any, allowed: tuple[Any, ...]) -> str:
    """``role = 'visual'``, ``role = None (not set)`` or ``per_unit = 1 (of type int, expected
    bool)``: what a plugin sets a contract attribute to."""
    if found is None and None not in allowed:
        return f"{attribute} = None (not set)"
    kinds = {type(value).__name__ for value in allowed}
    if type(found).__name__ not in kinds:
        expected = " or ".join(sorted(kinds))
        return f"{attribute} = {found!r} (of type {type(found).__name__}, expected {expected})"
    return f"{attribute} = {found!r}"


def _builtin_first(ep: metadata.EntryPoint) -> tuple[int, str]:
    dist = ep.dist
    return (0 if dist is not None and dist.name == _BUILTIN_DISTRIBUTION else 1, ep.name)


def _path_of(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', repr(obj))}"


modalities = Registry("modality", "neurofm.modalities", "neurofm.core.interfaces:ModalityEncoder")
readouts = Registry("readout", "neurofm.readouts", "neurofm.core.interfaces:Readout")
heads = Registry("head", "neurofm.heads", "neurofm.core.interfaces:Head")
sources = Registry("source", "neurofm.sources", "neurofm.core.data.sources:Source")
stimuli = Registry("stimulus", "neurofm.stimuli", "neurofm.insilico.stimuli:Stimulus")

REGISTRIES: dict[str, Registry] = {
    "modalities": modalities,
    "readouts": readouts,
    "heads": heads,
    "sources": sources,
    "stimuli": stimuli,
}


def describe_plugin(obj: object, kind: str | None = None) -> str:
    """``<kind> plugin 'x' from <package> <version>`` for an instance of a registered plugin
    (any kind), for messages; ``[<kind> plugin ]<module>.<Class>, not a registered plugin``
    otherwise (``kind``, e.g. ``"head"``, where the caller knows it)."""
    for reg in REGISTRIES.values():
        try:
            return reg.record_of(type(obj)).describe()
        except UnknownPluginError:
            continue
    cls = type(obj)
    prefix = f"{kind} plugin " if kind else ""
    return f"{prefix}{cls.__module__}.{cls.__qualname__}, not a registered plugin"


def get_registry(kind: str) -> Registry:
    """The registry of a plugin kind: ``"modalities"``, ``"readouts"``, ``"heads"``, ``"sources"``
    or ``"stimuli"``."""
    try:
        return REGISTRIES[kind]
    except KeyError:
        raise UnknownPluginError(
            f"no plugin kind {kind!r}; expected one of {', '.join(REGISTRIES)}."
        ) from None
