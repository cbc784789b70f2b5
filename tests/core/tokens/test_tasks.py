"""Tasks as generic mask specs: property tests of resolve, presets and the per-sample sampler."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurofm.core.tokens.task_sampler import PARAMETRIC, ParametricTask, TaskSampler
from neurofm.core.tokens.tasks import (
    PRESETS,
    StreamRule,
    TaskSpec,
    UnitCount,
    UnitFraction,
    UnitIds,
    causal_task,
    population_task,
    resolve,
)

ROLES = ("stimulus", "behaviour", "neural", "acme.role")


@st.composite
def ranges(draw) -> tuple[float, float] | None:
    if draw(st.booleans()):
        return None
    a = draw(st.floats(0.0, 0.95))
    return (a, draw(st.floats(a + 0.01, 1.0)))


@st.composite
def selections(draw, n: int, allow_rest: bool):
    kind = draw(
        st.sampled_from(["all", "none", "count", "fraction", "ids"] + ["rest"] * allow_rest)
    )
    if kind == "count":
        return UnitCount(count=draw(st.integers(0, n + 3)))
    if kind == "fraction":
        return UnitFraction(fraction=draw(st.floats(0.0, 1.0)))
    if kind == "ids":
        return UnitIds(ids=draw(st.lists(st.integers(0, n - 1), max_size=n)))
    return kind


@st.composite
def cases(draw):
    n = draw(st.integers(1, 12))
    rule = StreamRule(
        visible=draw(ranges()),
        target=draw(ranges()),
        visible_units=draw(selections(n, allow_rest=False)),
        target_units=draw(selections(n, allow_rest=True)),
    )
    name = draw(st.text("abcxyz._", min_size=1, max_size=8))
    role = draw(st.sampled_from(ROLES))
    selector = draw(st.sampled_from([name, f"@{role}", "*"]))
    n_samples = draw(st.integers(0, 40))
    duration = draw(st.floats(0.1, 5.0))
    per_unit = draw(st.booleans())
    return TaskSpec(name="t", rules={selector: rule}), name, role, n_samples, duration, per_unit, n


def _requested(sel, n: int, visible_units: np.ndarray) -> set[int]:
    if sel == "all":
        return set(range(n))
    if sel == "none":
        return set()
    if sel == "rest":
        return set(range(n)) - set(visible_units.tolist())
    if isinstance(sel, UnitIds):
        return set(sel.ids)
    return set()  # random selections: sizes are checked instead


@settings(max_examples=300, deadline=None)
@given(cases(), st.integers(0, 2**32 - 1))
def test_targets_never_visible_and_requested_entries_covered(case, seed) -> None:
    task, name, role, n_samples, duration, per_unit, n = case
    times = np.arange(n_samples) * duration / max(n_samples, 1)
    mask = resolve(task, name, role, times, duration, n if per_unit else None,
                   np.random.default_rng(seed))  # fmt: skip
    rule = next(iter(task.rules.values()))
    if rule.visible is None and rule.target is None:
        assert mask is None
        return
    assert mask is not None  # any stream name / role is addressed by its rule: no per-modality code

    def in_range(r):
        return np.zeros(n_samples, bool) if r is None else (
            (times >= r[0] * duration) & (times < r[1] * duration))  # fmt: skip

    vis_t, req_t = in_range(rule.visible), in_range(rule.target)
    assert np.array_equal(mask.visible_time, vis_t)
    if not per_unit:
        assert not (mask.target_time & mask.visible_time).any()
        assert np.array_equal(mask.target_time, req_t & ~vis_t)
        return
    vis_u = set(mask.visible_units.tolist()) if rule.visible else set()
    # entries actually scored: target block minus the excluded entries
    scored = np.zeros((n_samples, n), bool)
    rows = np.flatnonzero(mask.target_time)
    block = np.ones((rows.size, mask.target_units.size), bool)
    if mask.target_excluded is not None:
        assert mask.target_excluded.shape == block.shape
        block &= ~mask.target_excluded
    scored[np.ix_(rows, mask.target_units)] = block
    visible = np.zeros((n_samples, n), bool)
    visible[np.ix_(vis_t, sorted(vis_u))] = True
    assert not (scored & visible).any(), "a target entry is also visible"
    # every requested (time, unit) entry that is not visible is scored
    if rule.target is not None:
        req_u = _requested(rule.target_units, n, mask.visible_units)
        requested = np.zeros((n_samples, n), bool)
        requested[np.ix_(req_t, sorted(req_u))] = True
        assert not (requested & ~visible & ~scored).any(), "a requested target entry is lost"
        assert not (scored & ~in_range(rule.target)[:, None]).any()
    for sel, got in ((rule.visible_units, vis_u), (rule.target_units, None)):
        if isinstance(sel, UnitCount) and got is not None and rule.visible:
            assert len(got) == min(sel.count, n)
        if isinstance(sel, UnitFraction) and got is not None and rule.visible:
            assert len(got) == min(round(sel.fraction * n), n)


def test_population_task_targets_the_other_neurons() -> None:
    times = np.arange(30) / 30
    mask = resolve(
        population_task(5), "calcium", "neural", times, 1.0, 20, np.random.default_rng(0)
    )
    assert mask.visible_units.size == 5 and mask.target_units.size == 15
    assert not set(mask.visible_units) & set(mask.target_units)
    assert mask.visible_time.all() and mask.target_time.all() and mask.target_excluded is None


def test_overlapping_units_keep_non_visible_entries() -> None:
    """Units visible in the first half and targets everywhere: visible ones are scored only in the
    second half, the others everywhere (the old product mask dropped the first half for all)."""
    task = TaskSpec(name="x", rules={"*": StreamRule(
        visible=(0, 0.5), target=(0, 1), visible_units=UnitIds(ids=[0, 1]))})  # fmt: skip
    mask = resolve(task, "s", "neural", np.arange(10) / 10, 1.0, 4, np.random.default_rng(0))
    assert mask.target_time.all() and mask.target_units.tolist() == [0, 1, 2, 3]
    assert mask.target_excluded[:5, :2].all() and not mask.target_excluded[5:].any()
    assert not mask.target_excluded[:, 2:].any()


def test_causal_task_fractions_and_seconds() -> None:
    a = causal_task(0.5, 0.1, with_stimulus=True)
    b = causal_task(1.0, 0.2, with_stimulus=True, window_s=2.0)
    assert a.rules == b.rules and a.name == "causal_50_stimulus"
    assert a.rules["@neural"].visible == (0.0, 0.5) and a.rules["@neural"].target == (0.6, 1.0)
    assert "@behaviour" not in a.rules
    with pytest.raises(ValueError, match="context"):
        causal_task(0.9, 0.2)


def test_presets_mirror_the_protocol() -> None:
    for name in ("responses_from_stimulus_behaviour", "behaviour_from_responses", "population_8",
                 "causal_50", "causal_50_stimulus", "causal_50_stimulus_behaviour"):  # fmt: skip
        assert name in PRESETS
    for task in PRESETS.values():  # generic: rules address roles or all streams, never a modality
        assert all(key.startswith("@") or key == "*" for key in task.rules)


def test_sampler_draws_per_sample_and_parametric() -> None:
    rng = np.random.default_rng(0)
    sampler = TaskSampler(["responses_from_stimulus", "population_random", "causal_random"])
    tasks = sampler.sample(300, rng)
    assert {t.name for t in tasks} == {"responses_from_stimulus", *PARAMETRIC}
    ks = {t.rules["@neural"].visible_units.count for t in tasks if t.name == "population_random"}
    contexts = {t.rules["@neural"].visible[1] for t in tasks if t.name == "causal_random"}
    assert len(ks) > 10 and len(contexts) > 10  # a fresh parameter per sample
    assert [t.name for t in sampler.tasks] == ["responses_from_stimulus", *PARAMETRIC]
    with pytest.raises(ValueError, match="no task preset"):
        TaskSampler(["nope"])
    with pytest.raises(ValueError, match="below 1"):
        ParametricTask(name="p", kind="causal", context=(0.5, 0.9), gap=(0.0, 0.2))
