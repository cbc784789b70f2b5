"""The ``Readout`` base builds a readout: it stores the constructor's arguments, calls
``build_shared``, adds each session through ``add_session`` and keeps the list of sessions; a
readout written against the interface before these hooks (its own ``__init__``,
``add_sessions`` and ``known_sessions``) keeps working."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import pytest
import torch
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.interfaces import Readout, SessionUnits, StimulusReadout, StimulusView
from neurofm.testing import check_readout


class _Config(PluginConfig):
    type: Literal["test.readout"] = "test.readout"


class _Embedding:
    """One vector per neuron; ``project`` is its dot product with a query of ``h``."""

    def unit_embeddings(self, session_id: str, units: Tensor) -> Tensor:
        return self.embedding[self.checked_key(session_id)][units]

    def project(self, h: Tensor, session_id: str, units: Tensor) -> Tensor:
        q = self.query(h).unflatten(-1, (self.params_per_unit, self.d_model))  # [Q, p, d]
        return torch.einsum("qpd,kd->qkp", q, self.unit_embeddings(session_id, units))


class HookReadout(_Embedding, Readout):
    """Written against the hooks: it records what ``known_sessions`` said during each call."""

    Config = _Config

    def build_shared(self) -> None:
        self.query = nn.Linear(self.d_model, self.d_model * self.params_per_unit)
        self.embedding = nn.ParameterDict()
        self.seen: list[tuple[str, list[str]]] = []

    def add_session(self, key: str, units: SessionUnits) -> None:
        self.seen.append((key, self.known_sessions()))
        self.embedding[key] = nn.Parameter(torch.randn(units.count, self.d_model))


class _OwnSessions:
    """``add_sessions`` and ``known_sessions`` as readouts wrote them before the hooks."""

    def add_sessions(self, sessions: Mapping[str, SessionUnits]) -> None:
        for session_id, units in sessions.items():
            if session_id not in self._ids:
                key = self.parameter_key(session_id)
                self.embedding[key] = nn.Parameter(torch.randn(units.count, self.d_model))
                self._ids.append(session_id)

    def known_sessions(self) -> list[str]:
        return list(self._ids)


class OwnSessionsReadout(_OwnSessions, _Embedding, Readout):
    """Written against the interface before the hooks (as the tutorial showed it)."""

    Config = _Config

    def __init__(self, config, *, d_model, sessions, params_per_unit=1) -> None:
        super().__init__(
            config, d_model=d_model, sessions=sessions, params_per_unit=params_per_unit
        )
        self.query = nn.Linear(d_model, d_model * params_per_unit)
        self.embedding = nn.ParameterDict()
        self._ids: list[str] = []
        self.add_sessions(sessions)


class _PointConfig(PluginConfig):
    type: Literal["test.point"] = "test.point"


class _MeanDrive:
    """``project_stimulus``: ``project`` plus the drive of the mean feature map before each query
    (the same for every unit)."""

    def project_stimulus(
        self, h: Tensor, session_id: str, units: Tensor, times: Tensor,
        stimulus: Sequence[StimulusView],
    ) -> Tensor:  # fmt: skip
        raw = self.project(h, session_id, units)
        for view in stimulus:
            values = view.features.values.mean((2, 3))  # [T, C]
            seen = (view.features.times[None] <= times[:, None]).to(values.dtype)  # [Q, T]
            raw = raw + (seen @ values @ self.weights)[:, None] * (units.numel() > 0)
        return raw


class OwnSessionsStimulusReadout(_OwnSessions, _MeanDrive, _Embedding, StimulusReadout):
    """A stimulus readout before the hooks: its own ``__init__`` passes ``feature_channels`` on."""

    Config = _PointConfig

    def __init__(self, config, *, d_model, sessions, params_per_unit=1, feature_channels) -> None:
        super().__init__(config, d_model=d_model, sessions=sessions,
                         params_per_unit=params_per_unit, feature_channels=feature_channels)  # fmt: skip
        self.weights = nn.Parameter(torch.randn(feature_channels, params_per_unit))
        self.query = nn.Linear(d_model, d_model * params_per_unit)
        self.embedding = nn.ParameterDict()
        self._ids: list[str] = []
        self.add_sessions(sessions)


class HookStimulusReadout(_MeanDrive, HookReadout, StimulusReadout):
    """A stimulus readout written against the hooks."""

    Config = _PointConfig

    def build_shared(self) -> None:
        super().build_shared()
        self.weights = nn.Parameter(torch.randn(self.feature_channels, self.params_per_unit))


SESSIONS = {"a": SessionUnits("a", 3), "b.2": SessionUnits("b.2", 2)}


def test_the_base_stores_the_arguments_and_adds_the_sessions() -> None:
    readout = HookReadout(_Config(), d_model=8, sessions=SESSIONS, params_per_unit=2)
    assert (readout.d_model, readout.params_per_unit) == (8, 2)
    assert readout.known_sessions() == ["a", "b.2"]
    assert [key for key, _ in readout.seen] == ["a", "b%2E2"]  # stored under parameter_key
    assert readout.project(torch.randn(4, 8), "b.2", torch.arange(2)).shape == (4, 2, 2)
    check_readout(HookReadout, _Config(), name="test.readout")
    stimulus = HookStimulusReadout(_PointConfig(), d_model=8, sessions=SESSIONS, feature_channels=3)
    assert stimulus.feature_channels == 3 and stimulus.known_sessions() == ["a", "b.2"]
    check_readout(HookStimulusReadout, _PointConfig(), name="test.point")


def test_add_sessions_skips_known_ones_and_registers_new_ones_after_the_call() -> None:
    readout = HookReadout(_Config(), d_model=8, sessions=SESSIONS)
    kept = readout.embedding["a"]
    readout.add_sessions({"a": SessionUnits("a", 3), "c": SessionUnits("c", 1),
                          "d": SessionUnits("d", 4)})  # fmt: skip
    assert readout.embedding["a"] is kept
    assert readout.known_sessions() == ["a", "b.2", "c", "d"]
    # during one call, known_sessions lists the sessions known before it
    assert readout.seen[2:] == [("c", ["a", "b.2"]), ("d", ["a", "b.2"])]
    assert readout.seen[:2] == [("a", []), ("b%2E2", [])]
    with pytest.raises(KeyError, match="no neurons for session 'e'"):
        readout.unit_embeddings("e", torch.arange(1))


def test_a_readout_written_before_the_hooks_keeps_working() -> None:
    readout = OwnSessionsReadout(_Config(), d_model=8, sessions=SESSIONS)
    assert readout.known_sessions() == ["a", "b.2"]
    kept = readout.embedding["a"]
    readout.add_sessions({"a": SessionUnits("a", 3), "c": SessionUnits("c", 2)})
    assert readout.embedding["a"] is kept and readout.known_sessions() == ["a", "b.2", "c"]
    check_readout(OwnSessionsReadout, _Config(), name="test.readout")
    check_readout(OwnSessionsStimulusReadout, _PointConfig(), name="test.point")


def test_the_base_refuses_what_breaks_the_contract() -> None:
    class NoKnownSessions(HookReadout):  # keeps its own sessions but cannot list them
        def add_sessions(self, sessions: Mapping[str, SessionUnits]) -> None:
            pass

    with pytest.raises(TypeError, match=r"overrides add_sessions, .*: override known_sessions"):
        NoKnownSessions(_Config(), d_model=8, sessions=SESSIONS)

    class NoAddSession(_Embedding, Readout):
        Config = _Config

    with pytest.raises(NotImplementedError, match=r"NoAddSession must implement add_session"):
        NoAddSession(_Config(), d_model=8, sessions=SESSIONS)
    with pytest.raises(TypeError, match=r"is not a StimulusReadout .* feature_channels=4"):
        HookReadout(_Config(), d_model=8, sessions=SESSIONS, feature_channels=4)
    with pytest.raises(
        TypeError, match=r"HookStimulusReadout reads the stimulus .* feature_channels="
    ):
        HookStimulusReadout(_PointConfig(), d_model=8, sessions=SESSIONS)
