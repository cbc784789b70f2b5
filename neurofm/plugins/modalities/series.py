"""What the built-in behaviour encoders share: temporal patches of a ``[T, channels]`` series."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.interfaces import ModalityEncoder, StreamTensor, Tokens
from neurofm.core.tokenization import series_tokens, series_tokens_batch

__all__ = ["SeriesEncoder"]


class SeriesEncoder(ModalityEncoder):
    """Each patch of ``config.patch_samples`` samples of the ``config.channels`` channels, with
    its validity flags, becomes one token (a linear map); patches without a valid sample give
    none. Subclasses set ``Config`` (with ``type``, ``channels`` and ``patch_samples``), ``role``
    and ``normalization``; not a plugin itself.

    Shape: stream.values ``[T, C]`` -> tokens ``[ceil(T / patch_samples) - dropped, d_model]``.
    """

    def __init__(self, config: PluginConfig, *, d_model: int) -> None:
        super().__init__(config, d_model=d_model)
        self.embed = nn.Linear(2 * config.patch_samples * config.channels, d_model)

    def tokenize(self, stream: StreamTensor, unit_embeddings: Tensor | None = None) -> Tokens:
        c = self.config
        return series_tokens(self.embed, c.channels, c.patch_samples, stream, c.type)

    def tokenize_batch(
        self,
        streams: Sequence[StreamTensor],
        unit_embeddings: Sequence[Tensor | None] | None = None,
    ) -> list[Tokens]:
        c = self.config
        return series_tokens_batch(self.embed, c.channels, c.patch_samples, streams, c.type)
