"""A class that does not implement neurofm's ModalityEncoder interface."""

from __future__ import annotations


class NotAPlugin:
    """Has a name but no interface."""

    def tokenize(self, stream):
        return stream
