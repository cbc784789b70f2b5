"""The neurofm model: encoders -> tokens -> backbone -> readout / heads, assembled from parts.

Example (parts passed in as objects; see docs/tutorials/custom-model.md)::

    model = NeuroFM(encoders={"movie": MovieEncoder(MovieConfig(), d_model=64), ...},
                    backbone=PerceiverIO(BackboneConfig(d_model=64)),
                    readout=NeuronEmbeddingReadout(..., d_model=64, sessions=units),
                    heads={"calcium": PoissonHead(PoissonConfig(), d_model=64, channels=None)})
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from neurofm.core.backbone import PackedSequence, PerceiverIO
from neurofm.core.data.windows import WindowSample
from neurofm.core.devices import to_device
from neurofm.core.interfaces import (
    FeatureMap,
    Head,
    ModalityEncoder,
    Normalization,
    PositionedStimulusEncoder,
    Readout,
    ReadoutQuery,
    SessionUnits,
    StimulusReadout,
    StimulusView,
    StreamTensor,
)
from neurofm.core.tokens.tasks import ResolvedMask, TaskSpec, resolve
from neurofm.registry import describe_plugin

__all__ = [
    "MaskedStream",
    "ModelOutput",
    "NeuroFM",
    "PendingTarget",
    "TargetOutput",
    "params_per_unit",
    "plugin_learning_rate_scales",
]


@dataclass
class TargetOutput:
    """Predictions for one target stream of one sample.

    Shape: raw ``[Q, K, p]``; target/valid ``[Q, K]``; times ``[Q]`` (seconds since window start);
    units ``[K]`` column indices (per-unit streams) or None.
    """

    sample: int
    stream: str
    raw: Tensor
    target: Tensor
    valid: Tensor
    times: Tensor
    units: Tensor | None
    loss_sum: Tensor
    count: Tensor

    def mean_loss(self) -> Tensor:
        """The head's loss averaged over the target's valid entries, in float32: ``loss_sum /
        count`` (0 for a target without a valid entry). The model's loss is the mean of these
        over a batch's targets; distributed training sums them
        (:class:`~neurofm.core.training.distributed.TrainStep`).

        Shape: ``[]``.
        """
        return self.loss_sum.float() / self.count.clamp(min=1)


@dataclass
class MaskedStream:
    """One stream of one sample with the mask its task gives it."""

    stream: StreamTensor
    mask: ResolvedMask


@dataclass
class PendingTarget:
    """A target block awaiting its prediction: stream ``stream`` of sample ``sample``.

    Shape: values/valid ``[Q, K]``; times ``[Q]``; units ``[K]`` (per-unit streams) or None;
    anchor ``(last [K], known [K], time [])`` (see :meth:`Head.anchor`) or None;
    unit_time_offset_s ``[K]`` (per-unit streams whose sample carries offsets and a model that
    uses them) or None: target column ``k`` of query ``q`` was sampled at
    ``times[q] + unit_time_offset_s[k]``.
    """

    sample: int
    stream: str
    values: Tensor
    valid: Tensor
    times: Tensor
    units: Tensor | None
    anchor: tuple[Tensor, Tensor, Tensor] | None
    unit_time_offset_s: Tensor | None = None


@dataclass
class ModelOutput:
    """A forward pass's loss (the mean of its targets' mean losses) and its target blocks.

    Shape: loss ``[]``; target_losses ``[len(targets)]``, each target's
    :meth:`TargetOutput.mean_loss` (None when there is no target).
    """

    loss: Tensor
    targets: list[TargetOutput]
    target_losses: Tensor | None = None


def _key(name: str) -> str:
    return name.replace(".", "%2E")


def params_per_unit(encoders: Mapping[str, ModalityEncoder], heads: Mapping[str, Head]) -> int:
    """Raw outputs per unit and time a readout must give: the most that the heads of the
    per-unit (neural) streams need (:attr:`Head.params_per_channel`; 1 without such heads)."""
    return max(
        (heads[n].params_per_channel for n, e in encoders.items() if e.per_unit and n in heads),
        default=1,
    )


class NeuroFM(nn.Module):
    """A foundation model of neural activity built from parts.

    Args:
        encoders: stream name -> modality encoder (the stream names of the sessions' manifests).
        backbone: the shared Perceiver-IO backbone.
        readout: per-session neuron readout (needed when any encoder is per-unit).
        heads: stream name -> head, for every stream that can be a target.
        anchor_targets: when a task shows a stream's past and asks for its future (forecasting),
            pass each target column's last visible value to its head (:meth:`Head.anchor`), so the
            model learns the change from persistence rather than the whole value. The anchor's
            weight decays with the time since that value, ``exp(-elapsed / tau)``, with one
            learned ``tau`` per stream, so far horizons lean on the model rather than on the last
            value. Measured on simulated V1: see BENCHMARKS.md.
        anchor_tau_s: the starting ``tau`` (seconds) of every stream's anchor.
        unit_time_offsets: use each unit's time offset within a frame (a sample's
            ``unit_time_offset_s``, from the session's ``units/time_offset_s``) where a sample
            carries them: per-unit streams reach their encoders with
            :attr:`StreamTensor.unit_time_offset_s` set, so tokens sit at each unit's true sample
            times, and a readout with :attr:`StimulusReadout.unit_read_times` reads the stimulus
            of unit ``n``'s target ``k`` at ``t_k + offset_n``. The output queries stay at the
            frame times (one per frame, not one per unit and frame): a query spans ``[t_k, t_k +
            period)``, which holds every unit's sample time of that frame, and the slow context
            (state, gain) changes little within a frame, while the stimulus drive, read at
            movie rate, is where a fraction of a frame matters. False ignores the offsets
            (ablations; BENCHMARKS.md, "Scan-phase offsets").
        session_units: the readout's vocabulary, session id -> :class:`SessionUnits` (saved in
            checkpoints; the sessions the readout knows). Empty for a model without sessions.
        target_channels: channel count of every non per-unit target stream (its head's size).
        stream_statistics: session -> stream -> normalisation statistics (from the sessions'
            manifests; checkpoints carry them so a loaded model normalises its inputs alike).
        model_config: the :class:`~neurofm.core.model.config.ModelConfig` the model was built from
            (None for a model assembled by hand; :meth:`save_pretrained` needs it).

    The builders (:func:`~neurofm.core.model.builder.build_model`, checkpoint loading) pass all of
    these; a model assembled by hand may leave them out. A readout must give the raw outputs per
    unit that its heads need (:func:`params_per_unit`); a mismatch is refused here.
    """

    def __init__(
        self,
        *,
        encoders: Mapping[str, ModalityEncoder],
        backbone: PerceiverIO,
        readout: Readout | None,
        heads: Mapping[str, Head],
        anchor_targets: bool = True,
        unit_time_offsets: bool = True,
        anchor_tau_s: float = 10.0,
        session_units: Mapping[str, SessionUnits] | None = None,
        target_channels: Mapping[str, int] | None = None,
        stream_statistics: Mapping[str, Mapping[str, dict]] | None = None,
        model_config: Any = None,
    ) -> None:
        super().__init__()
        d = backbone.d_model
        for name, enc in encoders.items():
            if enc.d_model != d:
                raise ValueError(f"encoder {name!r} has d_model {enc.d_model}, backbone has {d}")
            if enc.per_unit and readout is None:
                raise ValueError(f"stream {name!r} is per-unit (neural) but no readout was given")
        _check_stimulus_path(encoders, readout)
        if readout is not None:
            needed = params_per_unit(encoders, heads)
            if readout.params_per_unit != needed:
                raise ValueError(
                    f"the readout ({describe_plugin(readout)}) gives {readout.params_per_unit} "
                    f"raw output(s) per unit and time; the heads of the per-unit streams need "
                    f"{needed} (Head.params_per_channel). Build the readout with "
                    f"params_per_unit={needed} (build_model does this)."
                )
        unknown = sorted(set(heads) - set(encoders))
        if unknown:
            raise ValueError(
                f"heads for streams {unknown} have no encoder; streams: {sorted(encoders)}"
            )
        self.encoders = nn.ModuleDict({_key(k): v for k, v in encoders.items()})
        self.heads = nn.ModuleDict({_key(k): v for k, v in heads.items()})
        self.backbone = backbone
        self.readout = readout
        # unit-scale identities: with a small init a rare stream's tokens (running: a few per
        # window) cannot be told from a frequent one's (movie: hundreds) and are drowned out;
        # measured in BENCHMARKS.md ("Signal per modality")
        self.stream_embedding = nn.ParameterDict(
            {_key(k): nn.Parameter(torch.randn(d)) for k in encoders}
        )
        self.query_embedding = nn.ParameterDict(
            {_key(k): nn.Parameter(torch.randn(d)) for k in heads}
        )
        self._names = list(encoders)
        self.anchor_targets = anchor_targets
        self.unit_time_offsets = unit_time_offsets
        # log of each target stream's anchor time constant (seconds)
        self.anchor_log_tau = nn.ParameterDict(
            {_key(k): nn.Parameter(torch.full((1,), math.log(anchor_tau_s))) for k in heads}
        )
        # what checkpoints record beside the weights (see the class doc)
        self.session_units: dict[str, SessionUnits] = dict(session_units or {})
        self.target_channels: dict[str, int] = dict(target_channels or {})
        self.stream_statistics: dict[str, dict[str, dict]] = {
            sid: dict(streams) for sid, streams in (stream_statistics or {}).items()
        }
        self.model_config = model_config
        if readout is not None and self.session_units:
            known = set(readout.known_sessions())
            if set(self.session_units) != known:
                raise ValueError(
                    f"session_units names sessions {sorted(self.session_units)}; the readout "
                    f"knows {sorted(known)}. Pass the units the readout was built with."
                )

    def add_sessions(
        self,
        units: Mapping[str, SessionUnits],
        statistics: Mapping[str, Mapping[str, dict]] | None = None,
    ) -> None:
        """Give the readout the neurons of new sessions and record them (and their streams'
        normalisation statistics) for checkpoints; sessions the model knows are left as they
        are. Fine-tuning calls it (:func:`neurofm.core.training.finetune.add_sessions`)."""
        if self.readout is None:
            raise ValueError("the model has no readout (no neural stream); nothing to add")
        new = {sid: u for sid, u in units.items() if sid not in self.session_units}
        self.readout.add_sessions(new)
        self.session_units.update(new)
        for sid, streams in (statistics or {}).items():
            self.stream_statistics.setdefault(sid, dict(streams))

    def save_pretrained(self, path, *, extra: Mapping[str, object] | None = None):
        """Write a checkpoint folder (see :mod:`neurofm.core.model.checkpoint`); needs ``model_config``."""
        from neurofm.core.model.checkpoint import save_pretrained

        if self.model_config is None:
            raise ValueError(
                "this model has no model_config (built by hand?); use "
                "neurofm.core.model.checkpoint.save_pretrained(model, config, path)"
            )
        return save_pretrained(self, self.model_config, path, extra=extra)

    @classmethod
    def from_pretrained(cls, path) -> NeuroFM:
        """Rebuild a model from a checkpoint folder (verified; executes nothing from the folder)."""
        from neurofm.core.model.checkpoint import load_pretrained

        return load_pretrained(path)[0]

    @property
    def stream_names(self) -> list[str]:
        return list(self._names)

    def encoder(self, name: str) -> ModalityEncoder:
        return self.encoders[_key(name)]

    def head(self, name: str) -> Head:
        return self.heads[_key(name)]

    def normalization(self) -> dict[str, Normalization]:
        """How the data pipeline must normalise each stream the model reads."""
        return {n: self.encoder(n).normalization for n in self._names}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(
        self,
        batch: Sequence[WindowSample],
        tasks: Sequence[TaskSpec],
        rng: np.random.Generator | None = None,
    ) -> ModelOutput:
        """Run one task per sample and return predictions and the mean loss over all targets.

        The data path in named steps: :meth:`_masks` (which part of each stream is visible or a
        target), :meth:`_encode` (tokens for the backbone; positioned stimulus features, one
        batched call per positioned encoder), :meth:`_targets` (what to predict, as
        :class:`PendingTarget`), the backbone, and :meth:`_heads` (readout / heads and losses).
        """
        if len(tasks) != len(batch):
            raise ValueError(
                f"got {len(tasks)} tasks for {len(batch)} samples; need one per sample"
            )
        rng = rng if rng is not None else np.random.default_rng(0)
        masked = self._masks(batch, tasks, rng)
        inputs, stimulus = self._encode(batch, masked)
        pending, queries = self._targets(masked)
        durations = to_device([s.duration for s in batch], self.device, torch.float32)
        h = self.backbone(inputs, queries, self.backbone.latent_times(durations))
        return self._heads(batch, h, pending, stimulus)

    def penalty(self) -> Tensor | None:
        """The sum of the plugins' regularisation terms (:meth:`ModalityEncoder.penalty`,
        :meth:`Readout.penalty`, :meth:`Head.penalty`), or None when none has one. Training adds
        it to the loss once per step."""
        plugins = [*self.encoders.values(), self.readout, *self.heads.values()]
        parts = [m.penalty() for m in plugins if m is not None]
        parts = [p for p in parts if p is not None]
        return torch.stack([p.float() for p in parts]).sum() if parts else None

    def learning_rate_scales(self) -> dict[str, float]:
        """Parameter name (as ``self.named_parameters()`` gives it) -> multiple of the training
        learning rate, for the parameters whose plugin asks for one other than 1
        (:meth:`ModalityEncoder.learning_rate_scales`, :meth:`Readout.learning_rate_scales`,
        :meth:`Head.learning_rate_scales`; see :func:`plugin_learning_rate_scales`)."""
        plugins = [(f"encoders.{k}.", m) for k, m in self.encoders.items()]
        plugins += [(f"heads.{k}.", m) for k, m in self.heads.items()]
        if self.readout is not None:
            plugins.append(("readout.", self.readout))
        return {
            prefix + name: scale
            for prefix, plugin in plugins
            for name, scale in plugin_learning_rate_scales(plugin).items()
        }

    @property
    def query_names(self) -> set[str]:
        return {n for n in self._names if _key(n) in self.heads}

    @property
    def reads_stimulus(self) -> bool:
        """Whether the readout reads positioned stimulus features (the stimulus path)."""
        return isinstance(self.readout, StimulusReadout)

    # -- step 1: masks ---------------------------------------------------------------------------
    def _masks(self, batch, tasks, rng) -> list[dict[str, MaskedStream]]:
        """Per sample: stream name -> its stream (on the model's device) and resolved mask, for the
        streams that take part in the sample's task."""
        device = self.device
        out = []
        for sample, task in zip(batch, tasks, strict=True):
            streams = {}
            for name in self._names:
                stream = sample.streams.get(name)
                if stream is None:
                    continue  # absent modality: the sample simply has no tokens of it
                enc = self.encoder(name)
                n_units = stream.values.shape[1] if enc.per_unit else None
                mask = resolve(
                    task, name, enc.role, stream.times.numpy(), sample.duration, n_units, rng
                )
                if mask is not None:
                    if enc.per_unit:
                        stream = self._with_offsets(name, sample, stream)
                    streams[name] = MaskedStream(_to(stream, device), mask)
            out.append(streams)
        return out

    def _with_offsets(self, name: str, sample: WindowSample, stream: StreamTensor) -> StreamTensor:
        """A per-unit stream with its columns' time offsets (the sample's), when the sample has
        them and the model uses them."""
        if not self.unit_time_offsets:
            return replace(stream, unit_time_offset_s=None)
        offsets = sample.unit_time_offset_s
        if offsets is None:
            return stream
        n_units = stream.values.shape[1]
        if tuple(offsets.shape) != (n_units,):
            raise ValueError(
                f"session {sample.session_id!r}: units/time_offset_s has shape "
                f"{tuple(offsets.shape)} but the per-unit stream {name!r} has {n_units} columns; "
                f"expected one offset per unit. Rewrite the session's units table (neurofm "
                f"import) or drop the offsets."
            )
        return replace(stream, unit_time_offset_s=offsets.to(torch.float32))

    # -- step 2: encode --------------------------------------------------------------------------
    def _encode(self, batch, masked):
        """The input tokens of every sample, packed with their stream identities
        (:meth:`_pack`), and, per sample, the stimulus views the readout reads. Each encoder
        runs once per batch (``tokenize_batch``, or ``encode_batch`` for positioned ones), as
        does the readout's identity lookup."""
        xs: list[list[Tensor]] = [[] for _ in batch]
        ts: list[list[Tensor]] = [[] for _ in batch]
        ids: list[list[int]] = [[] for _ in batch]  # each token set's stream, as an index
        stimulus: list[list[StimulusView]] = [[] for _ in batch]
        for index, name in enumerate(self._names):
            enc = self.encoder(name)
            visible = []
            for b, streams in enumerate(masked):
                if name in streams:
                    sub = self._visible(enc, streams[name])
                    if sub is not None:
                        visible.append((b, *sub))
            if not visible:
                continue
            if enc.per_unit:  # the units' identities, for every sample in one call
                requests = [(batch[b].session_id, units) for b, _, units in visible]
                identities = self.readout.unit_embeddings_batch(requests)
                visible = [(b, sub, e) for (b, sub, _), e in zip(visible, identities, strict=True)]
            if isinstance(enc, PositionedStimulusEncoder):
                outputs = enc.encode_batch([sub for _, sub, _ in visible])
                views = []
                for (b, _, _), out in zip(visible, outputs, strict=True):
                    self._add_tokens(name, enc, out.tokens, (xs[b], ts[b], ids[b], index))
                    if self.reads_stimulus and out.features.values.shape[0]:
                        self._check_features(name, enc, out.features)
                        views.append((b, out.features))
                if views:  # the readout reads them (self.reads_stimulus)
                    reads = [(masked[b], features.times) for b, features in views]
                    eyes, behaviour = self._eye(reads), self._behaviour(reads)
                    for (b, features), eye, known in zip(views, eyes, behaviour, strict=True):
                        stimulus[b].append(StimulusView(features, eye, known))
            else:
                embeddings = [e for _, _, e in visible] if enc.per_unit else None
                tokens = enc.tokenize_batch([sub for _, sub, _ in visible], embeddings)
                if len(tokens) != len(visible):
                    raise ValueError(
                        f"encoder for stream {name!r} ({describe_plugin(enc)}) returned "
                        f"{len(tokens)} token sets for {len(visible)} samples; expected one per "
                        f"sample. Report this to the plugin's authors."
                    )
                for (b, _, _), tok in zip(visible, tokens, strict=True):
                    self._add_tokens(name, enc, tok, (xs[b], ts[b], ids[b], index))
        table = torch.stack([self.stream_embedding[_key(n)] for n in self._names])
        return self._pack(xs, ts, ids, table), stimulus

    def _pack(
        self, xs: list[list[Tensor]], ts: list[list[Tensor]], ids: list[list[int]], table: Tensor
    ) -> PackedSequence:
        """The samples' token sets (features ``[n, d]``, spans ``[n, 2]``) packed in one
        concatenation, each token plus its stream's identity, the row ``ids`` names of
        ``table [S, d]`` (:meth:`_identity_rows`)."""
        d, device = self.backbone.d_model, self.device
        flat_x = [x for sample in xs for x in sample]
        seqlens = [sum(x.shape[0] for x in sample) for sample in xs]
        if not flat_x:
            x = torch.zeros(0, d, device=device)
            return PackedSequence(x, torch.zeros(0, 2, device=device), tuple(seqlens))
        identity = self._identity_rows(
            [i for sample in ids for i in sample], [x.shape[0] for x in flat_x], table
        )
        x = torch.cat(flat_x) + identity
        t = torch.cat([t.to(dtype=torch.float32) for sample in ts for t in sample])
        return PackedSequence(x, t, tuple(seqlens))

    def _identity_rows(self, ids: list[int], counts: list[int], table: Tensor) -> Tensor:
        """Row ``ids[j]`` of ``table [S, d]`` repeated ``counts[j]`` times, one after the other,
        for the whole batch at once: a one-hot matrix built on the host times the table, in
        float32 (exactly the rows; the table's gradient is one matrix product, the same on every
        run, where adding each row to its tokens would take one operation per token set).

        Shape: ``[sum(counts), d]``.
        """
        rows = np.repeat(np.asarray(ids, dtype=np.int64), np.asarray(counts, dtype=np.int64))
        onehot = np.zeros((rows.size, table.shape[0]), dtype=np.float32)
        onehot[np.arange(rows.size), rows] = 1.0
        with torch.autocast(self.device.type, enabled=False):
            return to_device(onehot, self.device) @ table.float()

    def _visible(self, enc, masked: MaskedStream):
        """``(visible sub-stream, visible unit indices or None)``, or None when nothing is
        visible."""
        stream, mask = masked.stream, masked.mask
        device = stream.values.device
        if not mask.visible_time.any():
            return None
        vis, vis_host = _selector(mask.visible_time, device)
        host = None if stream.valid_host is None else stream.valid_host[vis_host]
        times = None if stream.times_host is None else stream.times_host[vis_host]
        sub = StreamTensor(
            stream.values[vis], stream.valid[vis], stream.times[vis], stream.period_s,
            valid_host=host, times_host=times,
        )  # fmt: skip
        units = None
        if enc.per_unit:
            if mask.visible_units.size == 0:
                return None
            units = to_device(mask.visible_units, device)
            cols = _columns(mask.visible_units, stream.values.shape[1], units)
            offsets = stream.unit_time_offset_s
            sub = StreamTensor(
                sub.values[:, cols], sub.valid[:, cols], sub.times, sub.period_s,
                None if offsets is None else offsets[cols],
                None if host is None else host[:, mask.visible_units], times,
            )  # fmt: skip
        return sub, units

    def _add_tokens(self, name, enc, tokens, into: tuple[list, list, list, int]) -> None:
        """Check an encoder's tokens and add them to a sample's lists ``(features, spans,
        stream indices, this stream's index)``; the stream's identity is added at packing."""
        if tokens.features.shape[-1] != self.backbone.d_model or tokens.times.shape != (
            len(tokens),
            2,
        ):
            raise ValueError(
                f"encoder for stream {name!r} ({describe_plugin(enc)}) returned features "
                f"{tuple(tokens.features.shape)} and times {tuple(tokens.times.shape)}; expected "
                f"[n, {self.backbone.d_model}] and [n, 2]. Report this to the plugin's authors or "
                f"use another modality plugin for the stream."
            )
        if len(tokens):
            xs, ts, ids, index = into
            xs.append(tokens.features)
            ts.append(tokens.times)
            ids.append(index)

    def _check_features(self, name, enc, features: FeatureMap) -> None:
        v = features.values
        if (
            v.ndim != 4
            or v.shape[1] != self.readout.feature_channels
            or features.times.shape != (v.shape[0],)
        ):
            raise ValueError(
                f"encoder for stream {name!r} ({describe_plugin(enc)}) returned a feature map "
                f"{tuple(v.shape)} with times {tuple(features.times.shape)}; the readout "
                f"({describe_plugin(self.readout)}) expects [T, {self.readout.feature_channels}, "
                f"H, W] and [T]. Report this to the plugin's authors."
            )

    def _eye(self, reads: list[tuple[dict[str, MaskedStream], Tensor]]) -> list[Tensor | None]:
        """For each ``(sample's streams, times [T])``: the readout's eye stream at those times
        (linear interpolation of its visible samples; 0 — the mean — where it is not visible),
        or None when the sample has none visible. One batched read for all."""
        name = self.readout.eye_stream
        if name is None:
            return [None] * len(reads)
        return [None if r is None else r[0] for r in _read_visible(name, reads, 2)]

    def _behaviour(
        self, reads: list[tuple[dict[str, MaskedStream], Tensor]]
    ) -> list[Tensor | None]:
        """For each ``(sample's streams, times [T])``: the first channel of each of the
        readout's behaviour streams at those times, ``[T, S]``, interpolated from its visible
        samples within their span and NaN where the stream is not known (hidden by the task, or
        before its first / after its last visible sample plus one period); None when the
        readout reads none. One batched read per stream."""
        names = self.readout.behaviour_streams
        if not names:
            return [None] * len(reads)
        per_stream = [_read_visible(name, reads, 1) for name in names]
        out = []
        for i, (_, times) in enumerate(reads):
            unknown = torch.full_like(times, float("nan"))
            columns = [
                unknown if read[i] is None else torch.where(read[i][1], read[i][0][:, 0], unknown)
                for read in per_stream
            ]
            out.append(torch.stack(columns, -1))
        return out

    # -- step 3: targets -------------------------------------------------------------------------
    def _targets(self, masked) -> tuple[list[PendingTarget], PackedSequence]:
        """Every target block as a :class:`PendingTarget`, and the output queries, packed: one
        per target time, its stream's query identity and the time's span (from the times' host
        copies in one transfer where every target stream has them)."""
        device = self.device
        queried = self.query_names
        heads = [n for n in self._names if n in queried]
        pending: list[PendingTarget] = []
        host_spans: list[np.ndarray | None] = []
        periods: list[float] = []
        for b, streams in enumerate(masked):
            for name, item in streams.items():
                stream, mask = item.stream, item.mask
                if name not in queried or not mask.target_time.any():
                    continue
                units = None
                if mask.target_units is not None:
                    if mask.target_units.size == 0:
                        continue
                    units = to_device(mask.target_units, device)
                tgt, tgt_host = _selector(mask.target_time, device)
                values, valid = stream.values[tgt], _channel_valid(stream)[tgt]
                if units is not None:
                    cols = _columns(mask.target_units, stream.values.shape[1], units)
                    values, valid = values[:, cols], valid[:, cols]
                if mask.target_excluded is not None:  # entries that are also visible inputs
                    valid = valid & ~to_device(mask.target_excluded, device)
                times = stream.times[tgt]
                at = None if stream.times_host is None else stream.times_host[tgt_host]
                host_spans.append(
                    None if at is None else np.stack([at, at + np.float32(stream.period_s)], -1)
                )
                periods.append(stream.period_s)
                anchor = _last_visible(stream, mask, units) if self.anchor_targets else None
                offsets = stream.unit_time_offset_s
                if offsets is not None and units is not None:
                    offsets = offsets[units]
                pending.append(PendingTarget(b, name, values, valid, times, units, anchor, offsets))
        seqlens = [0] * len(masked)
        for p in pending:
            seqlens[p.sample] += p.times.shape[0]
        if not pending:
            # no sample has a target: one placeholder query keeps every backbone parameter in the
            # graph (its loss is 0), so distributed gradient reductions see the same parameters
            seqlens = [1, *seqlens[1:]] if masked else []
            n = sum(seqlens)
            x, t = (torch.zeros(n, k, device=device) for k in (self.backbone.d_model, 2))
            return pending, PackedSequence(x, t, tuple(seqlens))
        if all(h is not None for h in host_spans):
            t = to_device(np.concatenate(host_spans).astype(np.float32), device)
        else:  # a stream without host times: the spans from the device times
            t = torch.cat([torch.stack([p.times, p.times + period], -1).float()
                           for p, period in zip(pending, periods, strict=True)])  # fmt: skip
        table = torch.stack([self.query_embedding[_key(n)] for n in heads])
        x = self._identity_rows(
            [heads.index(p.stream) for p in pending], [p.times.shape[0] for p in pending], table
        )
        return pending, PackedSequence(x, t, tuple(seqlens))

    # -- step 4: readout and heads ---------------------------------------------------------------
    def _heads(self, batch, h, pending: list[PendingTarget], stimulus) -> ModelOutput:
        """Raw outputs of every target block (the readout's for per-unit streams, in one call;
        each channel stream's head once for all its blocks), the anchor of forecast blocks, and
        the losses: one :meth:`Head.loss_terms` call per head where the head gives per-entry
        losses, else one :meth:`Head.loss` call per block."""
        if not pending:
            return ModelOutput(h.sum() * 0.0, [], None)
        # the backbone's outputs are the blocks' queries, block after block (sample-major)
        sizes = [p.times.shape[0] for p in pending]
        parts = list(torch.split(h, sizes))
        raws: list[Tensor] = [h] * len(pending)  # every entry replaced below
        per_unit = [i for i, p in enumerate(pending) if p.units is not None]
        projected = self._project_units(batch, pending, parts, stimulus)
        for i, raw in zip(per_unit, projected, strict=True):
            raws[i] = raw
        by_stream: dict[str, list[int]] = {}
        for i, p in enumerate(pending):
            by_stream.setdefault(p.stream, []).append(i)
        for name, blocks in by_stream.items():
            blocks = [i for i in blocks if pending[i].units is None]
            if blocks:  # a channel stream: its head projects all its blocks at once
                rows = [sizes[i] for i in blocks]
                out = self.head(name).project(torch.cat([parts[i] for i in blocks]))
                if out.ndim != 3 or out.shape[0] != sum(rows):  # block shapes: checked next
                    head = self.head(name)
                    raise ValueError(
                        f"{describe_plugin(head)} projected {sum(rows)} queries of stream "
                        f"{name!r} to shape {tuple(out.shape)}; expected [{sum(rows)}, "
                        f"{head.channels}, {head.params_per_channel}] (queries, channels, "
                        f"parameters). Report this to the plugin's authors."
                    )
                for i, raw in zip(blocks, torch.split(out, rows), strict=True):
                    raws[i] = raw
        for i, p in enumerate(pending):
            raws[i] = self._anchored(p, self._checked_raw(p, raws[i]))
        sums: list[Tensor] = [h] * len(pending)
        counts: list[Tensor] = [h] * len(pending)
        means, order = [], []
        for name, blocks in by_stream.items():
            loss_sum, count = self._block_losses(
                self.head(name), [raws[i] for i in blocks], [pending[i] for i in blocks]
            )
            means.append(loss_sum.float() / count.clamp(min=1))
            order.extend(blocks)
            for j, i in enumerate(blocks):
                sums[i], counts[i] = loss_sum[j], count[j]
        target_losses = torch.cat(means)
        if order != sorted(order):  # back into the blocks' order
            target_losses = target_losses[to_device(np.argsort(order), target_losses.device)]
        outputs = [
            TargetOutput(p.sample, p.stream, raw, p.values, p.valid, p.times, p.units, ls, c)
            for p, raw, ls, c in zip(pending, raws, sums, counts, strict=True)
        ]
        return ModelOutput(target_losses.mean(), outputs, target_losses)

    def _checked_raw(self, p: PendingTarget, raw: Tensor) -> Tensor:
        if p.units is not None:
            producer, want = self.readout, (p.times.shape[0], p.units.numel(),
                                            self.readout.params_per_unit)  # fmt: skip
        else:
            head = self.head(p.stream)
            producer, want = head, (p.times.shape[0], p.values.shape[1], head.params_per_channel)
        if tuple(raw.shape) != want:
            raise ValueError(
                f"the output for stream {p.stream!r} from {describe_plugin(producer)} has shape "
                f"{tuple(raw.shape)}; expected {list(want)} (queries, columns, parameters). "
                f"Report this to the plugin's authors or use another plugin."
            )
        return raw

    def _anchored(self, p: PendingTarget, raw: Tensor) -> Tensor:
        """A forecast block's raw outputs moved towards each column's last visible value, by a
        weight that decays with the time since it (:meth:`Head.anchor`)."""
        if p.anchor is None:
            return raw
        last, known, at = p.anchor
        tau = self.anchor_log_tau[_key(p.stream)].exp()
        weight = torch.exp(-(p.times - at).clamp(min=0) / tau)
        shape = (-1,) + (1,) * (raw.ndim - 1)
        return raw + weight.view(shape) * (self.head(p.stream).anchor(raw, last, known) - raw)

    @staticmethod
    def _block_losses(
        head: Head, raws: list[Tensor], blocks: list[PendingTarget]
    ) -> tuple[Tensor, Tensor]:
        """``(loss sums [n], valid counts [n])`` of ``n`` target blocks of one head: from one
        :meth:`Head.loss_terms` call over their entries side by side, summed per block (padded
        to the largest block, a sum without atomics, so it is the same on every run), or from
        one :meth:`Head.loss` call per block where the head gives no per-entry losses."""
        terms = None
        if type(head).loss_terms is not Head.loss_terms:
            p = raws[0].shape[-1]
            terms = head.loss_terms(
                torch.cat([r.reshape(-1, p) for r in raws])[None],
                torch.cat([b.values.reshape(-1) for b in blocks])[None],
                torch.cat([b.valid.reshape(-1) for b in blocks])[None],
            )
        if terms is None:
            pairs = [head.loss(r, b.values, b.valid) for r, b in zip(raws, blocks, strict=True)]
            return torch.stack([s for s, _ in pairs]), torch.stack([c for _, c in pairs])
        valid = torch.cat([b.valid.reshape(-1) for b in blocks]).long()
        terms = terms.reshape(-1)
        entries = [b.values.numel() for b in blocks]
        width = max(entries)
        if min(entries) != width:  # blocks of different sizes: into a padded table
            at = np.concatenate([j * width + np.arange(e) for j, e in enumerate(entries)])
            at = to_device(at, terms.device)
            terms = terms.new_zeros(len(blocks) * width).index_copy(0, at, terms)
            valid = valid.new_zeros(len(blocks) * width).index_copy(0, at, valid)
        return terms.view(len(blocks), width).sum(1), valid.view(len(blocks), width).sum(1)

    def _project_units(self, batch, pending: list[PendingTarget], parts, stimulus) -> list[Tensor]:
        """The readout's raw outputs for every per-unit target block, in one batched call."""
        queries = []
        for p, part in zip(pending, parts, strict=True):
            if p.units is None:
                continue
            sid = batch[p.sample].session_id
            if not self.reads_stimulus:
                queries.append(ReadoutQuery(part, sid, p.units))
                continue
            read = p.times
            if p.unit_time_offset_s is not None and self.readout.unit_read_times:
                read = p.times[:, None] + p.unit_time_offset_s[None, :]  # [Q, K]
            queries.append(ReadoutQuery(part, sid, p.units, read, stimulus[p.sample]))
        if not queries:
            return []
        if self.reads_stimulus:
            out = list(self.readout.project_stimulus_batch(queries))
        else:
            out = list(self.readout.project_batch(queries))
        if len(out) != len(queries):
            raise ValueError(
                f"the readout {describe_plugin(self.readout)} returned {len(out)} outputs for "
                f"{len(queries)} queries; expected one per query. Report this to the plugin's "
                f"authors."
            )
        return out


def plugin_learning_rate_scales(plugin: nn.Module) -> dict[str, float]:
    """The plugin's :meth:`~neurofm.core.interfaces.ModalityEncoder.learning_rate_scales` per
    parameter (its own parameter names; only scales other than 1; the longest matching prefix
    wins). A scale that is not a positive number, or a prefix that names none of the plugin's
    parameters, raises ``ValueError`` naming the plugin."""
    scales = dict(plugin.learning_rate_scales())
    if not scales:
        return {}
    names = [n for n, _ in plugin.named_parameters()]
    for key, scale in scales.items():
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            valid = False
        else:
            valid = math.isfinite(scale) and scale > 0
        if not valid:
            raise ValueError(
                f"{describe_plugin(plugin)} asks for learning-rate scale {scale!r} for "
                f"parameters {key!r}; expected a positive number. Fix its learning_rate_scales()."
            )
        if not any(n.startswith(key) for n in names):
            shown = ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
            raise ValueError(
                f"{describe_plugin(plugin)} asks for a learning-rate scale for parameters "
                f"{key!r}, but none of its parameters starts so (its parameters: {shown}). Fix "
                f"its learning_rate_scales()."
            )
    out = {}
    for name in names:
        keys = [k for k in scales if name.startswith(k)]
        if keys and (scale := float(scales[max(keys, key=len)])) != 1.0:
            out[name] = scale
    return out


def _read_visible(
    name: str, reads: list[tuple[dict[str, MaskedStream], Tensor]], channels: int
) -> list[tuple[Tensor, Tensor] | None]:
    """Stream ``name`` read at the times of each ``(sample's streams, times [T])``: its visible
    samples' first ``channels`` channels linearly interpolated at the times (held constant
    beyond them), ``[T, channels]``, and whether each time lies within the visible samples' span
    (first sample to last plus one period), ``[T]``; None where the sample lacks the stream or
    shows none of it.

    One computation for every sample: the visible samples are gathered into a padded
    ``[R, N]`` table by one host-built index (each row's last sample repeated, which the search
    never picks), so the number of operations does not grow with the batch."""
    found = [
        (i, item)
        for i, (streams, _) in enumerate(reads)
        if (item := streams.get(name)) is not None and item.mask.visible_time.any()
    ]
    out: list[tuple[Tensor, Tensor] | None] = [None] * len(reads)
    if not found:
        return out
    rows = [np.flatnonzero(item.mask.visible_time) for _, item in found]
    width = max(2, max(r.size for r in rows))
    table = np.empty((len(found), width + 1), dtype=np.int64)  # padded indices, then the count
    start = 0
    for j, ((_, item), r) in enumerate(zip(found, rows, strict=True)):
        table[j, : r.size] = start + r
        table[j, r.size : width] = start + r[-1]
        table[j, width] = r.size
        start += item.stream.values.shape[0]
    device = found[0][1].stream.values.device
    table_d = to_device(table, device)
    index, count = table_d[:, :width], table_d[:, width]
    values = torch.cat([it.stream.values.reshape(it.stream.values.shape[0], -1)[:, :channels]
                        for _, it in found])  # fmt: skip
    seen = torch.cat([it.stream.times for _, it in found])[index]  # [R, N]
    y = values[index]  # [R, N, C]
    at = [reads[i][1] for i, _ in found]
    lengths = [t.shape[0] for t in at]
    at = (
        torch.stack(at)
        if len(set(lengths)) == 1
        else nn.utils.rnn.pad_sequence(at, batch_first=True, padding_value=0.0)
    )  # [R, T]
    last = (count - 1).clamp(min=1)[:, None]
    hi = torch.minimum(torch.searchsorted(seen, at).clamp(min=1), last)
    lo = hi - 1
    x_lo, x_hi = seen.gather(1, lo), seen.gather(1, hi)
    w = ((at - x_lo) / (x_hi - x_lo).clamp(min=1e-9)).clamp(0, 1)[..., None]
    c = y.shape[-1]
    y_lo = y.gather(1, lo[..., None].expand(-1, -1, c))
    y_hi = y.gather(1, hi[..., None].expand(-1, -1, c))
    read = y_lo * (1 - w) + y_hi * w
    period = to_device(np.array([it.stream.period_s for _, it in found], np.float32), device)
    end = seen.gather(1, (count - 1)[:, None])[:, 0] + period
    inside = (at >= seen[:, :1]) & (at <= end[:, None])
    for j, (i, _) in enumerate(found):
        out[i] = read[j, : lengths[j]], inside[j, : lengths[j]]
    return out


def _check_stimulus_path(encoders: Mapping[str, ModalityEncoder], readout: Readout | None) -> None:
    """A readout that reads positioned stimulus features needs an encoder that gives them, with
    the channel count it was built for."""
    if not isinstance(readout, StimulusReadout):
        return
    positioned = {n: e for n, e in encoders.items() if isinstance(e, PositionedStimulusEncoder)}
    if not positioned:
        names = ", ".join(f"{n!r} ({describe_plugin(e)})" for n, e in encoders.items())
        raise ValueError(
            f"the readout ({describe_plugin(readout)}) reads positioned stimulus features, but "
            f"no encoder of the model gives them (encoders: {names or 'none'}). Use a stimulus "
            f"encoder that derives from neurofm.PositionedStimulusEncoder (built-in: "
            f"'movie_core'), or a readout that reads the backbone alone (e.g. 'neuron_embedding')."
        )
    for name, enc in positioned.items():
        if enc.feature_channels != readout.feature_channels:
            raise ValueError(
                f"encoder for stream {name!r} ({describe_plugin(enc)}) gives feature maps of "
                f"{enc.feature_channels} channels; the readout ({describe_plugin(readout)}) was "
                f"built for {readout.feature_channels}. Build the readout with "
                f"feature_channels={enc.feature_channels} (build_model does this)."
            )


def _last_visible(
    stream: StreamTensor, mask, units: Tensor | None
) -> tuple[Tensor, Tensor, Tensor] | None:
    """``(last [K], known [K], time [])``: each target column's value at the last visible sample
    before the first target sample, whether it was visible there, and that sample's time; None
    when no such sample exists."""
    first = int(np.argmax(mask.target_time))
    earlier = np.flatnonzero(mask.visible_time[:first])
    if earlier.size == 0:
        return None
    at = int(earlier[-1])
    known = _channel_valid(stream)[at]
    last = stream.values[at].reshape(known.shape)
    if units is None:
        return last, known, stream.times[at]
    shown = torch.zeros_like(known)
    shown[to_device(mask.visible_units, known.device)] = True
    return last[units], (known & shown)[units], stream.times[at]


def _selector(keep: np.ndarray, device: torch.device) -> tuple[slice | Tensor, slice | np.ndarray]:
    """An index for the rows where the host mask ``keep`` holds, for a tensor on ``device`` and
    for a host array: a slice for both (a view: rows of a contiguous tensor stay contiguous; no
    copy) when they are one run, else the positions as an int64 tensor on ``device`` (sent
    without a synchronisation) and as a numpy array."""
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return slice(0, 0), slice(0, 0)
    if idx[-1] - idx[0] + 1 == idx.size:
        rows = slice(int(idx[0]), int(idx[-1]) + 1)
        return rows, rows
    return to_device(idx, device), idx


def _columns(units: np.ndarray, n: int, index: Tensor) -> slice | Tensor:
    """An index for the columns ``units`` of a tensor with ``n`` columns, given also as the
    tensor ``index``: all of them as a slice (no copy), any other selection as ``index`` (a
    contiguous copy, as encoders may expect)."""
    if units.size == n and bool((units == np.arange(n)).all()):
        return slice(None)
    return index


def _channel_valid(stream: StreamTensor) -> Tensor:
    valid = stream.valid
    return valid if valid.ndim == 2 else valid[:, None]


def _to(stream: StreamTensor, device: torch.device) -> StreamTensor:
    """A sample's stream on the model's device, copied without waiting for the device, with its
    validity and times kept on the host (``valid_host``, ``times_host``) when they came from
    there."""
    host, times = stream.valid_host, stream.times_host
    if host is None and stream.valid.device.type == "cpu":
        host = stream.valid.numpy()
    if times is None and stream.times.device.type == "cpu":
        times = stream.times.numpy()
    if stream.values.device == device and (
        stream.unit_time_offset_s is None or stream.unit_time_offset_s.device == device
    ):
        if host is stream.valid_host and times is stream.times_host:
            return stream
        return replace(stream, valid_host=host, times_host=times)
    offsets = stream.unit_time_offset_s
    return StreamTensor(
        to_device(stream.values, device), to_device(stream.valid, device),
        to_device(stream.times, device), stream.period_s,
        None if offsets is None else to_device(offsets, device), host, times,
    )  # fmt: skip
