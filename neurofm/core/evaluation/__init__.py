"""Evaluation: metrics that compare predicted with recorded neural activity."""

from neurofm.core.evaluation.metrics import (
    CorrelationAccumulator,
    RepeatAccumulator,
    fraction_of_mean_ceiling,
    pearson_r,
    summarize,
)

__all__ = [
    "CorrelationAccumulator",
    "RepeatAccumulator",
    "fraction_of_mean_ceiling",
    "pearson_r",
    "summarize",
]
