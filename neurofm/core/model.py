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
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from neurofm.core.backbone import PackedSequence, PerceiverIO
from neurofm.core.data.windows import WindowSample
from neurofm.core.interfaces import Head, ModalityEncoder, Normalization, Readout, StreamTensor
from neurofm.core.tasks import TaskSpec, resolve

__all__ = ["ModelOutput", "NeuroFM", "TargetOutput"]


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


@dataclass
class ModelOutput:
    loss: Tensor
    targets: list[TargetOutput]


def _key(name: str) -> str:
    return name.replace(".", "%2E")


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
    """

    def __init__(
        self,
        *,
        encoders: Mapping[str, ModalityEncoder],
        backbone: PerceiverIO,
        readout: Readout | None,
        heads: Mapping[str, Head],
        anchor_targets: bool = True,
    ) -> None:
        super().__init__()
        d = backbone.d_model
        for name, enc in encoders.items():
            if enc.d_model != d:
                raise ValueError(f"encoder {name!r} has d_model {enc.d_model}, backbone has {d}")
            if enc.per_unit and readout is None:
                raise ValueError(f"stream {name!r} is per-unit (neural) but no readout was given")
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
        # log of each target stream's anchor time constant (seconds); starts near persistence
        self.anchor_log_tau = nn.ParameterDict(
            {_key(k): nn.Parameter(torch.full((1,), math.log(10.0))) for k in heads}
        )
        # vocabulary recorded in checkpoints (filled by the builders; empty for hand-built models)
        self.session_units: dict[str, object] = {}
        self.target_channels: dict[str, int] = {}
        self.stream_statistics: dict[str, dict[str, dict]] = {}  # session -> stream -> stats
        self.model_config = None  # the ModelConfig it was built from (set by the builders)

    def save_pretrained(self, path, *, extra: Mapping[str, object] | None = None):
        """Write a checkpoint folder (see :mod:`neurofm.core.checkpoint`); needs ``model_config``."""
        from neurofm.core.checkpoint import save_pretrained

        if self.model_config is None:
            raise ValueError(
                "this model has no model_config (built by hand?); use "
                "neurofm.core.checkpoint.save_pretrained(model, config, path)"
            )
        return save_pretrained(self, self.model_config, path, extra=extra)

    @classmethod
    def from_pretrained(cls, path) -> NeuroFM:
        """Rebuild a model from a checkpoint folder (verified; executes nothing from the folder)."""
        from neurofm.core.checkpoint import load_pretrained

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
        """Run one task per sample and return predictions and the mean loss over all targets."""
        if len(tasks) != len(batch):
            raise ValueError(
                f"got {len(tasks)} tasks for {len(batch)} samples; need one per sample"
            )
        rng = rng if rng is not None else np.random.default_rng(0)
        device = self.device
        in_x, in_t, q_x, q_t = [], [], [], []
        pending: list[tuple[int, str, Tensor, Tensor, Tensor, Tensor | None]] = []
        for b, (sample, task) in enumerate(zip(batch, tasks, strict=True)):
            xs, ts, qs, qts = [], [], [], []
            for name in self._names:
                stream = sample.streams.get(name)
                if stream is None:
                    continue  # absent modality: the sample simply has no tokens of it
                enc = self.encoder(name)
                n_units = stream.values.shape[1] if enc.per_unit else None
                mask = resolve(
                    task, name, enc.role, stream.times.numpy(), sample.duration, n_units, rng
                )
                if mask is None:
                    continue
                stream = _to(stream, device)
                tokens = self._encode(enc, name, sample.session_id, stream, mask)
                if tokens is not None:
                    xs.append(tokens[0])
                    ts.append(tokens[1])
                tgt = torch.from_numpy(mask.target_time).to(device)
                if name in self.query_names and bool(tgt.any()):
                    units = (
                        None
                        if mask.target_units is None
                        else torch.from_numpy(mask.target_units).to(device)
                    )
                    if units is not None and units.numel() == 0:
                        continue
                    values, valid = stream.values[tgt], _channel_valid(stream)[tgt]
                    if units is not None:
                        values, valid = values[:, units], valid[:, units]
                    if mask.target_excluded is not None:  # entries that are also visible inputs
                        valid = valid & ~torch.from_numpy(mask.target_excluded).to(device)
                    times = stream.times[tgt]
                    qs.append(self.query_embedding[_key(name)].expand(times.shape[0], -1))
                    qts.append(torch.stack([times, times + stream.period_s], -1))
                    anchor = _last_visible(stream, mask, units) if self.anchor_targets else None
                    pending.append((b, name, values, valid, times, units, anchor))
            d = self.backbone.d_model
            in_x.append(torch.cat(xs) if xs else torch.zeros(0, d, device=device))
            in_t.append(torch.cat(ts) if ts else torch.zeros(0, 2, device=device))
            q_x.append(torch.cat(qs) if qs else torch.zeros(0, d, device=device))
            q_t.append(torch.cat(qts) if qts else torch.zeros(0, 2, device=device))
        if not pending and batch:
            # no sample has a target: one placeholder query keeps every backbone parameter in the
            # graph (its loss is 0), so distributed gradient reductions see the same parameters
            q_x[0] = torch.zeros(1, self.backbone.d_model, device=device)
            q_t[0] = torch.zeros(1, 2, device=device)
        inputs = PackedSequence.pack(in_x, in_t)
        queries = PackedSequence.pack(q_x, q_t)
        durations = torch.tensor([s.duration for s in batch], device=device)
        h = self.backbone(inputs, queries, self.backbone.latent_times(durations))
        return self._heads(batch, h, pending)

    @property
    def query_names(self) -> set[str]:
        return {n for n in self._names if _key(n) in self.heads}

    def _encode(self, enc, name, session_id, stream, mask):
        vis = torch.from_numpy(mask.visible_time).to(stream.values.device)
        if not bool(vis.any()):
            return None
        sub = StreamTensor(
            stream.values[vis], stream.valid[vis], stream.times[vis], stream.period_s
        )
        unit_emb = None
        if enc.per_unit:
            units = torch.from_numpy(mask.visible_units).to(stream.values.device)
            if units.numel() == 0:
                return None
            sub = StreamTensor(sub.values[:, units], sub.valid[:, units], sub.times, sub.period_s)
            unit_emb = self.readout.unit_embeddings(session_id, units)
        tokens = enc.tokenize(sub, unit_emb)
        if tokens.features.shape[-1] != self.backbone.d_model or tokens.times.shape != (
            len(tokens),
            2,
        ):
            raise ValueError(
                f"encoder for stream {name!r} ({_describe_plugin(enc)}) returned features "
                f"{tuple(tokens.features.shape)} and times {tuple(tokens.times.shape)}; expected "
                f"[n, {self.backbone.d_model}] and [n, 2]. Report this to the plugin's authors or "
                f"use another modality plugin for the stream."
            )
        return tokens.features + self.stream_embedding[_key(name)], tokens.times

    def _heads(self, batch, h, pending) -> ModelOutput:
        outputs: list[TargetOutput] = []
        per_sample = (
            list(torch.split(h, self._query_counts(pending, len(batch)))) if pending else []
        )
        cursor = [0] * len(batch)
        for b, name, values, valid, times, units, anchor in pending:
            q = times.shape[0]
            part = per_sample[b][cursor[b] : cursor[b] + q]
            cursor[b] += q
            head = self.head(name)
            if units is not None:
                raw = self.readout.project(part, batch[b].session_id, units)
                producer, want = self.readout, (q, units.numel(), self.readout.params_per_unit)
            else:
                raw = head.project(part)
                producer, want = head, (q, values.shape[1], head.params_per_channel)
            if tuple(raw.shape) != want:
                raise ValueError(
                    f"the output for stream {name!r} from {_describe_plugin(producer)} has shape "
                    f"{tuple(raw.shape)}; expected {list(want)} (queries, columns, parameters). "
                    f"Report this to the plugin's authors or use another plugin."
                )
            if anchor is not None:
                last, known, at = anchor
                weight = torch.exp(
                    -(times - at).clamp(min=0) / self.anchor_log_tau[_key(name)].exp()
                )
                shape = (-1,) + (1,) * (raw.ndim - 1)
                raw = raw + weight.view(shape) * (head.anchor(raw, last, known) - raw)
            loss_sum, count = head.loss(raw, values, valid)
            outputs.append(TargetOutput(b, name, raw, values, valid, times, units, loss_sum, count))
        if outputs:
            losses = torch.stack([o.loss_sum / o.count.clamp(min=1) for o in outputs])
            loss = losses.mean()
        else:
            loss = h.sum() * 0.0
        return ModelOutput(loss, outputs)

    @staticmethod
    def _query_counts(pending, n: int) -> list[int]:
        counts = [0] * n
        for b, _, _, _, times, *_ in pending:
            counts[b] += times.shape[0]
        return counts


def _describe_plugin(obj: object) -> str:
    """``<kind> plugin 'x' from <package> <version>`` for a registered plugin's instance."""
    from neurofm import registry

    for reg in registry.REGISTRIES.values():
        for record in reg.records():
            if record.obj is type(obj):
                return record.describe()
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}, not a registered plugin"


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
    shown[torch.from_numpy(mask.visible_units).to(known.device)] = True
    return last[units], (known & shown)[units], stream.times[at]


def _channel_valid(stream: StreamTensor) -> Tensor:
    valid = stream.valid
    return valid if valid.ndim == 2 else valid[:, None]


def _to(stream: StreamTensor, device: torch.device) -> StreamTensor:
    if stream.values.device == device:
        return stream
    return StreamTensor(
        stream.values.to(device), stream.valid.to(device), stream.times.to(device), stream.period_s
    )
