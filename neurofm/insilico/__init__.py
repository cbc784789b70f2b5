"""In-silico experiments on a trained model: tuning curves, receptive fields, most exciting inputs.

Everything goes through the public model API (:class:`ModelProbe`), so any checkpoint whose model
has a stimulus encoder works, whichever plugins it is built from. Stimulus families are plugins
(:class:`Stimulus`, entry-point group ``neurofm.stimuli``); the built-in ``gratings`` and
``sparse_noise`` are registered the same way. The command is ``neurofm insilico``; the guide is
docs/insilico.md.

Example::

    from neurofm import load_pretrained, open_dataset, registry
    from neurofm.insilico import ModelProbe, tuning_curves

    model = load_pretrained("demo/checkpoint").eval()
    session = open_dataset("demo/data")[0]
    probe = ModelProbe(model, session, screen_width_deg=120.0, hold={"gaze": [0.0, 0.0]})
    tuning = tuning_curves(probe, registry.stimuli.get("gratings")(),
                           gain_stream="running", gain_values=([0.0], [20.0]))
    tuning.preferred_orientation_deg  # [N] degrees
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelProbe": "neurofm.insilico.probe",
    "InsilicoError": "neurofm.insilico.probe",
    "Screen": "neurofm.insilico.stimuli",
    "Stimulus": "neurofm.insilico.stimuli",
    "StimulusFitError": "neurofm.insilico.stimuli",
    "Gratings": "neurofm.insilico.stimuli",
    "SparseNoise": "neurofm.insilico.stimuli",
    "TuningResult": "neurofm.insilico.tuning",
    "condition_responses": "neurofm.insilico.tuning",
    "tuning_curves": "neurofm.insilico.tuning",
    "ReceptiveFieldResult": "neurofm.insilico.receptive_fields",
    "sparse_noise_receptive_fields": "neurofm.insilico.receptive_fields",
    "gradient_receptive_fields": "neurofm.insilico.receptive_fields",
    "MEIResult": "neurofm.insilico.mei",
    "most_exciting_inputs": "neurofm.insilico.mei",
    "image_responses": "neurofm.insilico.mei",
    "InsilicoSettings": "neurofm.insilico.run",
    "run_insilico": "neurofm.insilico.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'neurofm.insilico' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
