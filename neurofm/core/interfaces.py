"""The interfaces every plugin implements: modality encoders, readouts and heads.

These are small abstract classes; plugins derive from them and are final (no subclassing of concrete
plugins). Core code talks to plugins only through these methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import torch
from torch import Tensor, nn

from neurofm.core.config import PluginConfig

__all__ = [
    "FeatureMap",
    "Head",
    "ModalityEncoder",
    "Normalization",
    "PositionedOutput",
    "PositionedStimulusEncoder",
    "Readout",
    "ReadoutQuery",
    "Role",
    "SessionUnits",
    "StimulusReadout",
    "StimulusView",
    "StreamTensor",
    "Tokens",
]

Role = Literal["stimulus", "behaviour", "neural"]
Normalization = Literal["zscore", "scale", "none"]


@dataclass(frozen=True)
class StreamTensor:
    """One stream of one sample inside its window, normalised.

    Shape:
        values: ``[T, ...]`` float32 (for per-unit streams ``[T, N]``); invalid entries are 0.
        valid: ``[T, C]`` bool for 2-D streams, ``[T]`` otherwise (False where data was NaN/absent).
        times: ``[T]`` float32 seconds since the window start.
        period_s: the stream's nominal sampling period (seconds), so a sample spans
            ``[t, t + period_s)``.
        unit_time_offset_s: per-unit streams only, ``[N]`` float32 or None: each column's sample
            time within a frame, so column ``n``'s sample ``k`` was taken at
            ``times[k] + unit_time_offset_s[n]`` (the session's ``units/time_offset_s``, e.g.
            scan-phase offsets of two-photon imaging). The model fills it when the sample
            carries offsets; None means every column is sampled at ``times``. An encoder that
            ignores it places a unit's tokens at the frame times, as before offsets existed.
        valid_host, times_host: ``valid`` and ``times`` as numpy arrays on the host, or None.
            The model fills them when it moves a sample to its device, so an encoder can make
            data-dependent choices (which tokens to keep, how many steps a window of flashed
            images spans) without reading device memory; see :meth:`host_valid`. A stream
            derived with another ``valid`` or ``times`` (``dataclasses.replace``) must set the
            copy anew or to None; on the CPU a copy that differs is refused.
    """

    values: Tensor
    valid: Tensor
    times: Tensor
    period_s: float
    unit_time_offset_s: Tensor | None = None
    valid_host: np.ndarray | None = field(default=None, repr=False, compare=False)
    times_host: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, device in (("valid", self.valid), ("times", self.times)):
            host = getattr(self, f"{name}_host")
            if host is None:
                continue
            if host.shape != tuple(device.shape):
                raise ValueError(
                    f"{name}_host has shape {host.shape} but {name} has {tuple(device.shape)}; "
                    f"it must be the same array on the host (or None)"
                )
            # on the CPU the two can be compared: a copy left stale by
            # dataclasses.replace(stream, valid=...) is caught in CPU tests (a view of the
            # tensor's own memory, as the model's copies mostly are, is equal as it stands)
            if (
                device.is_cpu
                and not _views_of_the_same_memory(device, host)
                and not np.array_equal(device.numpy(), host)
            ):
                raise ValueError(
                    f"{name}_host differs from {name}; when deriving a stream with another "
                    f"{name}, set {name}_host=None (or its new host copy)"
                )

    @property
    def n_samples(self) -> int:
        return int(self.values.shape[0])

    def host_valid(self) -> np.ndarray:
        """``valid`` as a numpy bool array on the host: ``valid_host`` when the stream carries
        it, else read from ``valid`` (a device synchronisation when ``valid`` is on a GPU).

        An encoder whose token count depends on the data (it drops tokens without a valid
        sample) takes its choice from here and selects with :func:`neurofm.core.devices.take_rows`,
        so the model's forward pass never waits for the device (docs/backbone.md, "The forward
        pass on a GPU")."""
        if self.valid_host is not None:
            return self.valid_host
        return self.valid.detach().cpu().numpy()

    def host_times(self) -> np.ndarray:
        """``times`` as a numpy float32 array on the host: ``times_host`` when the stream carries
        it, else read from ``times`` (a device synchronisation on a GPU); as :meth:`host_valid`."""
        if self.times_host is not None:
            return self.times_host
        return self.times.detach().cpu().numpy()


def _views_of_the_same_memory(tensor: Tensor, array: np.ndarray) -> bool:
    """Whether ``array`` views exactly ``tensor``'s elements (same start, shape and strides)."""
    size = tensor.element_size()
    return (
        array.ctypes.data == tensor.data_ptr()
        and array.itemsize == size
        and array.shape == tuple(tensor.shape)
        and array.strides == tuple(stride * size for stride in tensor.stride())
    )


@dataclass(frozen=True)
class Tokens:
    """Tokens produced by an encoder for one sample.

    Shape: features ``[n, d_model]``; times ``[n, 2]`` (start, end) seconds since the window start.
    """

    features: Tensor
    times: Tensor

    def __len__(self) -> int:
        return int(self.features.shape[0])


@dataclass(frozen=True)
class FeatureMap:
    """Positioned stimulus features of one sample: a feature map over screen coordinates at the
    encoder's own time steps (the stimulus path; see docs/concepts.md).

    The map spans the whole screen: grid coordinates ``(x, y)`` in ``[-1, 1]^2`` with ``x`` to the
    right and ``y`` down the rows (the convention of ``torch.nn.functional.grid_sample`` with
    ``align_corners=False``), so ``(-1, -1)`` is the top-left corner of the screen. Step ``f``
    describes the stimulus shown up to ``times[f]`` and may depend on nothing later (causal).

    Shape:
        values: ``[T, C, H, W]`` float; times: ``[T]`` seconds since the window start;
        period_s: the nominal time between steps.
    """

    values: Tensor
    times: Tensor
    period_s: float

    @property
    def channels(self) -> int:
        return int(self.values.shape[1])


@dataclass(frozen=True)
class PositionedOutput:
    """What a :class:`PositionedStimulusEncoder` gives for one sample: its tokens for the backbone
    and its positioned features for the stimulus path."""

    tokens: Tokens
    features: FeatureMap


@dataclass(frozen=True)
class StimulusView:
    """What a :class:`StimulusReadout` sees of one stimulus stream of one sample.

    Shape: ``features`` as :class:`FeatureMap` (``[T, C, H, W]``); ``eye`` ``[T, 2]`` the eye
    position at ``features.times`` in the eye stream's normalised units (0 where it was not
    visible), or None when the model reads no eye stream or the sample has none; ``behaviour``
    ``[T, S]`` the first channel of each of the readout's ``behaviour_streams`` at
    ``features.times``, normalised, NaN where the stream is not known there (hidden by the task,
    or outside the span of its visible samples), or None when the readout reads none.
    """

    features: FeatureMap
    eye: Tensor | None = None
    behaviour: Tensor | None = None


@dataclass(frozen=True)
class ReadoutQuery:
    """One sample's target block for a readout: its backbone outputs, session and units, and (for
    a :class:`StimulusReadout`) the read times and the sample's stimulus views.

    Shape: h ``[Q, d_model]``; units ``[K]``; times ``[Q]`` or ``[Q, K]`` (see
    :meth:`StimulusReadout.project_stimulus`), or None for :meth:`Readout.project`.
    """

    h: Tensor
    session_id: str
    units: Tensor
    times: Tensor | None = None
    stimulus: Sequence[StimulusView] = ()


@dataclass(frozen=True)
class SessionUnits:
    """What a readout knows of one session's neurons. Shape: position_um ``[N, 3]``, area ``[N]``.
    ``animal_id``: the recorded animal (sessions of one animal may share per-animal parameters,
    e.g. the ``retinotopic`` readout's map), None where unknown."""

    session_id: str
    count: int
    position_um: np.ndarray | None = None
    area: np.ndarray | None = None
    animal_id: str | None = None


class _Plugin(nn.Module, ABC):
    """What every model plugin (encoder, readout, head) has."""

    def penalty(self) -> Tensor | None:
        """A regularisation term added to the training loss (not to validation or evaluation),
        or None (the default). Weigh it with the plugin's own config; it is added once per step,
        whatever the batch size."""
        return None

    def learning_rate_scales(self) -> Mapping[str, float]:
        """Relative learning rates of this plugin's parameters: a prefix of parameter names (as
        ``self.named_parameters()`` gives them, e.g. ``"core."``) -> a multiple of the training
        learning rate (the schedule applies to it alike). Parameters no prefix matches, and every
        parameter by default (``{}``), train at 1; where prefixes overlap the longest wins. For
        parameters that must move further in a short run than their neighbours (e.g. a shared
        feature core beside a large backbone)."""
        return {}


class ModalityEncoder(_Plugin):
    """Turns one stream of a window into tokens.

    Class attributes a plugin sets:
        Config: its :class:`~neurofm.PluginConfig` subclass (``type`` tag = registered name).
        role: ``"stimulus"``, ``"behaviour"`` or ``"neural"`` — tasks select streams by role, so a new
            modality takes part in every task without new code.
        normalization: how the data pipeline normalises the stream with its stored train-tier
            statistics: ``"zscore"`` ((x - mean) / std), ``"scale"`` (x / std, keeps x >= 0) or ``"none"``.
        per_unit: True for neural streams ``[T, N]`` whose columns are the session's units.

    Args:
        config: the plugin's validated config.
        d_model: width of the tokens it must produce.
    """

    Config: ClassVar[type[PluginConfig]]
    role: ClassVar[Role]
    normalization: ClassVar[Normalization] = "zscore"
    per_unit: ClassVar[bool] = False

    def __init__(self, config: PluginConfig, *, d_model: int) -> None:
        super().__init__()
        self.config = config
        self.d_model = d_model

    @abstractmethod
    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        """Tokens of one sample's stream.

        Args:
            stream: the visible part of the stream (may have zero samples: return zero tokens).
            unit_embeddings: ``[N, d_model]`` identities of the stream's units (per-unit streams only),
                in the order of ``stream.values``' columns.
        """

    def example_values(self, n_samples: int, generator: torch.Generator) -> Tensor | None:
        """Synthetic values ``[n_samples, ...]`` of the form this encoder reads, for the
        conformance kit (:mod:`neurofm.testing`; it adds validity, times and, for per-unit
        encoders, one identity per column). None, the default: the kit builds them from the
        config (``height``/``width``/``channels``; see its docs). Override it when the config
        does not say the input's shape."""
        return None

    def tokenize_batch(
        self,
        streams: Sequence[StreamTensor],
        unit_embeddings: Sequence[Tensor | None] | None = None,
    ) -> list[Tokens]:
        """:meth:`tokenize` of every sample of a batch that shows this stream: the model calls
        it once per stream and batch. The default calls :meth:`tokenize` once per sample; an
        encoder may override it with fewer, larger operations, which must give the same tokens
        (the conformance kit checks it).

        Args:
            streams: one visible stream per sample.
            unit_embeddings: per sample, as for :meth:`tokenize` (None: none for every sample).
        """
        embeddings = [None] * len(streams) if unit_embeddings is None else unit_embeddings
        return [self.tokenize(stream, emb) for stream, emb in zip(streams, embeddings, strict=True)]

    @classmethod
    def target_channels(cls, sample_shape: tuple[int, ...]) -> int:
        """Channels a head predicts when this stream is a target (non per-unit streams), from the
        stream's sample shape (without time): ``C`` of ``[T, C]``. The builder sizes the head
        with it before any encoder is built, hence a classmethod; raise ``ValueError`` for a
        shape that cannot be a target."""
        if len(sample_shape) != 1:
            raise ValueError(
                f"{cls.__name__} streams of sample shape {tuple(sample_shape)} cannot be "
                f"targets: heads need samples of shape [C]"
            )
        return int(sample_shape[0])


class PositionedStimulusEncoder(ModalityEncoder):
    """A stimulus encoder that gives, beside its tokens, positioned features (:class:`FeatureMap`)
    for the stimulus path: a readout deriving from :class:`StimulusReadout` reads each neuron's
    drive from them at that neuron's place on the screen.

    Beyond :class:`ModalityEncoder`, a plugin sets ``feature_channels`` (``C`` of its feature
    maps) in ``__init__`` and implements :meth:`encode_batch`; :meth:`tokenize` is defined here
    through it, so the tokens of one sample are those of a batch of one.
    """

    role: ClassVar[Role] = "stimulus"
    feature_channels: int

    @abstractmethod
    def encode_batch(self, streams: Sequence[StreamTensor]) -> list[PositionedOutput]:
        """Tokens and positioned features of every sample of a batch, in one batched call.

        Args:
            streams: the visible part of the stream of each sample (each may have zero samples).

        Returns:
            One :class:`PositionedOutput` per stream: tokens as :meth:`ModalityEncoder.tokenize`
            gives them, and a :class:`FeatureMap` with ``feature_channels`` channels whose times
            are within the stream's (zero steps for a stream of zero samples).
        """

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        return self.encode_batch([stream])[0].tokens


class Readout(_Plugin):
    """Per-session neuron identities: input-side unit embeddings and output-side per-unit predictions.

    A readout sets ``Config`` and implements :meth:`add_session` (the parameters of one session),
    :meth:`unit_embeddings` and :meth:`project`; it creates what every session shares in
    :meth:`build_shared`. This constructor stores its arguments (``config``, ``d_model``,
    ``params_per_unit``, ``feature_channels``), calls :meth:`build_shared`, then adds
    ``sessions`` (:meth:`add_sessions`), so a readout writes no ``__init__`` of its own; the base
    keeps the list of sessions (:meth:`known_sessions`).

    A readout written before these hooks overrides ``__init__`` (calling this one, then adding its
    sessions itself), ``add_sessions`` and ``known_sessions``; it keeps working: for a readout
    that overrides ``add_sessions`` this constructor adds no session, and it must override
    ``known_sessions`` too (refused with a ``TypeError`` otherwise).

    Args:
        config: the plugin's validated config.
        d_model: backbone width.
        sessions: the units of every session the model knows, by session id.
        params_per_unit: raw outputs per unit and time that the neural head needs (Poisson: 1).
        feature_channels: ``C`` of the feature maps a :class:`StimulusReadout` reads (required
            there, refused for any other readout).
    """

    Config: ClassVar[type[PluginConfig]]

    def __init__(
        self,
        config: PluginConfig,
        *,
        d_model: int,
        sessions: Mapping[str, SessionUnits],
        params_per_unit: int = 1,
        feature_channels: int | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if isinstance(self, StimulusReadout) != (feature_channels is not None):
            raise TypeError(
                f"{name} reads the stimulus (a StimulusReadout): build it with feature_channels= "
                f"(C of the positioned encoders' feature maps; build_model passes it)"
                if feature_channels is None
                else f"{name} is not a StimulusReadout and reads no feature maps, but was given "
                f"feature_channels={feature_channels}: build it without"
            )
        owns_sessions = type(self).add_sessions is Readout.add_sessions
        if not owns_sessions and type(self).known_sessions is Readout.known_sessions:
            raise TypeError(
                f"{name} overrides add_sessions, so it keeps its own list of sessions, but not "
                f"known_sessions: override known_sessions too, or implement add_session instead "
                f"of add_sessions and let neurofm.Readout keep the list"
            )
        self.config = config
        self.d_model = d_model
        self.params_per_unit = params_per_unit
        if feature_channels is not None:
            self.feature_channels = feature_channels
        self._session_ids: list[str] = []
        self.build_shared()
        if owns_sessions:  # a readout that overrides add_sessions adds its sessions itself
            self.add_sessions(sessions)

    def build_shared(self) -> None:
        """Create what every session shares: modules, shared parameters and the empty
        per-session tables (e.g. ``nn.ParameterDict``) that :meth:`add_session` fills. Called
        once by ``__init__``, after ``config``, ``d_model``, ``params_per_unit`` (and
        ``feature_channels``) are set and before any session is added. The default creates
        nothing."""

    def add_session(self, key: str, units: SessionUnits) -> None:
        """Create the parameters of one session that this readout does not know yet, stored
        under ``key`` (the session's :meth:`parameter_key`), for ``units.count`` neurons; on
        the device of the readout's parameters.

        :meth:`add_sessions` calls it once per new session, in order, and registers the new
        sessions after the last call: during one :meth:`add_sessions`, :meth:`known_sessions`
        lists the sessions known before it (a new session may start from them)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement add_session(key, units), which creates the "
            f"parameters of one session (see neurofm.Readout)"
        )

    @abstractmethod
    def unit_embeddings(self, session_id: str, units: Tensor) -> Tensor:
        """Identities ``[K, d_model]`` of the units with indices ``units [K]`` of a session."""

    @abstractmethod
    def project(self, h: Tensor, session_id: str, units: Tensor) -> Tensor:
        """Raw per-unit outputs ``[Q, K, params_per_unit]`` from backbone outputs ``h [Q, d_model]``."""

    def unit_embeddings_batch(self, requests: Sequence[tuple[str, Tensor]]) -> list[Tensor]:
        """:meth:`unit_embeddings` of several ``(session_id, units)`` at once (the model asks for
        every sample of a batch in one call). The default calls :meth:`unit_embeddings` once per
        request; a readout may override it with fewer, larger operations, which must give the
        same values (the conformance kit checks it)."""
        return [self.unit_embeddings(session_id, units) for session_id, units in requests]

    def project_batch(self, queries: Sequence[ReadoutQuery]) -> list[Tensor]:
        """:meth:`project` of several target blocks at once (the model's one call per batch):
        ``[Q_i, K_i, params_per_unit]`` per query. The default calls :meth:`project` once per
        query; an override must give the same values."""
        return [self.project(q.h, q.session_id, q.units) for q in queries]

    def add_sessions(self, sessions: Mapping[str, SessionUnits]) -> None:
        """Make room for new sessions (fine-tuning to new animals): :meth:`add_session` for each
        session not known yet; the parameters of known sessions are kept."""
        new = [(sid, units) for sid, units in sessions.items() if sid not in self._session_ids]
        for session_id, units in new:
            self.add_session(self.parameter_key(session_id), units)
        self._session_ids.extend(session_id for session_id, _ in new)

    def known_sessions(self) -> list[str]:
        """Ids of the sessions this readout has parameters for, in the order they were added
        (:meth:`checked_key` and the model's zero-shot and fine-tuning paths rely on it)."""
        return list(self._session_ids)

    @staticmethod
    def parameter_key(session_id: str) -> str:
        """The name a session's parameters are stored under (parameter names cannot hold ".")."""
        return session_id.replace(".", "%2E")

    @staticmethod
    def session_of_key(key: str) -> str:
        """Inverse of :meth:`parameter_key`."""
        return key.replace("%2E", ".")

    def checked_key(self, session_id: str) -> str:
        """:meth:`parameter_key` of a session this readout knows; a clear ``KeyError`` otherwise."""
        if session_id not in self.known_sessions():
            raise KeyError(
                f"{type(self).__name__} has no neurons for session {session_id!r}; it knows "
                f"{self.known_sessions()}. Add the session first (readout.add_sessions; "
                f"fine-tuning does this: neurofm finetune)."
            )
        return self.parameter_key(session_id)


class StimulusReadout(Readout):
    """A readout that also reads the stimulus: each neuron's drive at its own place on the screen,
    from the positioned features (:class:`FeatureMap`) of the sample's stimulus encoders, beside
    the backbone output (the context path). The model gives it every sample's stimulus views; a
    sample without a visible stimulus gets none and uses the context path alone, as
    :meth:`Readout.project` does.

    Args (beyond :class:`Readout`):
        feature_channels: ``C`` of the feature maps it will read (every positioned encoder of the
            model must give this many).

    Attributes:
        eye_stream: name of the stream holding the eye position ``[T, 2]`` that shifts the
            neurons' positions (a gaze shifter), or None.
        behaviour_streams: names of streams whose first channel the readout reads beside the
            stimulus at the feature map's times (``StimulusView.behaviour``; e.g. a per-neuron
            gain of running speed and pupil size); empty by default.
        unit_read_times: class attribute; True when :meth:`project_stimulus` accepts per-unit
            read times ``[Q, K]``. The model then passes, for a sample whose units carry time
            offsets (``units/time_offset_s``), unit ``k``'s true sample time ``t_q +
            offset_k`` of each query; otherwise (False, the default, or no offsets) the query
            times ``[Q]``.
    """

    eye_stream: str | None = None
    behaviour_streams: tuple[str, ...] = ()
    unit_read_times: ClassVar[bool] = False
    feature_channels: int

    @abstractmethod
    def project_stimulus(
        self,
        h: Tensor,
        session_id: str,
        units: Tensor,
        times: Tensor,
        stimulus: Sequence[StimulusView],
    ) -> Tensor:
        """Raw per-unit outputs ``[Q, K, params_per_unit]`` at query ``times [Q]`` (seconds since
        the window start) from backbone outputs ``h [Q, d_model]`` and the sample's stimulus
        views (possibly none: then the same as :meth:`Readout.project`).

        With ``unit_read_times`` set, ``times`` may also be ``[Q, K]``: the time at which unit
        ``k``'s sample of query ``q`` was taken (the stimulus is read there; ``h`` stays the
        backbone output of query ``q``). ``times[:, None].expand(Q, K)`` must give the same
        outputs as ``times``."""

    def project_stimulus_batch(self, queries: Sequence[ReadoutQuery]) -> list[Tensor]:
        """:meth:`project_stimulus` of several target blocks at once (the model's one call per
        batch; each query's ``times`` is set). The default calls :meth:`project_stimulus` once
        per query; an override (one batched computation) must give the same values (the
        conformance kit checks it)."""
        return [
            self.project_stimulus(q.h, q.session_id, q.units, q.times, q.stimulus) for q in queries
        ]


class Head(_Plugin):
    """Owns the objective of one target stream: output mapping, loss and metrics (which ones
    evaluation reports for the stream: :meth:`metric_names`).

    For channel streams (behaviour, ...) the head maps backbone outputs to ``channels`` itself
    (:meth:`project`); for per-unit streams the readout provides the raw per-unit outputs.

    Args:
        config: the plugin's validated config.
        d_model: backbone width.
        channels: number of channels of a channel stream, or None for a per-unit stream.
    """

    Config: ClassVar[type[PluginConfig]]
    params_per_channel: ClassVar[int] = 1

    def __init__(self, config: PluginConfig, *, d_model: int, channels: int | None) -> None:
        super().__init__()
        self.config = config
        self.channels = channels
        self.output = (
            nn.Linear(d_model, channels * self.params_per_channel) if channels is not None else None
        )

    def project(self, h: Tensor) -> Tensor:
        """Raw outputs ``[Q, C, params_per_channel]`` of a channel stream from ``h [Q, d_model]``."""
        if self.output is None:
            raise RuntimeError(f"{type(self).__name__} serves a per-unit stream; use the readout")
        return self.output(h).unflatten(-1, (self.channels, self.params_per_channel))

    @abstractmethod
    def predict(self, raw: Tensor) -> Tensor:
        """Predicted mean ``[Q, C]`` (in normalised units) from raw outputs ``[Q, C, p]``."""

    @abstractmethod
    def loss(self, raw: Tensor, target: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """``(sum of per-entry losses, number of valid entries)`` over ``target [Q, C]``."""

    def loss_terms(self, raw: Tensor, target: Tensor, valid: Tensor) -> Tensor | None:
        """The per-entry losses whose sum is :meth:`loss`'s first value, or None (the default).

        Optional. A head that gives them has the loss of all a batch's target blocks of its
        stream computed in one call (their entries side by side, ``Q = 1``, ``C`` the number
        of entries), instead of one :meth:`loss` call per block; the model sums them per block
        itself. Entries that are not valid must be 0 whatever their target (the conformance
        kit checks both, and that the sum equals :meth:`loss`).

        Shape: raw ``[Q, C, p]``, target/valid ``[Q, C]`` -> ``[Q, C]``.
        """
        return None

    def anchor(self, raw: Tensor, last: Tensor, known: Tensor) -> Tensor:
        """Fold the last visible value of each target column into the raw outputs.

        When a task shows a stream's past and asks for its future (forecasting), the model passes
        the last visible value of each target column, so the head predicts a change from it rather
        than the whole value. The default ignores it; the built-in heads use it.

        Shape: raw ``[Q, C, p]``, last ``[C]`` (normalised units), known ``[C]`` bool (False: no
        visible value for that column) -> ``[Q, C, p]``.
        """
        return raw

    def metric_names(self, per_unit: bool) -> tuple[str, ...]:
        """The metrics evaluation computes and reports for this head's target stream.

        Evaluation asks once per stream, with ``per_unit`` True for a per-unit (neural) stream
        and False for a channel stream, and reports exactly these (for the model and every
        baseline; a metric the data cannot give, e.g. one needing repeats, is left out). Names
        are chosen among the ones evaluation knows (the conformance kit checks it; an unknown
        name is refused naming the head, the metric and the known ones):

        - per-unit streams: ``single_trial_r``, ``r_to_average``, ``oracle_r``, ``fev``,
          ``feve``, ``ceiling_r``, ``fraction_of_ceiling``, ``r_to_expected``;
        - channel streams: ``r``.

        The default reports every metric evaluation knows for the stream
        (:func:`neurofm.core.evaluation.metric_names.known_metric_names`); a head overrides it to
        report fewer, e.g. ``("single_trial_r", "r_to_average")`` for a likelihood whose
        prediction is not on the scale FEVE assumes. See docs/metrics.md.
        """
        from neurofm.core.evaluation.metric_names import known_metric_names

        return known_metric_names(per_unit)


def masked_mean(total: Tensor, count: Tensor) -> Tensor:
    """``total / count`` that is 0 (with gradient) when nothing was counted."""
    return total / torch.clamp(count, min=1)
