"""A run's step count re-fixed while it trains: ``Trainer.set_steps`` from a hook, ``fit``
following it, and :class:`StepBudget` filling a time budget from the run's own step times."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from training_helpers import stimulus_model

from neurofm.core.data import open_dataset
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig
from neurofm.core.training.trainer import StepBudget


def _trainer(tiny_data: Path, steps: int, warmup: int = 2) -> Trainer:
    sessions = open_dataset(tiny_data)
    config = TrainingConfig(steps=steps, batch_size=2, warmup_steps=warmup, eval_every=10**6,
                            device="cpu", num_workers=1, prefetch=1)  # fmt: skip
    return Trainer(stimulus_model(sessions), sessions, config, window_s=1.0, progress=False)


def test_fit_runs_to_a_step_count_a_hook_changes(tiny_data: Path) -> None:
    trainer = _trainer(tiny_data, steps=6)

    def longer(t: Trainer) -> None:
        if t.step == 3:
            t.set_steps(9)

    trainer.before_step.append(longer)
    result = trainer.fit()
    assert (trainer.step, result.steps, len(result.train_loss)) == (9, 9, 9)
    assert trainer.config.steps == 9
    with pytest.raises(ValueError, match="current step 9"):
        trainer.set_steps(5)
    # fewer steps than planned: fit stops at the new count
    short = _trainer(tiny_data, steps=8)
    short.before_step.append(lambda t: t.set_steps(4) if t.step == 2 else None)
    assert short.fit().steps == 4


def test_the_schedule_after_re_sizing_is_a_fresh_run_of_that_length(tiny_data: Path) -> None:
    resized, fresh = _trainer(tiny_data, 100, warmup=10), _trainer(tiny_data, 250, warmup=10)
    before = [resized.scheduler.lr_lambdas[0](k) for k in range(10)]
    resized.step = 10
    resized.set_steps(250)
    factors = [resized.scheduler.lr_lambdas[0](k) for k in range(250)]
    assert factors[:10] == before  # warm-up, already run, is unchanged
    assert factors == [fresh.scheduler.lr_lambdas[0](k) for k in range(250)]


class _Stub:
    """What StepBudget reads of a trainer."""

    def __init__(self, steps: int) -> None:
        self.step, self.device = 0, "cpu"
        self.config = TrainingConfig(steps=steps)

    def set_steps(self, steps: int) -> None:
        self.config = self.config.model_copy(update={"steps": steps})


def test_step_budget_fills_the_rest_of_the_budget_at_the_measured_speed() -> None:
    ticks = itertools.count(0.0, 0.5)  # each step takes 0.5 s
    budget = StepBudget(30.0, at_step=10, skip=2, clock=lambda: next(ticks))
    stub = _Stub(steps=100)
    for step in range(11):
        stub.step = step
        budget(stub)  # type: ignore[arg-type]
    # 5 s spent by step 10, 25 s left at 0.5 s a step: 50 more steps
    assert stub.config.steps == 60
    assert budget.message is not None and "from 100 to 60 steps" in budget.message
    assert "500 ms" in budget.message
    stub.step = 11
    budget(stub)  # type: ignore[arg-type]
    assert stub.config.steps == 60  # once only


def test_step_budget_keeps_within_its_bounds(tiny_data: Path) -> None:
    slow = StepBudget(
        1.0, at_step=4, skip=1, min_steps=20, clock=itertools.count(0.0, 10.0).__next__
    )
    stub = _Stub(steps=50)
    for step in range(5):
        stub.step = step
        slow(stub)  # type: ignore[arg-type]
    assert stub.config.steps == 20  # the budget is spent, but min_steps are trained
    # a real run capped at max_steps ends there
    trainer = _trainer(tiny_data, steps=8)
    fast = StepBudget(
        60.0, at_step=4, skip=1, max_steps=12, clock=itertools.count(0.0, 0.01).__next__
    )
    trainer.before_step.append(fast)
    assert trainer.fit().steps == 12


@pytest.mark.parametrize(("seconds", "at_step", "skip"), [(0.0, 10, 2), (5.0, 2, 2), (5.0, 3, -1)])
def test_bad_budgets_are_refused(seconds: float, at_step: int, skip: int) -> None:
    with pytest.raises(ValueError, match="at_step > skip >= 0"):
        StepBudget(seconds, at_step, skip=skip)


def test_a_cap_below_the_re_sizing_step_is_refused() -> None:
    with pytest.raises(ValueError, match=r"max_steps \(8\) must be above at_step \(10\)"):
        StepBudget(5.0, 10, skip=2, max_steps=8)
