"""Simulated mouse V1 recordings with known ground truth (pure numpy; see docs/simulator.md).

Example:
    >>> from neurofm.core.data.simulation import SimulationConfig, simulate_session
    >>> session = simulate_session(SimulationConfig.tiny(), animal=0, session=0)
    >>> session.streams["calcium"].data.shape[1]
    16
"""

from neurofm.core.data.simulation.dataset import (
    SimulatedSession,
    SimulatedStream,
    SimulationConfig,
    shared_test_clips,
    simulate_dataset,
    simulate_session,
)

__all__ = [
    "SimulatedSession",
    "SimulatedStream",
    "SimulationConfig",
    "shared_test_clips",
    "simulate_dataset",
    "simulate_session",
]
