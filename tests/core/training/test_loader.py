"""The torchdata loader: exact resume, rank slicing, session weights."""

from __future__ import annotations

from pathlib import Path

from neurofm.core.data import open_dataset
from neurofm.core.training.loader import TrainLoader

NORM = {"movie": "zscore", "pupil": "zscore", "running": "zscore", "calcium": "scale"}
TASKS = {"forecast": 1.0, "behaviour_from_responses": 1.0, "responses_from_stimulus": 1.0,
         "population_random": 1.0}  # fmt: skip


def _loader(sessions, **kw) -> TrainLoader:
    args = {"window_s": 1.0, "batch_size": 4, "tasks": TASKS, "seed": 3, "prefetch": 3}
    return TrainLoader(sessions, NORM, **{**args, **kw})


def _key(batch) -> list:
    return [(w.session_id, w.t0, t) for w, t in zip(batch.samples, batch.tasks, strict=True)]


def test_resume_yields_exactly_the_next_batch_despite_prefetch(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    first = _loader(sessions)
    for _ in range(5):
        next(first)
    state = first.state_dict()  # prefetcher and workers are ahead by several batches
    expected = [_key(next(first)) for _ in range(3)]
    resumed = _loader(sessions)
    resumed.load_state_dict(state)
    got = [next(resumed) for _ in range(3)]
    assert [b.step for b in got] == [5, 6, 7]
    assert [_key(b) for b in got] == expected
    stream = got[0].samples[0].streams["calcium"]
    assert stream.values.shape[1] == 16 and stream.values.dtype.is_floating_point


def test_ranks_take_disjoint_slices_of_the_single_process_batch(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    single = _loader(sessions, batch_size=4)
    ranks = [_loader(sessions, batch_size=2, rank=r, world_size=2) for r in (0, 1)]
    for _ in range(3):
        whole = _key(next(single))
        parts = [_key(next(r)) for r in ranks]
        assert parts[0] + parts[1] == whole
        assert parts[0] != parts[1]


def test_session_weights_choose_sessions(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    only = sessions[1].session_id
    loader = _loader(sessions, weights={only: 1.0, sessions[0].session_id: 0.0})
    ids = {w.session_id for _ in range(5) for w in next(loader).samples}
    assert ids == {only}


def test_task_families_draw_a_member_per_window(tiny_data: Path) -> None:
    sessions = open_dataset(tiny_data)
    loader = _loader(sessions, tasks={"population_random": 1.0}, batch_size=8)
    specs = [t for _ in range(4) for t in next(loader).tasks]
    ks = {t.rules["@neural"].visible_units.count for t in specs}
    assert {t.name for t in specs} == {"population_random"}
    assert len(ks) > 10  # not the family's typical member (32 of 1-64) every time
    again = _loader(sessions, tasks={"population_random": 1.0}, batch_size=8)
    assert [t for _ in range(4) for t in next(again).tasks] == specs  # a function of the step
