"""Building a model from a config through the registry: the builder only assembles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from neurofm import registry
from neurofm.core.backbone import PerceiverIO
from neurofm.core.config import PluginConfig
from neurofm.core.data.session import Session
from neurofm.core.interfaces import PositionedStimulusEncoder, SessionUnits, StimulusReadout
from neurofm.core.model.config import ModelConfig
from neurofm.core.model.neurofm import NeuroFM, params_per_unit

__all__ = [
    "build_model",
    "build_model_from_units",
    "session_units",
    "stream_statistics",
    "target_channels",
]


def session_units(sessions: Sequence[Session]) -> dict[str, SessionUnits]:
    """Readout vocabulary: the units of each session."""
    out = {}
    for s in sessions:
        if s.units is not None:
            out[s.session_id] = SessionUnits(
                s.session_id, len(s.units), s.units.position_um, s.units.area, s.animal_id
            )
    return out


def _build(kind: str, config: PluginConfig, **kwargs):
    return registry.get_registry(kind).get(config.type)(config, **kwargs)


def target_channels(config: ModelConfig, sessions: Sequence[Session]) -> dict[str, int]:
    """Channel count of every non-neural target stream, read from the sessions' manifests."""
    out = {}
    for name in config.heads:
        encoder_cls = registry.modalities.get(config.modalities[name].type)
        if encoder_cls.per_unit:
            continue
        shapes = {
            tuple(s.stream_spec(name).data.shape[1:])
            for s in sessions
            if name in s.manifest.streams
        }
        if len(shapes) != 1:
            raise ValueError(
                f"target stream {name!r} needs one sample shape across sessions to size its "
                f"head; found {sorted(shapes) or 'no session with that stream'}"
            )
        try:
            out[name] = encoder_cls.target_channels(shapes.pop())
        except ValueError as exc:
            raise ValueError(f"target stream {name!r}: {exc}") from exc
    return out


def build_model(config: ModelConfig, sessions: Sequence[Session]) -> NeuroFM:
    """Build every part named in ``config`` through the registry and assemble a :class:`NeuroFM`.

    ``sessions`` provide the readout's vocabulary (units per session) and the channel counts of the
    target streams.
    """
    return build_model_from_units(
        config,
        session_units(sessions),
        target_channels(config, sessions),
        statistics=stream_statistics(sessions),
    )


def stream_statistics(sessions: Sequence[Session]) -> dict[str, dict[str, dict]]:
    """Normalisation statistics of every stream of every session, copied from the manifests."""
    return {
        s.session_id: {
            name: spec.statistics.model_dump(mode="json")
            for name, spec in s.manifest.streams.items()
            if spec.statistics is not None
        }
        for s in sessions
    }


def build_model_from_units(
    config: ModelConfig,
    units: Mapping[str, SessionUnits],
    channels: Mapping[str, int],
    *,
    statistics: Mapping[str, Mapping[str, dict]] | None = None,
) -> NeuroFM:
    """Like :func:`build_model`, from a unit vocabulary, target channel counts and the streams'
    normalisation statistics (checkpoints)."""
    d = config.backbone.d_model
    encoders = {
        name: _build("modalities", cfg, d_model=d) for name, cfg in config.modalities.items()
    }
    heads = {}
    for name, cfg in config.heads.items():
        if not encoders[name].per_unit and name not in channels:
            raise ValueError(f"channel count of target stream {name!r} unknown")
        heads[name] = _build(
            "heads", cfg, d_model=d, channels=None if encoders[name].per_unit else channels[name]
        )
    readout = None
    if any(e.per_unit for e in encoders.values()):
        readout_cfg = config.readout or registry.readouts.get("neuron_embedding").Config()
        p = params_per_unit(encoders, heads)
        kwargs = {}
        if issubclass(registry.readouts.get(readout_cfg.type), StimulusReadout):
            kwargs["feature_channels"] = _feature_channels(encoders)
        readout = _build(
            "readouts", readout_cfg, d_model=d, sessions=units, params_per_unit=p, **kwargs
        )
    model = NeuroFM(
        encoders=encoders, backbone=PerceiverIO(config.backbone), readout=readout, heads=heads,
        unit_time_offsets=config.unit_time_offsets, anchor_tau_s=config.anchor_tau_s,
        session_units=units, target_channels=channels,
        stream_statistics=statistics, model_config=config,
    )  # fmt: skip
    return model


def _feature_channels(encoders: Mapping[str, object]) -> int:
    """The channel count of the model's positioned features: that of its first positioned encoder
    (0 when it has none; :class:`NeuroFM` then refuses the readout, and it also refuses
    encoders whose counts differ from the readout's, naming the plugins)."""
    counts = [
        e.feature_channels for e in encoders.values() if isinstance(e, PositionedStimulusEncoder)
    ]
    return counts[0] if counts else 0
