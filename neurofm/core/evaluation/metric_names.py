"""The metrics evaluation knows by name, and the ones each target stream reports: its head's choice.

Evaluation asks the head of every target stream which metrics to compute and report for it
(:meth:`neurofm.Head.metric_names`); a head chooses among the names below, which depend on the
kind of stream. A per-unit (neural) stream has one value per neuron of each metric
(``per_neuron.json``) and a summary over neurons (``metrics.json``, the table); a channel
(behaviour) stream has one r per channel. Formulas: ``docs/metrics.md``.

Example:
    >>> known_metric_names(per_unit=False)
    ('r',)
    >>> sorted(summary_keys(["single_trial_r", "fraction_of_ceiling"]))
    ['fraction_of_mean_ceiling', 'single_trial_r']
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from neurofm.errors import InvalidPluginError
from neurofm.registry import describe_plugin

__all__ = [
    "CHANNEL_METRICS",
    "REPEAT_METRICS",
    "UNIT_METRICS",
    "head_metric_names",
    "known_metric_names",
    "summary_keys",
]

UNIT_METRICS: dict[str, str] = {
    "single_trial_r": "per-neuron Pearson r over every predicted entry",
    "r_to_average": "r of the repeat-averaged prediction with the repeat-averaged response",
    "oracle_r": "leave-one-out oracle r of the responses (describes the data)",
    "fev": "fraction of explainable variance of the responses (describes the data)",
    "feve": "fraction of explainable variance explained; the summary averages neurons with "
    "FEV >= 0.15 and adds feve_all and n_neurons_feve",
    "ceiling_r": "noise ceiling: r of the expected (noise-free) with the recorded response",
    "fraction_of_ceiling": "single_trial_r / ceiling_r per neuron; the summary holds the "
    "population figure fraction_of_mean_ceiling",
    "r_to_expected": "r of the prediction with the expected (noise-free) response",
}
"""Metrics of a per-unit stream: name -> what it is. All but ``single_trial_r`` need repeated
test stimuli whose every interval is predicted in full; ``ceiling_r``, ``fraction_of_ceiling`` and
``r_to_expected`` also need ground truth ``expected_<stream>`` (simulated data). A metric the
data cannot give is left out of the report."""

CHANNEL_METRICS: dict[str, str] = {
    "r": "per-channel Pearson r (per_channel); the summary holds the mean over channels",
}
"""Metrics of a channel stream: name -> what it is."""

REPEAT_METRICS = frozenset(UNIT_METRICS) - {"single_trial_r"}
"""Per-unit metrics computed from repeated stimuli (repeats are held only when one is asked for)."""

# summary keys a per-unit metric adds beside its own name (or instead of it)
_SUMMARY_KEYS = {
    "feve": ("feve", "feve_all", "n_neurons_feve"),
    "fraction_of_ceiling": ("fraction_of_mean_ceiling",),
}


def known_metric_names(per_unit: bool) -> tuple[str, ...]:
    """Every metric evaluation computes for a per-unit stream (``per_unit``) or a channel stream,
    in report order; what :meth:`neurofm.Head.metric_names` asks for by default."""
    return tuple(UNIT_METRICS if per_unit else CHANNEL_METRICS)


def summary_keys(names: Iterable[str]) -> set[str]:
    """The keys of a per-unit stream's summary that the metrics ``names`` give (``n_neurons``
    comes with any of them)."""
    return {key for name in names for key in _SUMMARY_KEYS.get(name, (name,))}


def head_metric_names(
    head: object, stream: str | None = None, *, per_unit: bool
) -> tuple[str, ...]:
    """The metrics ``head`` asks evaluation to report for ``stream`` (``head.metric_names``; the
    stream's name only goes into messages), checked against the ones evaluation knows for that
    kind of stream; duplicates dropped.

    Raises:
        InvalidPluginError: the head names a metric evaluation does not compute for the stream,
            or does not return a sequence of names; the message names the head, the metric and
            the known ones.
    """
    kind = "per-unit" if per_unit else "channel"
    known = ", ".join(known_metric_names(per_unit))
    who = describe_plugin(head, "head") + ("" if stream is None else f" (stream {stream!r})")
    try:
        names = head.metric_names(per_unit=per_unit)  # type: ignore[attr-defined]
    except TypeError as error:  # e.g. an override without the per_unit argument
        raise InvalidPluginError(
            f"{who}: metric_names(per_unit={per_unit}) failed: {error}. Head.metric_names takes "
            f"per_unit (bool) and returns metric names; known for {kind} streams: {known}."
        ) from error
    is_sequence = isinstance(names, Sequence) and not isinstance(names, str)
    if not is_sequence or not all(isinstance(n, str) for n in names):
        raise InvalidPluginError(
            f"{who}: metric_names(per_unit={per_unit}) must return a tuple of metric names, "
            f"found {names!r}. Known for {kind} streams: {known}."
        )
    unknown = [n for n in names if n not in known_metric_names(per_unit)]
    if unknown:
        which = f"metric {unknown[0]!r}" if len(unknown) == 1 else f"metrics {unknown}"
        raise InvalidPluginError(
            f"{who} asks for {which}, which evaluation does not compute for {kind} streams; "
            f"known for {kind} streams: {known}. Return names from these in Head.metric_names "
            f"(docs/metrics.md)."
        )
    return tuple(dict.fromkeys(names))
