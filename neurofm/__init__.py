"""neurofm: foundation models of neural activity.

One transformer, trained across recording sessions and animals, predicts neural responses from
stimuli and behaviour, decodes behaviour from neurons, forecasts activity, or any combination.
Modality encoders, neuron readouts and task heads are plugins found through entry points.

Importing ``neurofm`` is light: nothing heavy (torch, plugins) is imported until a name that needs
it is used, and plugin discovery waits until a registry is first queried.

The public surface (``__all__``), by what it is for:

- assemble a model from parts: :class:`NeuroFM`, :class:`PerceiverIO`, :class:`BackboneConfig`,
  the plugin interfaces :class:`ModalityEncoder`, :class:`Readout`, :class:`Head` and their data
  types :class:`StreamTensor`, :class:`Tokens`, :class:`SessionUnits`; the stimulus path's
  :class:`PositionedStimulusEncoder`, :class:`StimulusReadout` and their data types
  :class:`FeatureMap`, :class:`PositionedOutput`, :class:`StimulusView`, :class:`ReadoutQuery`;
- build one from a config or preset: :func:`build_model`, :func:`default_model_config`,
  :func:`get_model_preset` (whole-model presets), :func:`get_preset` (backbone sizes),
  :class:`ModelConfig`, :class:`ExperimentConfig`, :func:`load_config_file`, :func:`dump_config`;
- data: :class:`Session`, :func:`open_dataset`, :func:`write_session`, :class:`StreamInput`,
  :class:`UnitTable`, :func:`load_window`, :class:`SimulationConfig`, :func:`simulate_to_disk`;
- tasks, training, evaluation, checkpoints: :class:`TaskSpec`, :class:`StreamRule`,
  :func:`get_task`, :class:`Trainer`, :class:`TrainingConfig`, :func:`finetune`, :func:`evaluate`,
  :func:`save_pretrained`, :func:`load_pretrained`;
- plugins: :mod:`registry` (one registry per kind), :func:`get_registry`, :class:`PluginConfig`;
  the conformance kit is :mod:`neurofm.testing`.

Example:
    >>> import neurofm
    >>> neurofm.get_preset("tiny").d_model
    32
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # configs and plugin base classes
    "PluginConfig": "neurofm.core.config",
    "load_config_file": "neurofm.core.config",
    "dump_config": "neurofm.core.config",
    "ModelConfig": "neurofm.core.model.config",
    "ExperimentConfig": "neurofm.core.training.config",
    "TrainingConfig": "neurofm.core.training.config",
    "DataConfig": "neurofm.core.training.config",
    "BackboneConfig": "neurofm.core.backbone",
    "ModalityEncoder": "neurofm.core.interfaces",
    "Readout": "neurofm.core.interfaces",
    "Head": "neurofm.core.interfaces",
    "StreamTensor": "neurofm.core.interfaces",
    "Tokens": "neurofm.core.interfaces",
    "SessionUnits": "neurofm.core.interfaces",
    "FeatureMap": "neurofm.core.interfaces",
    "PositionedOutput": "neurofm.core.interfaces",
    "PositionedStimulusEncoder": "neurofm.core.interfaces",
    "StimulusReadout": "neurofm.core.interfaces",
    "StimulusView": "neurofm.core.interfaces",
    "ReadoutQuery": "neurofm.core.interfaces",
    "get_registry": "neurofm.registry",
    "NeurofmError": "neurofm.errors",
    # model
    "NeuroFM": "neurofm.core.model.neurofm",
    "PerceiverIO": "neurofm.core.backbone",
    "build_model": "neurofm.core.model.builder",
    "default_model_config": "neurofm.core.model.presets",
    "get_model_preset": "neurofm.core.model.presets",
    "get_preset": "neurofm.core.backbone",
    "save_pretrained": "neurofm.core.model.checkpoint",
    "load_pretrained": "neurofm.core.model.checkpoint",
    # data
    "Session": "neurofm.core.data",
    "open_dataset": "neurofm.core.data",
    "write_session": "neurofm.core.data",
    "StreamInput": "neurofm.core.data",
    "UnitTable": "neurofm.core.data",
    "WindowSample": "neurofm.core.data.windows",
    "load_window": "neurofm.core.data.windows",
    "SimulationConfig": "neurofm.core.data.simulation",
    "simulate_to_disk": "neurofm.core.data.simulate_to_disk",
    # tasks, training, evaluation
    "TaskSpec": "neurofm.core.tokens.tasks",
    "StreamRule": "neurofm.core.tokens.tasks",
    "TaskSampler": "neurofm.core.tokens.tasks",
    "get_task": "neurofm.core.tokens.tasks",
    "Trainer": "neurofm.core.training",
    "TrainResult": "neurofm.core.training",
    "finetune": "neurofm.core.training",
    "evaluate": "neurofm.core.evaluation.evaluate",
    "EvaluationResult": "neurofm.core.evaluation.evaluate",
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
