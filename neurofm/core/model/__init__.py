"""The model: its config, named model presets, the builder that assembles one through the
registry, the :class:`~neurofm.core.model.neurofm.NeuroFM` module, and checkpoint folders."""
