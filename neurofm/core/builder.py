"""Model and experiment configs, and building a model from a config through the registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import Field, model_validator

from neurofm import registry
from neurofm.core.backbone import BackboneConfig, PerceiverIO, get_preset
from neurofm.core.config import PluginConfig, StrictModel, plugin_config_field
from neurofm.core.conv_core import CoreConfig
from neurofm.core.data.session import Session
from neurofm.core.interfaces import PositionedStimulusEncoder, SessionUnits, StimulusReadout
from neurofm.core.model import NeuroFM, params_per_unit

__all__ = [
    "DataConfig",
    "ExperimentConfig",
    "ModelConfig",
    "TrainingConfig",
    "build_model",
    "build_model_from_units",
    "default_model_config",
    "session_units",
    "stream_statistics",
    "target_channels",
]

ModalityConfig = plugin_config_field("modalities")
ReadoutConfig = plugin_config_field("readouts")
HeadConfig = plugin_config_field("heads")


class ModelConfig(StrictModel):
    """A whole model: backbone numbers, one encoder per stream, a readout, one head per target stream.

    ``modalities`` and ``heads`` are keyed by stream name (as in the sessions' manifests); each value
    is a plugin config validated through the registry. ``unit_time_offsets``: place each unit's
    tokens and stimulus reads at its own sample time within a frame where the session records one
    (``units/time_offset_s``; see :class:`~neurofm.core.model.NeuroFM`); False ignores the offsets.
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


class DataConfig(StrictModel):
    """Where the sessions are and how windows are cut (``session_weights``: session id -> sampling
    weight; default: sessions weighted by their usable train time). ``validation_fraction``: when
    no session has a validation tier, the fraction of each session's train intervals held out as
    validation (whole intervals, repeats of a stimulus together; 0 trains without validation)."""

    path: str
    sessions: list[str] | None = None
    window_s: float = Field(2.0, gt=0)
    session_weights: dict[str, float] | None = None
    validation_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="share of train intervals held out as validation when the data has no "
        "validation tier (0: train without validation)",
    )


class TrainingConfig(StrictModel):
    """Optimisation settings (AdamW with linear warm-up and cosine decay).

    ``batch_size`` is per process; under ``torchrun`` the global batch is the sum over ranks.
    ``checkpoint_every``: steps between saves of the training state (resume). ``num_workers`` and
    ``prefetch``: loader threads and batches kept ready. ``fsdp``: shard the backbone with FSDP2
    (distributed runs). ``compile``: ``torch.compile`` the backbone's per-token compute
    (:meth:`PerceiverIO.compile_blocks`). ``bf16``: bf16 autocast (CUDA only).
    ``shard_sessions``: under torchrun, each session belongs to one rank, which alone draws its
    windows and keeps its per-session parameters and their optimizer state (sessions balanced by
    neuron count; docs/scale-out.md); no effect in a single process.
    """

    steps: int = Field(1000, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(50, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    seed: int = 0
    eval_every: int = Field(200, ge=1)
    tasks: dict[str, float] = Field(
        default_factory=lambda: {
            "responses_from_stimulus_behaviour": 8.0,
            "behaviour_from_responses": 1.0,
            "forecast": 1.0,
            "causal_50_stimulus_behaviour": 1.0,
            "population_random": 1.0,
        }
    )
    device: Literal["cpu", "cuda", "auto"] = "auto"
    checkpoint_every: int = Field(100, ge=1)
    num_workers: int = Field(2, ge=1)
    prefetch: int = Field(4, ge=1)
    fsdp: bool = False
    shard_sessions: bool = False
    compile: bool = False
    bf16: bool = True


class ExperimentConfig(StrictModel):
    """Everything ``neurofm train`` needs: model, data and training settings."""

    model: ModelConfig
    data: DataConfig
    training: TrainingConfig = Field(default_factory=TrainingConfig)


def default_model_config(
    preset: str = "tiny", *, frame_size: tuple[int, int] = (36, 64), stimulus_path: bool = True
) -> ModelConfig:
    """The built-in mouse V1 model: movie, pupil, running (and gaze) -> calcium, with behaviour
    heads.

    ``frame_size`` (height, width) of the movie.

    By default (``stimulus_path``) the model has both paths into a neuron's prediction
    (docs/concepts.md): the movie goes through a shared convolutional core (``movie_core``) whose
    feature map the ``retinotopic`` readout reads at each neuron's place on the screen (shifted
    by the gaze, so a ``gaze`` modality is added), and the core's pooled tokens, with behaviour
    and neural tokens, go through the backbone. Frames are average-pooled by
    ``min(height, width) // 18`` (at least 1) before the core, which keeps about 18 rows, and
    for the CPU presets ``tiny`` and ``small`` groups of 3 frames are averaged (the core runs at
    a third of the frame rate) and the core has 24 channels in 2 blocks (spatial kernels 7, 3;
    temporal 4, 2); for larger presets pairs of frames are averaged and the core has 16 channels
    in 3 blocks (9, 5, 5; temporal 5, 3, 3). The forecast anchor starts with a 1 s time constant
    (``anchor_tau_s``).

    With ``stimulus_path=False`` (the model before the stimulus path), the movie is cut into
    tubelets (``movie``) that tile each side in 4 (or 3, 2, 1 if 4 does not divide it), the
    ``neuron_embedding`` readout reads the backbone alone, and the anchor starts at 10 s.
    Measured side by side: BENCHMARKS.md, "The demo" and "The stimulus path".
    """
    h, w = frame_size
    heads = {
        "calcium": {"type": "poisson"},
        "pupil": {"type": "regression"},
        "running": {"type": "regression"},
    }
    behaviour = {"pupil": {"type": "pupil"}, "running": {"type": "running"}}
    if not stimulus_path:

        def patch(side: int) -> int:
            return side // next(n for n in (4, 3, 2, 1) if side % n == 0)

        movie = {"type": "movie", "height": h, "width": w, "patch_height": patch(h),
                 "patch_width": patch(w)}  # fmt: skip
        return ModelConfig.model_validate(
            {"backbone": get_preset(preset).model_dump(),
             "modalities": {"movie": movie, **behaviour, "calcium": {"type": "calcium"}},
             "readout": {"type": "neuron_embedding"}, "heads": heads}
        )  # fmt: skip
    # larger presets: 16 channels in 3 blocks at half the frame rate (frame_pool 2; temporal
    # kernels spanning 0.33, 0.2 and 0.2 s at 30 Hz). The CPU presets: 24 channels in 2 blocks
    # (a third gave no gain) at a third of the frame rate (frame_pool 3; 0.4 and 0.2 s): on the
    # demo, at equal training time, 0.805 of the noise ceiling against 0.776 for 16 channels at
    # half the rate (BENCHMARKS.md, "The demo" and "The stimulus path")
    core = {"input_pool": max(1, min(h, w) // 18), "channels": 16, "temporal_kernels": (5, 3, 3)}
    frame_pool = 2
    if preset in ("tiny", "small"):
        core.update(channels=24, layers=2, spatial_kernels=(7, 3), temporal_kernels=(4, 2))
        frame_pool = 3
    core_config = CoreConfig.model_validate(core)
    map_h, map_w = core_config.map_size(h, w)
    movie = {"type": "movie_core", "height": h, "width": w, "core": core_config.model_dump(),
             "frame_pool": frame_pool, "token_rows": min(4, map_h),
             "token_cols": min(4, map_w)}  # fmt: skip
    return ModelConfig.model_validate(
        {"backbone": get_preset(preset).model_dump(),
         "modalities": {"movie": movie, **behaviour, "gaze": {"type": "gaze"},
                        "calcium": {"type": "calcium"}},
         "readout": {"type": "retinotopic", "mask_height": map_h, "mask_width": map_w},
         "heads": heads, "anchor_tau_s": 1.0}
    )  # fmt: skip


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
