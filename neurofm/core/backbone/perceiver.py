"""The Perceiver-IO backbone over packed samples, with rotary time embeddings.

Per sample: a learned latent array (the same for every sample) cross-attends to the sample's
input tokens, ``n_layers`` self-attention blocks mix the latents, and each output query
cross-attends to its own sample's latents. Attention never crosses samples; every attention call
goes through one backend (``BackboneConfig.attention``), and queries and keys are rotated by their
time before that call.

Example:
    >>> import torch
    >>> from neurofm.core.backbone.packing import PackedSequence
    >>> from neurofm.core.backbone.presets import tiny
    >>> model = PerceiverIO(tiny())
    >>> spans = torch.tensor([[0.0, 0.1], [0.1, 0.2], [0.2, 0.3]])
    >>> inputs = PackedSequence.pack([torch.randn(3, 32), torch.randn(0, 32)], [spans, spans[:0]])
    >>> q_spans = [spans[:2], spans[:1]]
    >>> queries = PackedSequence.pack([torch.randn(2, 32), torch.randn(1, 32)], q_spans)
    >>> out = model(inputs, queries, model.latent_times(torch.tensor([2.0, 2.0])))
    >>> out.shape
    torch.Size([3, 32])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from neurofm.core.backbone.attention import AttentionBackend, get_backend
from neurofm.core.backbone.packing import PackedSequence
from neurofm.core.backbone.presets import BackboneConfig
from neurofm.core.backbone.rotary import RotaryTimeEmbedding

__all__ = ["AttentionBlock", "FeedForward", "MultiHeadAttention", "PerceiverIO"]


class FeedForward(nn.Module):
    """Pre-norm GELU MLP branch (the residual is added by the block).

    Shape:
        ``[n, d]`` -> ``[n, d]``
    """

    def __init__(self, d_model: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        hidden = max(1, round(d_model * mlp_ratio))
        self.norm = nn.LayerNorm(d_model)
        self.net = nn.Sequential(
            nn.Linear(d_model, hidden),
            nn.GELU(),
            nn.Linear(hidden, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.norm(x))


class MultiHeadAttention(nn.Module):
    """Project, rotate by time, attend through the backend, project back.

    Args of ``forward``:
        x_q, x_kv: packed (already normalised) query and key/value tokens.
        q_seqlens, kv_seqlens: tokens per sample.
        q_times, kv_times: token spans ``(start, end)`` in seconds (rotary positions).
        local: time-local attention; ``local_q_times`` (default ``q_times``) are the query spans
            that keys must overlap.

    Shape:
        x_q ``[total_q, d]``, x_kv ``[total_kv, d]``, times ``[total, 2]`` -> ``[total_q, d]``
    """

    def __init__(
        self, d_model: int, n_heads: int, rotary: RotaryTimeEmbedding, backend: AttentionBackend
    ) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model)
        self.rotary = rotary
        self.backend = backend

    def forward(
        self,
        x_q: Tensor,
        x_kv: Tensor,
        q_seqlens: tuple[int, ...],
        kv_seqlens: tuple[int, ...],
        q_times: Tensor,
        kv_times: Tensor,
        local: bool = False,
        local_q_times: Tensor | None = None,
    ) -> Tensor:
        q = self.rotary(self.q_proj(x_q).unflatten(-1, (self.n_heads, -1)), q_times)
        k = self.rotary(self.k_proj(x_kv).unflatten(-1, (self.n_heads, -1)), kv_times)
        v = self.v_proj(x_kv).unflatten(-1, (self.n_heads, -1))
        mask_q_times = q_times if local_q_times is None else local_q_times
        out = self.backend(
            q, k, v, q_seqlens, kv_seqlens, q_times=mask_q_times, kv_times=kv_times, local=local
        )
        return self.out_proj(out.flatten(1))


class AttentionBlock(nn.Module):
    """Pre-norm residual block: ``x = x + attn(norm(x), norm(context))``; ``x = x + mlp(norm(x))``.

    ``cross=False`` makes it a self-attention block (``context`` is ``x`` itself, normed once).

    Shape:
        x ``[total_q, d]``, context ``[total_kv, d]`` -> ``[total_q, d]``
    """

    def __init__(
        self,
        config: BackboneConfig,
        rotary: RotaryTimeEmbedding,
        backend: AttentionBackend,
        cross: bool,
    ) -> None:
        super().__init__()
        d = config.d_model
        self.cross = cross
        self.norm_q = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d) if cross else None
        self.attn = MultiHeadAttention(d, config.n_heads, rotary, backend)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.mlp = FeedForward(d, config.mlp_ratio, config.dropout)

    def forward(
        self,
        x: Tensor,
        context: PackedSequence | None,
        seqlens: tuple[int, ...],
        times: Tensor,
        local: bool = False,
        local_times: Tensor | None = None,
    ) -> Tensor:
        h = self.norm_q(x)
        if context is None or self.norm_kv is None:
            kv, kv_seqlens, kv_times = h, seqlens, times
        else:
            kv, kv_seqlens, kv_times = self.norm_kv(context.x), context.seqlens, context.times
        attended = self.attn(h, kv, seqlens, kv_seqlens, times, kv_times, local, local_times)
        x = x + self.attn_dropout(attended)
        x = x + self.mlp(x)
        return x


class PerceiverIO(nn.Module):
    """Perceiver-IO backbone over packed variable-length samples.

    Args:
        config: the numbers (see :class:`BackboneConfig` and the presets).

    Shape:
        - inputs.x ``[total_in, d]``, queries.x ``[total_q, d]``, latent_times ``[B, L, 2]``
        - output ``[total_q, d]``
    """

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.d_model = config.d_model
        self.n_latents = config.n_latents
        self.latents = nn.Parameter(0.02 * torch.randn(config.n_latents, config.d_model))
        backend = get_backend(config.attention)
        rotary = RotaryTimeEmbedding(
            config.head_dim, config.rotary_min_period_s, config.rotary_max_period_s
        )
        self.encoder = AttentionBlock(config, rotary, backend, cross=True)
        self.layers = nn.ModuleList(
            AttentionBlock(config, rotary, backend, cross=False) for _ in range(config.n_layers)
        )
        self.decoder = AttentionBlock(config, rotary, backend, cross=True)
        self.input_decoder = (
            AttentionBlock(config, rotary, backend, cross=True)
            if config.decoder_reads_inputs
            else None
        )
        if self.input_decoder is not None:
            # zero-initialised residual branches: the block starts as the identity, so a model
            # begins as the latent-only decoder and learns what to read from the inputs
            for layer in (self.input_decoder.attn.out_proj, self.input_decoder.mlp.net[2]):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.norm_out = nn.LayerNorm(config.d_model)
        if config.compile:
            self.compile_blocks()

    def compile_blocks(self) -> None:
        """``torch.compile`` the per-token compute of every block (its MLP branch), with dynamic
        shapes: token counts change with every batch and do not recompile. The attention calls
        stay eager (their loop over sample groups depends on the packing; compiling the whole
        backbone recompiled at every batch)."""
        for module in self.modules():
            if isinstance(module, FeedForward):
                module.compile(dynamic=True)

    def latent_times(self, window_durations: Tensor) -> Tensor:
        """Time spans of the latents: ``L`` equal spans tiling ``[0, duration)`` of each window.

        Shape:
            ``[B]`` seconds -> ``[B, L, 2]`` float32
        """
        edges = torch.arange(self.n_latents + 1, device=window_durations.device) / self.n_latents
        spans = window_durations.to(torch.float32)[:, None] * edges[None, :]
        return torch.stack((spans[:, :-1], spans[:, 1:]), dim=-1)

    def forward(
        self, inputs: PackedSequence, queries: PackedSequence, latent_times: Tensor
    ) -> Tensor:
        """Encode each sample's inputs into latents, process them, and answer its queries.

        Args:
            inputs: tokens of all modalities of B samples (x ``[total_in, d]``).
            queries: output queries (x ``[total_q, d]``).
            latent_times: ``[B, L, 2]`` time spans of the latents of each sample.

        Returns:
            ``[total_q, d]``, one vector per query.
        """
        b, n_latents = inputs.batch_size, self.n_latents
        if queries.batch_size != b or latent_times.shape != (b, n_latents, 2):
            raise ValueError(
                f"inputs hold {b} samples: expected {b} query samples and latent_times "
                f"[{b}, {n_latents}, 2], found {queries.batch_size} and {tuple(latent_times.shape)}"
            )
        for name, packed in (("inputs", inputs), ("queries", queries)):
            if packed.x.shape[-1] != self.d_model:
                raise ValueError(
                    f"{name}.x has width {packed.x.shape[-1]}, backbone d_model is {self.d_model}"
                )
        lat_seqlens = (n_latents,) * b
        lat_times = latent_times.reshape(b * n_latents, 2).to(inputs.x.device, torch.float32)
        z = self.latents.repeat(b, 1)
        z = self.encoder(z, inputs, lat_seqlens, lat_times)
        if any(self.config.is_local(i) for i in range(len(self.layers))):
            width = lat_times[:, 1:] - lat_times[:, :1]
            neighbourhood = torch.cat((lat_times[:, :1] - width, lat_times[:, 1:] + width), dim=1)
        for i, layer in enumerate(self.layers):
            if self.config.is_local(i):
                z = layer(z, None, lat_seqlens, lat_times, True, neighbourhood)
            else:
                z = layer(z, None, lat_seqlens, lat_times)
        latents = PackedSequence(x=z, times=lat_times, seqlens=lat_seqlens)
        out = self.decoder(queries.x, latents, queries.seqlens, queries.times)
        if self.input_decoder is not None:
            lookback = self.config.decoder_lookback_s
            if lookback is None:
                out = self.input_decoder(out, inputs, queries.seqlens, queries.times)
            else:
                reach = queries.times.clone()
                reach[:, 0] -= lookback
                out = self.input_decoder(out, inputs, queries.seqlens, queries.times, True, reach)
        return self.norm_out(out)
