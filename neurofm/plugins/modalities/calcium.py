"""Calcium encoder: per-neuron temporal patches of fluorescence / deconvolved activity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.devices import take_rows
from neurofm.core.interfaces import ModalityEncoder, StreamTensor, Tokens
from neurofm.core.tokens.tokenization import (
    check_unit_stream,
    groups_with_valid,
    patch_spans,
    same_length_groups,
    temporal_patches,
)

__all__ = ["CalciumConfig", "CalciumEncoder"]


class CalciumConfig(PluginConfig):
    """``patch_samples`` consecutive samples of one neuron make one token."""

    type: Literal["calcium"] = "calcium"
    patch_samples: int = Field(6, ge=1)


class CalciumEncoder(ModalityEncoder):
    """One token per (neuron, temporal patch): patch values and validity, plus the neuron's identity.

    Neuron identities come from the model's readout (``unit_embeddings``), so the same embedding
    marks a neuron on the input side and predicts it on the output side. When the stream carries
    per-unit time offsets (``stream.unit_time_offset_s``, scan-phase offsets), a neuron's token
    spans are shifted by its offset, so they sit at the times its samples were taken.

    Shape:
        stream.values ``[T, N]``, unit_embeddings ``[N, d_model]`` ->
        tokens ``[N * ceil(T / patch_samples) - dropped, d_model]``.
    """

    Config = CalciumConfig
    role = "neural"
    normalization = "scale"
    per_unit = True

    def __init__(self, config: CalciumConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        self.embed = nn.Linear(2 * config.patch_samples, d_model)

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        values, valid = stream.values, stream.valid
        n_units = check_unit_stream(values, unit_embeddings, self.d_model, "calcium")
        p = temporal_patches(
            values, valid, stream.times, self.config.patch_samples, stream.period_s
        )
        # [n, P, N] -> [N, n, 2P]
        x = torch.cat([p.values, p.valid.to(values.dtype)], dim=1).permute(2, 0, 1)
        keep = groups_with_valid(stream.host_valid(), self.config.patch_samples).T  # [N, n]
        features = self.embed(x) + unit_embeddings[:, None, :]
        spans = p.spans.expand(n_units, -1, -1)
        if stream.unit_time_offset_s is not None:  # [N]: each neuron's sample time in a frame
            spans = spans + stream.unit_time_offset_s[:, None, None]
        keep = keep.reshape(-1)
        return Tokens(take_rows(features.flatten(0, 1), keep), take_rows(spans.flatten(0, 1), keep))

    def tokenize_batch(
        self,
        streams: Sequence[StreamTensor],
        unit_embeddings: Sequence[Tensor | None] | None = None,
    ) -> list[Tokens]:
        """The samples of one length side by side (their units as columns of one stream): one
        patching and one ``embed`` call per group (same tokens as :meth:`tokenize`)."""
        if unit_embeddings is None:
            return super().tokenize_batch(streams, unit_embeddings)
        out: list[Tokens | None] = [None] * len(streams)
        for group in same_length_groups(streams):
            if len(group) == 1 or streams[group[0]].n_samples == 0:
                for i in group:
                    out[i] = self.tokenize(streams[i], unit_embeddings[i])
                continue
            members = [streams[i] for i in group]
            counts = [
                check_unit_stream(s.values, unit_embeddings[i], self.d_model, "calcium")
                for i, s in zip(group, members, strict=True)
            ]
            patch, period = self.config.patch_samples, members[0].period_s
            p = temporal_patches(
                torch.cat([s.values for s in members], 1),
                torch.cat([s.valid for s in members], 1),
                members[0].times,  # spans come per sample below
                patch,
                period,
            )
            x = torch.cat([p.values, p.valid.to(p.values.dtype)], dim=1).permute(2, 0, 1)
            identities = torch.cat([unit_embeddings[i] for i in group])
            features = self.embed(x) + identities[:, None, :]  # [sum N, n, d]
            keep = groups_with_valid(
                np.concatenate([s.host_valid() for s in members], 1), patch
            ).T  # [sum N, n], on the host
            start = 0
            for i, stream, n_units in zip(group, members, counts, strict=True):
                rows = slice(start, start + n_units)
                start += n_units
                spans = patch_spans(stream.times, patch, period).expand(n_units, -1, -1)
                if stream.unit_time_offset_s is not None:
                    spans = spans + stream.unit_time_offset_s[:, None, None]
                kept = keep[rows].reshape(-1)
                out[i] = Tokens(
                    take_rows(features[rows].flatten(0, 1), kept),
                    take_rows(spans.flatten(0, 1), kept),
                )
        return out  # type: ignore[return-value]
