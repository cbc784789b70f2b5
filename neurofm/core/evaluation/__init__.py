"""Evaluation: metrics that compare predicted with recorded neural activity."""

from neurofm.core.evaluation.metrics import (
    CorrelationAccumulator,
    RepeatAccumulator,
    pearson_r,
    summarize,
)

__all__ = ["CorrelationAccumulator", "RepeatAccumulator", "pearson_r", "summarize"]
