"""Exception types raised by neurofm.

Every error says what was expected, what was found and what to do. Catch :class:`NeurofmError` to
handle any of them.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "DiskFullError",
    "DuplicatePluginError",
    "InvalidPluginError",
    "NeurofmError",
    "PluginError",
    "SessionFormatError",
    "UnknownPluginError",
]


class NeurofmError(Exception):
    """Base class of every error neurofm raises on purpose."""


class PluginError(NeurofmError):
    """Base class of registry errors."""


class UnknownPluginError(PluginError, LookupError):
    """A plugin name that no registry entry (built-in or installed) carries."""


class DuplicatePluginError(PluginError):
    """Two different objects claim the same plugin name in one registry."""


class InvalidPluginError(PluginError, TypeError):
    """A plugin that does not implement its interface or whose config tag does not match its name."""


class ConfigError(NeurofmError, ValueError):
    """A configuration that does not validate; lists every problem with its path."""


class DataError(NeurofmError, ValueError):
    """Valid data that cannot serve a request: no interval of a tier long enough for the window, a
    window outside the recording, a session without samples."""


class SessionFormatError(NeurofmError, ValueError):
    """A session folder, manifest or stream file that does not follow the session format."""


class DiskFullError(NeurofmError, OSError):
    """A write that failed because the disk (or the process's file-size limit) is full; names the
    path and the bytes it needed."""
