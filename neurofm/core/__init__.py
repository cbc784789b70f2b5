"""neurofm's core: data -> tokens -> backbone -> readout -> head, plus training, evaluation and CLI.

Core never imports a plugin module; it builds plugins by name through :mod:`neurofm.registry`.
"""
