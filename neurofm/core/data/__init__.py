"""Sessions on disk, simulated data, and the windows that feed the model."""

from neurofm.core.data.manifest import Interval, Manifest, StreamSpec, StreamStatistics
from neurofm.core.data.session import Session, StreamWindow, UnitTable, open_dataset
from neurofm.core.data.writer import StreamInput, compute_statistics, write_session

__all__ = [
    "Interval",
    "Manifest",
    "Session",
    "StreamInput",
    "StreamSpec",
    "StreamStatistics",
    "StreamWindow",
    "UnitTable",
    "compute_statistics",
    "open_dataset",
    "write_session",
]
