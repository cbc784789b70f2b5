"""The model's forward pass never waits for the device.

On a GPU a read of a device value (``.item()``, ``bool(t)``, ``.cpu()``, ``nonzero``, a boolean-mask
index) or a blocking host-to-device copy stalls the queue of kernels. There is no GPU here, so the
check simulates one: :class:`DeviceShadow` gives every tensor a shadow placement, ``host`` (the
loader's data, numpy-derived tensors, tensors made without a device) or ``device`` (parameters,
buffers, the sample data once the model has moved it, and anything computed from a device
tensor), and records every operation that would synchronise if ``device`` were a GPU.
"""

from __future__ import annotations

import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

import neurofm.core.model.neurofm as model_module
from neurofm.core.data import open_dataset
from neurofm.core.data.simulate_to_disk import simulate_to_disk
from neurofm.core.data.simulation import SimulationConfig
from neurofm.core.data.windows import WindowSampler, load_window
from neurofm.core.devices import index_on, take_rows, to_device
from neurofm.core.interfaces import StreamTensor
from neurofm.core.model.builder import build_model
from neurofm.core.model.config import ModelConfig
from neurofm.core.model.presets import default_model_config
from neurofm.core.tokens.tasks import get_task
from neurofm.core.training import Trainer
from neurofm.core.training.config import TrainingConfig

T = torch.Tensor
# reads of a tensor's values by the host (a synchronisation when the tensor is on a GPU)
READS = {T.item, T.tolist, T.numpy, T.__bool__, T.__int__, T.__float__, T.__index__, T.nonzero,
         torch.nonzero, torch.unique, T.unique, torch.masked_select, T.masked_select, T.cpu,
         torch.argwhere, T.argwhere, torch.unique_consecutive, T.unique_consecutive}  # fmt: skip
INDEXING = {"__getitem__", "__setitem__", "index_put_", "index_put"}

TASKS = ["responses_from_stimulus_behaviour", "forecast", "population_8", "population_half",
         "behaviour_from_responses", "causal_50_stimulus_behaviour", "responses_from_stimulus",
         "forecast_with_stimulus_behaviour"]  # fmt: skip


class DeviceShadow(TorchFunctionMode):
    """Shadow placements for every tensor an operation makes; ``events`` lists each operation
    that would synchronise with a GPU: ``(kind, operation, where)``."""

    def __init__(self, host=(), device=()) -> None:
        super().__init__()
        self.placement: dict[int, str] = {}
        self.alive: list[Tensor] = []  # keeps ids unique while the mode runs
        self.events: list[tuple[str, str, str]] = []
        for t in host:
            self._set(t, "host")
        for t in device:
            self._set(t, "device")

    def _set(self, t: Tensor, where: str) -> None:
        self.placement[id(t)] = where
        self.alive.append(t)

    def _where(self, t: Tensor) -> str:
        return self.placement.get(id(t), "host")  # torch.from_numpy does not pass through here

    def moved(self, t: Tensor) -> Tensor:
        """A copy of ``t`` placed on the device (a simulated host-to-device copy)."""
        with torch._C.DisableTorchFunction():
            out = t.clone()
        self._set(out, "device")
        return out

    def _record(self, kind: str, name: str) -> None:
        frames = [f for f in traceback.extract_stack() if "/neurofm/" in f.filename]
        f = frames[-1] if frames else traceback.extract_stack()[-3]
        if f.name == "__post_init__" and f.filename.endswith("core/interfaces.py"):
            return  # StreamTensor's check of its host copies runs on CPU tensors only
        where = f"{f.filename.rsplit('neurofm/', 1)[-1]}:{f.lineno} {(f.line or '').strip()}"
        self.events.append((kind, name, where))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        places = {self._where(t) for t in tensors}
        name = getattr(func, "__name__", str(func))
        moves = name == "cuda" or (
            name == "to"
            and ("device" in kwargs or any(isinstance(a, torch.device | str) for a in args[1:]))
        )
        if name == "backward":
            self.events.append(("backward", name, ""))  # a marker: the backward pass is queued
        if func in READS and self._where(args[0]) == "device":
            self._record("read", name)
        if name in INDEXING and len(args) > 1:
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            boolean = any(isinstance(i, T) and i.dtype == torch.bool and i.ndim for i in index)
            if boolean and self._where(args[0]) == "device":
                self._record("boolean index", name)
        if moves and self._where(args[0]) == "host" and not kwargs.get("non_blocking", False):
            self._record("blocking copy", name)
        data = args[0] if args else kwargs.get("data")
        if (
            func in (torch.tensor, torch.as_tensor)
            and kwargs.get("device") is not None
            and not isinstance(data, T)
        ):
            self._record("blocking copy", name)
        mixed = not moves and places == {"host", "device"}
        if mixed and any(self._where(t) == "host" and t.ndim for t in tensors):
            self._record("host tensor used with device tensors", name)
        out = func(*args, **kwargs)
        if moves:
            where = "device"
        elif not tensors:
            where = "device" if kwargs.get("device") is not None else "host"
        else:
            where = "device" if "device" in places else "host"
        inputs = {id(t) for t in tensors}
        for o in tree_flatten(out)[0]:
            if isinstance(o, T) and (moves or id(o) not in inputs):
                self._set(o, where)
        return out


def _batch(tiny_data: Path, model, gaps: bool):
    sessions = open_dataset(tiny_data)
    draws = WindowSampler(sessions, 1.0, seed=1).draw(2 * len(TASKS))
    batch = [load_window(sessions[i], t0, 1.0, model.normalization()) for i, t0 in draws]
    if gaps:  # invalid entries: tokens without a valid sample are dropped
        rng = np.random.default_rng(0)
        batch = [replace(s, streams={k: _with_gaps(v, rng) for k, v in s.streams.items()})
                 for s in batch]  # fmt: skip
    return batch, [get_task(name) for name in TASKS * 2]


def _with_gaps(stream: StreamTensor, rng: np.random.Generator) -> StreamTensor:
    t = stream.n_samples
    valid = stream.valid.clone()
    start = int(rng.integers(0, max(t // 2, 1)))
    valid[start : start + max(t // 4, 1)] = False  # a gap of a quarter window
    if valid.ndim == 2 and valid.shape[1] > 1:
        valid[:, 0] = False  # one column never valid
    mask = valid.reshape(t, *valid.shape[1:], *[1] * (stream.values.ndim - valid.ndim))
    return replace(stream, values=torch.where(mask, stream.values, 0.0), valid=valid)


def _moved(shadow: DeviceShadow, out: StreamTensor) -> StreamTensor:
    """A sample's stream as the model moved it, placed on the shadow device."""
    offsets = out.unit_time_offset_s
    return StreamTensor(
        shadow.moved(out.values), shadow.moved(out.valid), shadow.moved(out.times),
        out.period_s, None if offsets is None else shadow.moved(offsets), out.valid_host,
        out.times_host,
    )  # fmt: skip


def _forward_in_shadow(model, batch, tasks, monkeypatch) -> DeviceShadow:
    host = [t for s in batch for st in s.streams.values()
            for t in (st.values, st.valid, st.times, st.unit_time_offset_s) if t is not None]  # fmt: skip
    shadow = DeviceShadow(host=host, device=[*model.parameters(), *model.buffers()])
    to = model_module._to  # what the model does, then the copy it would be on a GPU

    monkeypatch.setattr(model_module, "_to", lambda s, d: _moved(shadow, to(s, d)))
    with shadow:
        out = model(batch, tasks, np.random.default_rng(3))
    assert out.targets and torch.isfinite(out.loss)
    return shadow


@pytest.mark.parametrize("gaps", [False, True], ids=["complete", "gaps"])
@pytest.mark.parametrize("stimulus_path", [True, False], ids=["stimulus-path", "tubelets"])
def test_forward_makes_no_device_synchronisation(
    tiny_data: Path, monkeypatch: pytest.MonkeyPatch, stimulus_path: bool, gaps: bool
) -> None:
    torch.manual_seed(0)
    model = build_model(
        default_model_config("tiny", frame_size=(18, 32), stimulus_path=stimulus_path),
        open_dataset(tiny_data),
    )
    batch, tasks = _batch(tiny_data, model, gaps)
    model(batch, tasks, np.random.default_rng(3))  # caches filled on the first call
    shadow = _forward_in_shadow(model, batch, tasks, monkeypatch)
    assert not shadow.events, "synchronising operations:\n" + "\n".join(map(str, shadow.events))


@pytest.fixture(scope="module")
def image_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    sim = SimulationConfig.tiny().model_copy(update={"stimulus": "image"})
    return simulate_to_disk(tmp_path_factory.mktemp("images") / "data", sim, progress=False)


@pytest.mark.parametrize("gaps", [False, True], ids=["complete", "gaps"])
def test_flashed_images_make_no_device_synchronisation(
    image_data: Path, monkeypatch: pytest.MonkeyPatch, gaps: bool
) -> None:
    """``image_core`` lays a window's presentations onto its step grid from the onsets' host
    copy (``StreamTensor.times_host``)."""
    data = default_model_config("tiny", frame_size=(18, 32)).model_dump()
    data["modalities"]["image"] = {**data["modalities"].pop("movie"), "type": "image_core",
                                   "step_s": 0.1}  # fmt: skip
    torch.manual_seed(0)
    model = build_model(ModelConfig.model_validate(data), open_dataset(image_data))
    batch, tasks = _batch(image_data, model, gaps)
    model(batch, tasks, np.random.default_rng(3))
    shadow = _forward_in_shadow(model, batch, tasks, monkeypatch)
    assert not shadow.events, "synchronising operations:\n" + "\n".join(map(str, shadow.events))


def test_a_training_step_waits_for_the_device_only_after_queueing_the_backward(
    tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The step reads its loss (and the gradient norm) once the backward pass is queued: on a GPU
    the host does not wait for the forward pass before it launches the backward."""
    sessions = open_dataset(tiny_data)
    torch.manual_seed(0)
    model = build_model(default_model_config("tiny", frame_size=(18, 32)), sessions)
    training = TrainingConfig(steps=4, batch_size=4, warmup_steps=1, eval_every=1000,
                              device="cpu", num_workers=1, prefetch=1)  # fmt: skip
    trainer = Trainer(model, sessions, training, window_s=1.0, progress=False)
    trainer.train_step()  # caches and optimizer state made on the first step
    shadow = DeviceShadow(device=[*model.parameters(), *model.buffers()])
    to = model_module._to
    monkeypatch.setattr(model_module, "_to", lambda s, d: _moved(shadow, to(s, d)))
    with shadow:
        loss = trainer.train_step()
    kinds = [kind for kind, _, _ in shadow.events]
    assert "backward" in kinds and torch.isfinite(torch.tensor(loss))
    before = shadow.events[: kinds.index("backward")]
    assert not before, "synchronising before the backward:\n" + "\n".join(map(str, before))


def test_gaps_drop_the_same_tokens_as_reading_the_device(
    tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens chosen from the host's copy of the validity are those the device copy gives: the
    same loss with and without ``valid_host`` (the encoders then read ``valid`` itself)."""
    torch.manual_seed(0)
    model = build_model(default_model_config("tiny", frame_size=(18, 32)), open_dataset(tiny_data))
    model.eval()
    batch, tasks = _batch(tiny_data, model, gaps=True)
    with_host = model(batch, tasks, np.random.default_rng(3)).loss
    to = model_module._to
    monkeypatch.setattr(model_module, "_to", lambda s, d: replace(to(s, d), valid_host=None))
    without = model(batch, tasks, np.random.default_rng(3)).loss
    assert torch.equal(with_host, without)


def test_the_shadow_sees_each_kind_of_synchronisation() -> None:
    """The check can fail: each synchronising operation it looks for is recorded."""
    weight = torch.ones(4)
    host = torch.arange(4.0)
    with DeviceShadow(device=[weight]) as shadow:
        x = weight * 2
        bool(x.any())
        x[x > 1]
        host.to("cpu")
        torch.tensor([1, 2], device="cpu")
        x + torch.arange(4.0)
    kinds = [kind for kind, _, _ in shadow.events]
    assert kinds == ["read", "boolean index", "blocking copy", "blocking copy",
                     "host tensor used with device tensors"]  # fmt: skip
    with DeviceShadow(device=[weight]) as shadow:
        y = weight * 2
        take_rows(y, np.array([True, False, True, True]))
        y.index_select(0, to_device(np.array([0, 2]), "cpu"))
        host.to("cpu", non_blocking=True)
    assert shadow.events == []


def test_device_helpers() -> None:
    x = torch.arange(8.0).view(4, 2)
    keep = np.array([False, True, False, True])
    assert torch.equal(take_rows(x, keep), x[torch.from_numpy(keep)])
    assert take_rows(x, np.ones(4, bool)) is x
    assert torch.equal(index_on(keep, "cpu"), torch.tensor([1, 3]))
    assert to_device([1.5, 2.0], "cpu", torch.float32).dtype == torch.float32
    with pytest.raises(ValueError, match="one per row"):
        take_rows(x, keep[:3])


def test_stream_refuses_a_host_validity_of_another_shape() -> None:
    valid = torch.ones(5, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"valid_host has shape \(5,\) but valid has \(5, 2\)"):
        StreamTensor(torch.zeros(5, 2), valid, torch.zeros(5), 0.1, valid_host=np.ones(5, bool))
    with pytest.raises(ValueError, match=r"times_host has shape \(4,\) but times has \(5,\)"):
        StreamTensor(torch.zeros(5, 2), valid, torch.zeros(5), 0.1, times_host=np.zeros(4))
    stream = StreamTensor(torch.zeros(5, 2), valid, torch.arange(5.0), 0.1)
    assert stream.host_valid().shape == (5, 2) and stream.host_times().tolist() == [0, 1, 2, 3, 4]
    kept = replace(stream, valid_host=stream.host_valid())
    with pytest.raises(ValueError, match="valid_host differs from valid; when deriving"):
        replace(kept, valid=torch.zeros(5, 2, dtype=torch.bool))  # a stale host copy
    assert not replace(kept, valid=~valid, valid_host=None).host_valid().any()
    view = StreamTensor(stream.values[1:3], valid[1:3], stream.times[1:3], 0.1,
                        valid_host=kept.valid_host[1:3], times_host=stream.host_times()[1:3])  # fmt: skip
    copy = replace(view, valid_host=view.valid_host.copy())  # equal, not a view: compared
    assert view.host_valid().shape == copy.host_valid().shape == (2, 2)
