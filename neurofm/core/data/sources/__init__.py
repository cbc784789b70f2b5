"""Data importers ("sources"): turn recordings held in other formats into neurofm session folders.

A source is a plugin of kind ``sources`` (entry-point group ``neurofm.sources``). It reads one
format and writes session folders with :func:`neurofm.core.data.write_session`; the whole output
folder appears atomically. Built-ins: ``experanto`` (OmniMouse), ``sensorium`` (SENSORIUM 2022/2023
folders) and ``nwb`` (NWB optical physiology, needs ``pip install neurofm[nwb]``).

Example:
    >>> from neurofm import registry
    >>> source = registry.sources.get("experanto")()
    >>> summary = source.import_(Path("exp"), Path("data"), overwrite=False, progress=False)  # doctest: +SKIP
    >>> print(summary.format())                                                            # doctest: +SKIP
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from neurofm.core.config import PluginConfig
from neurofm.core.data.manifest import ImportNotes
from neurofm.errors import NeurofmError

__all__ = ["ImportSummary", "ImportedSession", "Source", "SourceFormatError"]


class SourceFormatError(NeurofmError, ValueError):
    """Input data that does not follow the format its importer reads (says what was expected)."""


@dataclass(frozen=True)
class ImportedSession:
    """One session written by an importer: its folder and the shape of every stream."""

    session_id: str
    path: Path
    streams: dict[str, tuple[int, ...]]
    units: int
    intervals: dict[str, int]


@dataclass
class ImportSummary:
    """What an import wrote, what it left out and what it guessed (with the reason for each).

    Entries are keyed ``"<session id>/<what>"``; :meth:`notes` collects one session's entries for
    its manifest (``import_notes``), so the record of an import travels with the data.
    """

    source: str
    out: Path
    sessions: list[ImportedSession] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    guesses: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, what: str, why: str) -> None:
        """Record that ``what`` was not imported (or not understood) because ``why``."""
        self.skipped.append((what, why))

    def guess(self, what: str, how: str) -> None:
        """Record that ``what`` was not stated by the source and was guessed as ``how``."""
        self.guesses.append((what, how))

    def notes(self, session_id: str) -> ImportNotes:
        """The unused items and guesses of one session, for its manifest."""

        def mine(items: list[tuple[str, str]]) -> list[str]:
            prefix = f"{session_id}/"
            return [f"{w.removeprefix(prefix)}: {y}" for w, y in items if w.startswith(prefix)]

        return ImportNotes(
            source=self.source, unused=mine(self.skipped), guesses=mine(self.guesses)
        )

    def format(self, max_skipped: int = 20) -> str:
        """A human-readable report: one line per session, then the skipped and guessed items."""
        lines = [f"imported {len(self.sessions)} session(s) from {self.source} into {self.out}"]
        for s in self.sessions:
            streams = ", ".join(f"{n} {list(shape)}" for n, shape in s.streams.items())
            tiers = ", ".join(f"{k} {v}" for k, v in sorted(s.intervals.items()))
            lines.append(f"  {s.session_id}: {s.units} units; {streams}; intervals: {tiers}")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} item(s):")
            lines += [f"  {what}: {why}" for what, why in self.skipped[:max_skipped]]
            if len(self.skipped) > max_skipped:
                lines.append(f"  ... and {len(self.skipped) - max_skipped} more")
        else:
            lines.append("skipped nothing")
        if self.guesses:
            lines.append(f"guessed {len(self.guesses)} item(s) the source does not state:")
            lines += [f"  {what}: {how}" for what, how in self.guesses[:max_skipped]]
            if len(self.guesses) > max_skipped:
                lines.append(f"  ... and {len(self.guesses) - max_skipped} more")
        return "\n".join(lines)


class Source(ABC):
    """Interface of a data importer. Subclasses set ``Config`` (a tagged :class:`PluginConfig`)."""

    Config: ClassVar[type[PluginConfig]]

    def __init__(self, config: PluginConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def import_(self, src: Path, out: Path, *, overwrite: bool, progress: bool) -> ImportSummary:
        """Import ``src`` (a file or folder in this source's format) into the dataset folder ``out``.

        ``out`` receives one session folder per recording and appears atomically: on any error
        nothing is left at ``out``.

        Raises:
            SourceFormatError: ``src`` does not follow the format (the message says what was
                expected, what was found and what to do).
            FileExistsError: ``out`` exists and ``overwrite`` is false.
        """
