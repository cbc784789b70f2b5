"""The config of a whole model: backbone numbers and one plugin config per part."""

from __future__ import annotations

from pydantic import Field, model_validator

from neurofm.core.backbone import BackboneConfig, get_preset
from neurofm.core.config import StrictModel, plugin_config_field

__all__ = ["ModelConfig"]

ModalityConfig = plugin_config_field("modalities")
ReadoutConfig = plugin_config_field("readouts")
HeadConfig = plugin_config_field("heads")


class ModelConfig(StrictModel):
    """A whole model: backbone numbers, one encoder per stream, a readout, one head per target stream.

    ``modalities`` and ``heads`` are keyed by stream name (as in the sessions' manifests); each value
    is a plugin config validated through the registry. ``unit_time_offsets``: place each unit's
    tokens and stimulus reads at its own sample time within a frame where the session records one
    (``units/time_offset_s``; see :class:`~neurofm.core.model.neurofm.NeuroFM`); False ignores the offsets.
    """

    backbone: BackboneConfig = Field(default_factory=lambda: get_preset("tiny"))
    modalities: dict[str, ModalityConfig]
    readout: ReadoutConfig | None = None
    heads: dict[str, HeadConfig] = Field(default_factory=dict)
    unit_time_offsets: bool = Field(
        True,
        description="use the sessions' per-unit sample times (units/time_offset_s) in the "
        "per-unit encoders and the stimulus reads of the targets",
    )
    anchor_tau_s: float = Field(
        10.0,
        gt=0,
        description="starting time constant (s) of the forecast anchor's weight "
        "exp(-elapsed / tau), learned per target stream",
    )

    @model_validator(mode="after")
    def _heads_have_streams(self) -> ModelConfig:
        extra = sorted(set(self.heads) - set(self.modalities))
        if extra:
            raise ValueError(
                f"heads {extra} have no stream in `modalities` ({sorted(self.modalities)}); "
                f"a head predicts a stream the model encodes"
            )
        return self
