"""Named model presets: whole-model configs for a kind of recording, beside the backbone's sizes.

A model preset is a function that returns a :class:`~neurofm.core.model.config.ModelConfig`; it
names plugins by their registered names only (core never imports a plugin). ``MODEL_PRESETS``
lists them by name; :func:`default_model_config` is the default one, ``mouse_v1``.

Example:
    >>> cfg = get_model_preset("mouse_v1", backbone="tiny", frame_size=(36, 64))
    >>> sorted(cfg.modalities), cfg.readout.type
    (['calcium', 'gaze', 'movie', 'pupil', 'running'], 'retinotopic')
"""

from __future__ import annotations

from collections.abc import Callable

from neurofm.core.backbone import get_preset
from neurofm.core.model.config import ModelConfig
from neurofm.core.tokens.conv_core import CoreConfig

__all__ = [
    "DEFAULT_MODEL_PRESET", "MODEL_PRESETS", "default_model_config", "get_model_preset", "mouse_v1",
]  # fmt: skip


def mouse_v1(
    backbone: str = "tiny", *, frame_size: tuple[int, int] = (36, 64), stimulus_path: bool = True
) -> ModelConfig:
    """Mouse V1 from two-photon calcium imaging: movie, pupil, running (and gaze) -> calcium,
    with behaviour heads.

    ``backbone``: a backbone size preset (:func:`~neurofm.core.backbone.get_preset`);
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
            {"backbone": get_preset(backbone).model_dump(),
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
    if backbone in ("tiny", "small"):
        core.update(channels=24, layers=2, spatial_kernels=(7, 3), temporal_kernels=(4, 2))
        frame_pool = 3
    core_config = CoreConfig.model_validate(core)
    map_h, map_w = core_config.map_size(h, w)
    movie = {"type": "movie_core", "height": h, "width": w, "core": core_config.model_dump(),
             "frame_pool": frame_pool, "token_rows": min(4, map_h),
             "token_cols": min(4, map_w)}  # fmt: skip
    return ModelConfig.model_validate(
        {"backbone": get_preset(backbone).model_dump(),
         "modalities": {"movie": movie, **behaviour, "gaze": {"type": "gaze"},
                        "calcium": {"type": "calcium"}},
         "readout": {"type": "retinotopic", "mask_height": map_h, "mask_width": map_w},
         "heads": heads, "anchor_tau_s": 1.0}
    )  # fmt: skip


MODEL_PRESETS: dict[str, Callable[..., ModelConfig]] = {"mouse_v1": mouse_v1}
"""Model presets by name; each takes the backbone size preset first, then its own options."""

DEFAULT_MODEL_PRESET = "mouse_v1"


def get_model_preset(name: str, /, **options) -> ModelConfig:
    """The model preset ``name`` with ``options`` (e.g. ``backbone="small"``)."""
    try:
        build = MODEL_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown model preset {name!r}; known: {', '.join(sorted(MODEL_PRESETS))}"
        ) from None
    return build(**options)


def default_model_config(
    preset: str = "tiny", *, frame_size: tuple[int, int] = (36, 64), stimulus_path: bool = True
) -> ModelConfig:
    """The default model preset (:data:`DEFAULT_MODEL_PRESET`, ``mouse_v1``) at the backbone size
    ``preset``: ``get_model_preset("mouse_v1", backbone=preset, ...)``; see :func:`mouse_v1`."""
    return get_model_preset(
        DEFAULT_MODEL_PRESET, backbone=preset, frame_size=frame_size, stimulus_path=stimulus_path
    )
