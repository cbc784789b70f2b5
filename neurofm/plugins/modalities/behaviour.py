"""One behaviour encoder for every ``[T, channels]`` behaviour stream (pupil, running, gaze, ...).

:class:`BehaviourEncoder` holds all the logic. A behaviour stream is declared with one call of
:func:`behaviour_encoder`: its name, channel count and docs. The call gives a class that the
registry accepts: a thin subclass of :class:`BehaviourEncoder` with its own ``Config``, whose
``type`` tag is the name. The built-ins ``pupil``, ``running`` and ``gaze`` are declared so, each
in its own module. A third-party package declares its own streams in the same way.

Example:
    >>> import torch
    >>> from neurofm import StreamTensor
    >>> WhiskerEncoder = behaviour_encoder(
    ...     "acme.whisker",
    ...     channels=3,
    ...     doc="Temporal patches of whisker angles -> tokens.",
    ...     config_doc="Whisker stream ``[T, channels]``; ``patch_samples`` per token.",
    ... )
    >>> WhiskerEncoder.__name__, WhiskerEncoder.Config.__name__
    ('WhiskerEncoder', 'WhiskerConfig')
    >>> WhiskerEncoder.Config(patch_samples=5).model_dump()
    {'type': 'acme.whisker', 'channels': 3, 'patch_samples': 5}
    >>> encoder = WhiskerEncoder(WhiskerEncoder.Config(), d_model=8)
    >>> stream = StreamTensor(
    ...     values=torch.zeros(10, 3),
    ...     valid=torch.ones(10, 3, dtype=torch.bool),
    ...     times=torch.arange(10) / 20,
    ...     period_s=0.05,
    ... )
    >>> encoder.tokenize(stream).features.shape  # ceil(10 / 4) patches
    torch.Size([3, 8])
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from typing import Literal

from pydantic import Field, create_model
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.interfaces import ModalityEncoder, StreamTensor, Tokens
from neurofm.core.tokens.tokenization import series_tokens, series_tokens_batch

__all__ = ["BehaviourConfig", "BehaviourEncoder", "behaviour_encoder"]

_SHAPE = (
    "Shape: stream.values ``[T, C]`` -> tokens ``[ceil(T / patch_samples) - dropped, d_model]``."
)


class BehaviourConfig(PluginConfig):
    """Fields of every behaviour stream's config; :func:`behaviour_encoder` derives each stream's
    own (with its ``type`` tag and default ``channels``)."""

    channels: int = Field(ge=1)
    patch_samples: int = Field(4, ge=1)


class BehaviourEncoder(ModalityEncoder):
    """Each patch of ``config.patch_samples`` samples of the ``config.channels`` channels, with
    its validity flags, becomes one token (a linear map, ``embed``); patches without a valid
    sample give none. Missing samples (blinks, lost tracking, NaN) are flagged, not zeroed.

    Not a plugin itself (it has no ``Config``): :func:`behaviour_encoder` gives the registrable
    subclasses.

    Shape: stream.values ``[T, C]`` -> tokens ``[ceil(T / patch_samples) - dropped, d_model]``.
    """

    role = "behaviour"
    normalization = "zscore"

    def __init__(self, config: BehaviourConfig, *, d_model: int) -> None:
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


def behaviour_encoder(
    name: str,
    *,
    channels: int,
    doc: str,
    config_doc: str,
    patch_samples: int = 4,
    module: str | None = None,
) -> type[BehaviourEncoder]:
    """The encoder class of behaviour stream ``name``: a subclass of :class:`BehaviourEncoder`
    named ``<Name>Encoder``, with ``Config`` ``<Name>Config`` (a :class:`BehaviourConfig` whose
    ``type`` tag is ``name`` and whose defaults are ``channels`` and ``patch_samples``).

    ``<Name>`` is the last dot-separated part of ``name`` in CamelCase (``"acme.eye_lid"`` ->
    ``EyeLidEncoder``). Register the class under ``name`` (entry point or ``register``) and bind
    it and its ``Config`` to those names in ``module``, so they can be imported and documented.

    Args:
        name: the registered name, e.g. ``"pupil"`` or ``"acme.whisker"``.
        channels: default channel count ``C`` of the stream ``[T, C]``.
        doc: the encoder's one-line summary (a ``Shape:`` section is appended).
        config_doc: the config's docstring.
        patch_samples: default number of samples per token.
        module: the module the classes belong to (default: the caller's).
    """
    stem = "".join(part.capitalize() for part in name.rsplit(".", 1)[-1].split("_"))
    module = module or sys._getframe(1).f_globals["__name__"]
    config = create_model(
        f"{stem}Config",
        __base__=BehaviourConfig,
        __module__=module,
        __doc__=config_doc,
        type=(Literal[name], name),
        channels=(int, Field(channels, ge=1)),
        patch_samples=(int, Field(patch_samples, ge=1)),
    )
    namespace = {
        "Config": config,
        "__doc__": f"{doc}\n\n{_SHAPE}",
        "__module__": module,
        "__qualname__": f"{stem}Encoder",
    }
    return types.new_class(
        f"{stem}Encoder", (BehaviourEncoder,), {}, lambda ns: ns.update(namespace)
    )
