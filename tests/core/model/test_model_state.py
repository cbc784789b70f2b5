"""A NeuroFM receives what checkpoints record (vocabulary, target sizes, statistics, config) in
its constructor, and refuses a readout that does not give what its heads need."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurofm import NeuroFM, PerceiverIO, SessionUnits, get_preset
from neurofm.core.data import open_dataset
from neurofm.core.model.builder import build_model
from neurofm.core.model.presets import default_model_config
from neurofm.plugins.heads.poisson import PoissonConfig, PoissonHead
from neurofm.plugins.heads.regression import RegressionConfig, RegressionHead
from neurofm.plugins.modalities.calcium import CalciumConfig, CalciumEncoder
from neurofm.plugins.readouts.neuron_embedding import NeuronEmbeddingConfig, NeuronEmbeddingReadout


def _parts(head, units, params_per_unit=1):
    readout = NeuronEmbeddingReadout(NeuronEmbeddingConfig(), d_model=32, sessions=units,
                                     params_per_unit=params_per_unit)  # fmt: skip
    return dict(
        encoders={"calcium": CalciumEncoder(CalciumConfig(), d_model=32)},
        backbone=PerceiverIO(get_preset("tiny")), readout=readout, heads={"calcium": head},
    )  # fmt: skip


def test_the_constructor_takes_what_checkpoints_record() -> None:
    units = {"s": SessionUnits("s", 3, None, None, "m")}
    stats = {"s": {"calcium": {"mean": [0.0], "std": [1.0]}}}
    head = PoissonHead(PoissonConfig(), d_model=32, channels=None)
    model = NeuroFM(**_parts(head, units), session_units=units, stream_statistics=stats)
    assert model.session_units == units and model.stream_statistics == stats
    assert model.target_channels == {} and model.model_config is None  # assembled by hand
    with pytest.raises(ValueError, match=r"session_units names sessions \['other'\]"):
        NeuroFM(**_parts(head, units), session_units={"other": SessionUnits("other", 3)})


def test_a_readout_must_give_what_its_heads_need() -> None:
    units = {"s": SessionUnits("s", 3)}
    gaussian = RegressionHead(RegressionConfig(likelihood="gaussian"), d_model=32, channels=None)
    with pytest.raises(ValueError, match=r"gives 1 raw output.*need 2.*params_per_unit=2"):
        NeuroFM(**_parts(gaussian, units))
    assert NeuroFM(**_parts(gaussian, units, params_per_unit=2)).readout.params_per_unit == 2


def test_added_sessions_are_recorded(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    model = build_model(default_model_config("tiny", frame_size=(18, 32)), sessions[:1])
    assert list(model.session_units) == [sessions[0].session_id]
    assert list(model.stream_statistics) == [sessions[0].session_id]
    assert model.model_config is not None and model.target_channels == {"pupil": 2, "running": 1}
    new = sessions[1]
    units = {new.session_id: SessionUnits(new.session_id, len(new.units))}
    model.add_sessions(units, {new.session_id: {"calcium": {"mean": [1.0]}}})
    assert new.session_id in model.readout.known_sessions()
    assert model.session_units[new.session_id] is units[new.session_id]
    assert model.stream_statistics[new.session_id] == {"calcium": {"mean": [1.0]}}
