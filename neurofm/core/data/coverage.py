"""Which of a model's streams the sessions hold: a config whose stream names match nothing in the
data (a typo in a modality or head key) is refused before any training step."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from neurofm.core.data.session import Session
from neurofm.errors import DataError

__all__ = ["check_stream_coverage"]


def check_stream_coverage(
    names: Sequence[str], sessions: Sequence[Session], *, strict: bool = True
) -> list[str]:
    """Check that the streams ``names`` (modality and head keys) occur in ``sessions``.

    Returns one note per stream that only some sessions hold (those windows train without it).

    Raises:
        DataError: no stream of ``names`` is in any session, or (``strict``) some stream is in
            none; the message names the streams the data holds and suggests close names.
    """
    in_data = sorted({n for s in sessions for n in s.stream_names})
    holders = {n: [s.session_id for s in sessions if n in s.stream_names] for n in names}
    absent = [n for n, ids in holders.items() if not ids]
    if absent and (strict or len(absent) == len(holders)):
        hints = []
        for name in absent:
            close = difflib.get_close_matches(name, in_data, n=1)
            if close:
                hints.append(f"{name!r} -> {close[0]!r}?")
        hint = f" (did you mean {', '.join(hints)})" if hints else ""
        raise DataError(
            f"the model's streams {absent} are in none of the {len(sessions)} session(s){hint}; "
            f"the data holds the streams {in_data}. Name the model's modalities and heads after "
            f"streams of the data (or use data that has them)"
        )
    notes = []
    for name, ids in holders.items():
        if ids and len(ids) < len(sessions):
            missing = [s.session_id for s in sessions if s.session_id not in ids]
            notes.append(
                f"stream {name!r} is in {len(ids)} of {len(sessions)} sessions; the windows of "
                f"{missing[:5]}{' ...' if len(missing) > 5 else ''} train without it"
            )
    if absent:
        notes.append(f"streams {absent} are in none of the sessions and are not trained")
    return notes
