"""Backbone configuration and named size presets.

A preset is a zero-argument builder that only chooses numbers. Sized presets are named by their
measured parameter count, rounded: the parameters of the backbone alone, ``PerceiverIO(config)``
(latents, attention, MLPs, norms; encoders, readout and heads excluded). The names of earlier
versions (``"1M"``, ``"5M"``, ``"20M"``, ``"80M"``, ``"300M"``, named by a size they did not have)
still work: they are deprecated aliases (:data:`DEPRECATED_ALIASES`) of the same presets.

Example:
    >>> cfg = get_preset("7M")
    >>> cfg.d_model, cfg.n_heads, cfg.n_layers
    (256, 4, 6)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Literal

from pydantic import model_validator

from neurofm.core.config import StrictModel

__all__ = [
    "DEPRECATED_ALIASES", "PRESETS", "BackboneConfig", "get_preset", "preset_1_6m", "preset_7m",
    "preset_28m", "preset_106m", "preset_340m", "small", "tiny",
]  # fmt: skip


class BackboneConfig(StrictModel):
    """Numbers that fully specify a :class:`~neurofm.core.backbone.perceiver.PerceiverIO`.

    Attributes:
        d_model: token width.
        n_heads: attention heads; must divide ``d_model`` (head dim ``d_model // n_heads``, even).
        n_layers: self-attention blocks over the latents.
        n_latents: latent tokens per sample, tiling the window evenly in time.
        mlp_ratio: MLP hidden width as a multiple of ``d_model``.
        dropout: dropout on the residual branches (not on attention weights).
        attention: attention backend name (see ``neurofm.core.backbone.attention``).
        local_every: 0: every self-attention block is global; ``k > 0``: blocks ``k-1, 2k-1, ...``
            are global and the others time-local (a latent sees its neighbours in time).
        rotary_min_period_s, rotary_max_period_s: period range of the rotary time embedding.
        decoder_reads_inputs: the output queries also cross-attend to the input tokens (after the
            latents), so a query can read the stimulus near its own time directly instead of only
            through the latent summary.
        decoder_lookback_s: with ``decoder_reads_inputs``, a query at ``[t, t_end)`` sees only the
            input tokens overlapping ``[t - decoder_lookback_s, t_end)``; None: all of its sample's.
        compile: ``torch.compile`` the per-token compute of each block.
    """

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    n_latents: int = 16
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    attention: Literal["auto", "sdpa", "reference", "xformers"] = "auto"
    local_every: int = 0
    rotary_min_period_s: float = 0.01
    rotary_max_period_s: float = 100.0
    decoder_reads_inputs: bool = False
    decoder_lookback_s: float | None = None
    compile: bool = False

    @model_validator(mode="after")
    def _check(self) -> BackboneConfig:
        if self.d_model <= 0 or self.n_heads <= 0 or self.d_model % self.n_heads != 0:
            raise ValueError(
                f"n_heads ({self.n_heads}) must divide d_model ({self.d_model}); "
                "choose e.g. d_model = 64 * n_heads"
            )
        if (self.d_model // self.n_heads) % 2 != 0:
            raise ValueError(
                f"head dim d_model // n_heads = {self.d_model // self.n_heads} must be even "
                "(rotary embeddings rotate channel pairs)"
            )
        if self.n_layers < 0 or self.n_latents < 1 or self.local_every < 0:
            raise ValueError("need n_layers >= 0, n_latents >= 1 and local_every >= 0")
        if self.mlp_ratio <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("need mlp_ratio > 0 and 0 <= dropout < 1")
        if self.decoder_lookback_s is not None and self.decoder_lookback_s < 0:
            raise ValueError(
                f"decoder_lookback_s must be >= 0 seconds or None, got {self.decoder_lookback_s}"
            )
        if not 0 < self.rotary_min_period_s <= self.rotary_max_period_s:
            raise ValueError("need 0 < rotary_min_period_s <= rotary_max_period_s")
        return self

    @property
    def head_dim(self) -> int:
        """Channels per attention head."""
        return self.d_model // self.n_heads

    def is_local(self, layer: int) -> bool:
        """Whether self-attention block ``layer`` (0-based) is time-local."""
        return self.local_every > 0 and (layer + 1) % self.local_every != 0


def tiny() -> BackboneConfig:
    """For fast tests: d 32, 2 heads, 1 layer, 8 latents."""
    return BackboneConfig(d_model=32, n_heads=2, n_layers=1, n_latents=8)


# output queries also read the input tokens of the last second (see docs/backbone.md)
_READ_INPUTS = {"decoder_reads_inputs": True, "decoder_lookback_s": 1.0}


def small() -> BackboneConfig:
    """For CPU demos: d 64, 4 heads, 2 layers, 16 latents, output queries that also read the
    inputs of the last second (about 0.25M backbone parameters).

    Four heads of width 16 rather than two of 32: the encoder's cross-attention then pools the
    stimulus tokens into twice as many separate averages per latent (movie -> responses on
    simulated V1, mean of 2 seeds: r 0.15 -> 0.21). Reading the inputs from the output queries
    (``decoder_reads_inputs``, 1 s lookback): r 0.22 -> 0.28, mean of 4 seeds; BENCHMARKS.md.
    """
    return BackboneConfig(d_model=64, n_heads=4, n_layers=2, n_latents=16, **_READ_INPUTS)


def preset_1_6m() -> BackboneConfig:
    """1.59M backbone parameters: d 256, 4 heads, 2 layers (a narrow MLP keeps it small; the
    input-reading decoder block would add 0.4M, so it is left out)."""
    return BackboneConfig(d_model=256, n_heads=4, n_layers=2, n_latents=32, mlp_ratio=1.0)


def preset_7m() -> BackboneConfig:
    """7.11M backbone parameters: d 256, 4 heads, 6 layers."""
    return BackboneConfig(d_model=256, n_heads=4, n_layers=6, n_latents=32, **_READ_INPUTS)


def preset_28m() -> BackboneConfig:
    """28.4M backbone parameters: d 512, 8 heads, 6 layers."""
    return BackboneConfig(d_model=512, n_heads=8, n_layers=6, n_latents=64, **_READ_INPUTS)


def preset_106m() -> BackboneConfig:
    """106M backbone parameters: d 768, 12 heads, 12 layers."""
    return BackboneConfig(d_model=768, n_heads=12, n_layers=12, n_latents=128, **_READ_INPUTS)


def preset_340m() -> BackboneConfig:
    """340M backbone parameters: d 1024, 16 heads, 24 layers."""
    return BackboneConfig(d_model=1024, n_heads=16, n_layers=24, n_latents=256, **_READ_INPUTS)


PRESETS: dict[str, Callable[[], BackboneConfig]] = {
    "tiny": tiny,
    "small": small,
    "1.6M": preset_1_6m,
    "7M": preset_7m,
    "28M": preset_28m,
    "106M": preset_106m,
    "340M": preset_340m,
}

#: Old preset name -> its name in :data:`PRESETS` (deprecated; :func:`get_preset` warns).
DEPRECATED_ALIASES: dict[str, str] = {
    "1M": "1.6M",
    "5M": "7M",
    "20M": "28M",
    "80M": "106M",
    "300M": "340M",
}

# the builders' old names, importable (with a warning) until the aliases go
_DEPRECATED_BUILDERS = {
    "preset_1m": "preset_1_6m",
    "preset_5m": "preset_7m",
    "preset_20m": "preset_28m",
    "preset_80m": "preset_106m",
    "preset_300m": "preset_340m",
}


def get_preset(name: str) -> BackboneConfig:
    """The backbone configuration of preset ``name``: one of ``PRESETS``, or a deprecated alias
    (``DEPRECATED_ALIASES``), which warns and returns the preset it stands for."""
    if name in DEPRECATED_ALIASES:
        new = DEPRECATED_ALIASES[name]
        warnings.warn(
            f"backbone preset {name!r} is a deprecated alias of {new!r} (presets are named by "
            f"their measured size); use {new!r}",
            DeprecationWarning,
            stacklevel=2,
        )
        name = new
    try:
        return PRESETS[name]()
    except KeyError:
        aliases = ", ".join(f"{old} -> {new}" for old, new in DEPRECATED_ALIASES.items())
        raise ValueError(
            f"unknown backbone preset {name!r}; known presets: {', '.join(PRESETS)} "
            f"(deprecated aliases: {aliases})"
        ) from None


def __getattr__(name: str) -> object:
    if name in _DEPRECATED_BUILDERS:
        new = _DEPRECATED_BUILDERS[name]
        warnings.warn(
            f"{name} is deprecated; use {new} (presets are named by their measured size)",
            DeprecationWarning,
            stacklevel=2,
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
