"""neurofm: foundation models of neural activity.

One transformer, trained across recording sessions and animals, predicts neural responses from
stimuli and behaviour, decodes behaviour from neurons, forecasts activity, or any combination.
Modality encoders, neuron readouts and task heads are plugins found through entry points.

Importing ``neurofm`` is light: nothing heavy (torch, plugins) is imported until a name that needs
it is used, and plugin discovery waits until a registry is first queried.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # configs and plugin base classes
    "PluginConfig": "neurofm.core.config",
    "ModelConfig": "neurofm.core.builder",
    "ExperimentConfig": "neurofm.core.builder",
    "TrainingConfig": "neurofm.core.builder",
    "DataConfig": "neurofm.core.builder",
    "BackboneConfig": "neurofm.core.backbone",
    "ModalityEncoder": "neurofm.core.interfaces",
    "Readout": "neurofm.core.interfaces",
    "Head": "neurofm.core.interfaces",
    "StreamTensor": "neurofm.core.interfaces",
    "Tokens": "neurofm.core.interfaces",
    "SessionUnits": "neurofm.core.interfaces",
    # model
    "NeuroFM": "neurofm.core.model",
    "PerceiverIO": "neurofm.core.backbone",
    "build_model": "neurofm.core.builder",
    "default_model_config": "neurofm.core.builder",
    "get_preset": "neurofm.core.backbone",
    # data
    "Session": "neurofm.core.data",
    "open_dataset": "neurofm.core.data",
    "write_session": "neurofm.core.data",
    "StreamInput": "neurofm.core.data",
    "UnitTable": "neurofm.core.data",
    "load_window": "neurofm.core.data.windows",
    "SimulationConfig": "neurofm.core.data.simulation",
    "simulate_to_disk": "neurofm.core.data.simulate_to_disk",
    # tasks, training, evaluation
    "TaskSpec": "neurofm.core.tasks",
    "StreamRule": "neurofm.core.tasks",
    "TaskSampler": "neurofm.core.tasks",
    "Trainer": "neurofm.core.training",
    "evaluate": "neurofm.core.evaluation.evaluate",
}

__all__ = ["__version__", "registry", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name == "registry":
        return importlib.import_module("neurofm.registry")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'neurofm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
