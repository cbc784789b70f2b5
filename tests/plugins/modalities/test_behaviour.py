"""One behaviour encoder class serves pupil, running, gaze and any other ``[T, C]`` behaviour stream."""

from __future__ import annotations

import pytest

from neurofm import registry
from neurofm.errors import InvalidPluginError
from neurofm.plugins.modalities.behaviour import BehaviourEncoder, behaviour_encoder
from neurofm.testing import check_modality

BUILTINS = {"pupil": 2, "running": 1, "gaze": 2}  # name -> default channels


@pytest.mark.parametrize(("name", "channels"), BUILTINS.items())
def test_builtins_are_the_behaviour_encoder_under_their_names(name: str, channels: int) -> None:
    cls = registry.modalities.get(name)
    assert issubclass(cls, BehaviourEncoder) and cls is not BehaviourEncoder
    assert registry.modalities.record_of(cls).name == name
    config = cls.Config.model_validate({"type": name})
    assert config.model_dump() == {"type": name, "channels": channels, "patch_samples": 4}
    assert (cls.role, cls.normalization, cls.per_unit) == ("behaviour", "zscore", False)


@pytest.mark.parametrize(("name", "channels"), BUILTINS.items())
def test_builtin_weights_keep_their_checkpoint_names(name: str, channels: int) -> None:
    """A checkpoint saved before the three shared one class still loads: same keys and shapes."""
    cls = registry.modalities.get(name)
    state = cls(cls.Config(), d_model=8).state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        "embed.weight": (8, 2 * 4 * channels),
        "embed.bias": (8,),
    }


def test_a_third_party_stream_is_one_call_and_passes_the_kit() -> None:
    WhiskerEncoder = behaviour_encoder(
        "acme.whisker",
        channels=3,
        doc="Temporal patches of whisker angles -> tokens.",
        config_doc="Whisker stream ``[T, channels]``; ``patch_samples`` per token.",
        patch_samples=5,
    )
    assert WhiskerEncoder.__module__ == __name__
    assert WhiskerEncoder.__name__ == "WhiskerEncoder"
    assert WhiskerEncoder.__doc__.startswith("Temporal patches of whisker angles -> tokens.")
    assert WhiskerEncoder.Config().model_dump() == {
        "type": "acme.whisker",
        "channels": 3,
        "patch_samples": 5,
    }
    registry.modalities.register(WhiskerEncoder)
    try:
        assert registry.modalities.get("acme.whisker") is WhiskerEncoder
        check_modality(WhiskerEncoder)
    finally:
        registry.modalities.unregister("acme.whisker")


def test_the_shared_class_is_not_a_plugin() -> None:
    with pytest.raises(InvalidPluginError, match="Config"):
        registry.modalities.register(BehaviourEncoder, name="acme.behaviour")
