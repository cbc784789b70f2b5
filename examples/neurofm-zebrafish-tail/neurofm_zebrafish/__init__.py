"""Example neurofm plugin package: the ``zebrafish.tail`` modality encoder."""

from neurofm_zebrafish.tail import TailConfig, TailEncoder

__all__ = ["TailConfig", "TailEncoder"]
