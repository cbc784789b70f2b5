"""A trained model as an in-silico preparation: show it stimuli, hold its behaviour, read its neurons.

:class:`ModelProbe` turns contrast frames (or stimulus parameters) into the model's predicted
responses of one session's neurons, through the public model API only: it builds
:class:`~neurofm.WindowSample` windows (a gray lead-in, the stimulus, normalised with the
session's train-tier statistics exactly as :func:`~neurofm.load_window` would), holds every
behaviour stream at a fixed value, asks for the response stream as the target and reads the
head's prediction. Any model whose encoders include a stimulus encoder works, whichever plugins
it is built from; gradients flow to the frames, so receptive fields and most exciting inputs can
be found by gradient.

Example::

    probe = ModelProbe(model, session, hold={"gaze": [0.0, 0.0]})
    frames = torch.zeros(4, probe.n_frames, *probe.frame_shape)  # gray
    responses = probe.responses(frames)  # [4, Q, N]
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor

from neurofm.core.data.session import Session
from neurofm.core.data.windows import WindowSample, normalise_stream
from neurofm.core.interfaces import StreamTensor
from neurofm.core.tokens.tasks import StreamRule, TaskSpec
from neurofm.errors import NeurofmError
from neurofm.insilico.stimuli import Screen

__all__ = ["InsilicoError", "ModelProbe"]


class InsilicoError(NeurofmError, ValueError):
    """A model, session, neuron or stimulus an experiment cannot use (the message says why)."""


class ModelProbe:
    """Predicted responses of one session's neurons to chosen stimuli under fixed behaviour.

    Args:
        model: a trained :class:`~neurofm.NeuroFM` (run in eval mode, its mode restored after each
            call; its parameters are not changed).
        session: the session whose neurons are probed (its streams' sampling rates, train-tier
            statistics and unit table are used; its recorded data is not read).
        screen_width_deg: the screen's horizontal extent in degrees, when known.
        hold: behaviour stream -> raw values (one per channel, the units of the recording) held
            through every window; streams not named are held at their train-tier mean.
        show_behaviour: False shows the model no behaviour at all (the stimulus alone).
        stimulus_stream: the stimulus stream to drive (default: the only stimulus stream the model
            and the session share).
        response_stream: the per-unit stream to read (default: the first one with a head).
        window_s: window length (the training window is the natural choice).
        onset_s: gray lead-in before the stimulus; ``response_delay_s``: responses are averaged
            from ``onset_s + response_delay_s`` to the window's end (:meth:`evoked`).
        batch_size: windows per forward pass.

    Shape: ``responses(frames [B, F, H, W]) -> [B, Q, N]`` (``F = n_frames`` stimulus frames on
    the stimulus stream's clock from ``onset_s``, contrast in ``[-1, 1]``; ``Q`` response times
    ``response_times``); ``evoked(frames) -> [B, N]``. An event-like stimulus stream (flashed
    images, one sample per presentation) gets a gray presentation at 0 and one frame at
    ``onset_s`` (``F = 1``). A parametric stream takes raw parameters ``[B, F, P]`` named by its
    channel names; its lead-in is marked absent.
    """

    def __init__(
        self,
        model,
        session: Session,
        *,
        screen_width_deg: float | None = None,
        hold: Mapping[str, Sequence[float]] | None = None,
        show_behaviour: bool = True,
        stimulus_stream: str | None = None,
        response_stream: str | None = None,
        window_s: float = 2.0,
        onset_s: float = 0.5,
        response_delay_s: float = 0.2,
        batch_size: int = 16,
    ) -> None:
        if not 0 <= onset_s < window_s:
            raise InsilicoError(
                f"onset_s {onset_s} must lie in [0, window_s {window_s}); choose a later window "
                f"end or an earlier onset"
            )
        self.model, self.session = model, session
        self.session_id = session.session_id
        if self.session_id not in model.session_units:
            raise InsilicoError(
                f"session {self.session_id!r} is not in the model's vocabulary "
                f"({sorted(model.session_units)}); fine-tune the model to it first"
            )
        self.window_s, self.onset_s, self.batch_size = window_s, onset_s, batch_size
        self.stimulus_stream = self._pick_stimulus(stimulus_stream)
        self.response_stream = self._pick_response(response_stream)
        self._norm = model.normalization()
        spec = session.stream_spec(self.stimulus_stream)
        self.stimulus_shape = tuple(int(s) for s in spec.data.shape[1:])
        if not 1 <= len(self.stimulus_shape) <= 3:
            raise InsilicoError(
                f"stimulus stream {self.stimulus_stream!r} has samples of shape "
                f"{list(self.stimulus_shape)}; expected [P] parameters, [H, W] frames or "
                f"[H, W, C] frames (channels last)"
            )
        self.parametric = len(self.stimulus_shape) == 1
        self.channel_names = list(spec.channel_names or [])
        if self.parametric and not self.channel_names:
            raise InsilicoError(
                f"stream {self.stimulus_stream!r} of session {self.session_id!r} gives "
                f"{self.stimulus_shape[0]} stimulus parameters without channel names; name them "
                f"when writing the session (StreamInput channel_names, e.g. 'orientation', "
                f"'direction', ...) so stimuli can be given by name"
            )
        self.event_like = bool(spec.event_like)
        self.stimulus_period_s = 1.0 / spec.sampling_rate_hz  # as load_window gives it
        if self.event_like:  # flashed images: a gray presentation, then one at the onset
            if onset_s <= 0:
                raise InsilicoError(
                    f"stream {self.stimulus_stream!r} is event-like (one sample per "
                    f"presentation): onset_s must be positive so a gray presentation precedes "
                    f"the stimulus; got {onset_s}"
                )
            self.stimulus_times = np.array([0.0, onset_s], np.float32)
        else:
            self.stimulus_times = _grid(window_s, self.stimulus_period_s)
        self.shown = self.stimulus_times >= onset_s - 1e-9  # frames after the onset
        self.n_frames = int(self.shown.sum())
        self.frame_times = self.stimulus_times[self.shown] - self.stimulus_times[self.shown][0]
        if not self.parametric:
            h, w = self.stimulus_shape[:2]
            self.screen = Screen(h, w, screen_width_deg)
        else:
            self.screen = Screen(1, 1, screen_width_deg)
        self._gray, self._scale = self._stimulus_affine()
        self._lead = float("nan") if self.parametric else self._gray
        rspec = session.stream_spec(self.response_stream)
        self.response_period_s = 1.0 / rspec.sampling_rate_hz
        self.response_times = _grid(window_s, self.response_period_s)
        self.n_units = int(rspec.data.shape[1])
        self.response_mask = self.response_times >= onset_s + response_delay_s - 1e-9
        if not self.response_mask.any():
            raise InsilicoError(
                f"no response sample falls after onset_s + response_delay_s = "
                f"{onset_s + response_delay_s:g} s in a {window_s:g} s window; shorten the delay"
            )
        self.behaviour = self._behaviour(hold or {}) if show_behaviour else {}
        self._task = self._make_task()
        units = session.units
        self._offsets = None
        if units is not None and units.time_offset_s is not None:
            self._offsets = torch.from_numpy(np.asarray(units.time_offset_s, np.float32))
        self._gray_response: Tensor | None = None

    # -- set-up -----------------------------------------------------------------------------------
    def _pick_stimulus(self, name: str | None) -> str:
        model, session = self.model, self.session
        candidates = [
            n for n in model.stream_names
            if model.encoder(n).role == "stimulus" and n in session.manifest.streams
        ]  # fmt: skip
        if name is not None:
            if name not in candidates:
                raise InsilicoError(
                    f"stream {name!r} is not a stimulus stream that both the model and session "
                    f"{self.session_id!r} have; choose one of {candidates or 'none'}"
                )
            return name
        if not candidates:
            encoders = {n: model.encoder(n).role for n in model.stream_names}
            raise InsilicoError(
                f"the model has no stimulus encoder for a stream of session {self.session_id!r} "
                f"(its encoders and roles: {encoders}); in-silico experiments need a model that "
                f"sees a movie, images or stimulus parameters"
            )
        if len(candidates) > 1:
            raise InsilicoError(
                f"the model reads several stimulus streams {candidates}; name the one to drive "
                f"(stimulus_stream= / --stimulus-stream)"
            )
        return candidates[0]

    def _pick_response(self, name: str | None) -> str:
        model, session = self.model, self.session
        candidates = [
            n for n in model.stream_names
            if model.encoder(n).per_unit and n in model.query_names
            and n in session.manifest.streams
        ]  # fmt: skip
        if name is not None and name not in candidates:
            raise InsilicoError(
                f"stream {name!r} is not a per-unit stream the model predicts for session "
                f"{self.session_id!r}; choose one of {candidates or 'none'}"
            )
        if not candidates:
            raise InsilicoError(
                f"the model predicts no per-unit (neural) stream of session {self.session_id!r}"
            )
        return name or candidates[0]

    def _stats(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        stats = self.session.stream_spec(name).statistics
        mean = np.asarray(stats.mean if stats else [0.0], np.float64)
        std = np.asarray(stats.std if stats else [1.0], np.float64)
        return mean, std

    def _normalise(self, name: str, raw: np.ndarray) -> np.ndarray:
        return normalise_stream(self.session, name, raw, self._norm[name])

    def _stimulus_affine(self) -> tuple[float, float]:
        """``(value at contrast 0, value change per unit contrast)`` in the encoder's normalised
        units: contrast ``c`` becomes ``gray * (1 + c)`` in the recording's units, ``gray`` the
        stream's train-tier mean."""
        if self.parametric:
            return 0.0, 1.0
        mean, std = self._stats(self.stimulus_stream)
        gray = float(mean.mean())
        if not abs(gray) > 1e-3 * float(std.mean()):
            raise InsilicoError(
                f"stimulus stream {self.stimulus_stream!r} has a train-tier mean of {gray:g} "
                f"(std {float(std.mean()):g}): contrast is shown as mean * (1 + c), which needs "
                f"a mean luminance away from 0. Write the stream in luminance units (e.g. "
                f"0-255), not already centred"
            )
        at0 = float(self._normalise(self.stimulus_stream, np.array([gray])).mean())
        at1 = float(self._normalise(self.stimulus_stream, np.array([2 * gray])).mean())
        return at0, at1 - at0

    def _behaviour(
        self, hold: Mapping[str, Sequence[float]], *, only_named: bool = False
    ) -> dict[str, np.ndarray]:
        model, session = self.model, self.session
        names = [
            n for n in model.stream_names
            if model.encoder(n).role == "behaviour" and n in session.manifest.streams
        ]  # fmt: skip
        unknown = sorted(set(hold) - set(names))
        if unknown:
            raise InsilicoError(
                f"cannot hold {unknown}: not behaviour streams of both the model and session "
                f"{self.session_id!r}; behaviour streams: {names or 'none'}"
            )
        out = {}
        for name in names:
            if only_named and name not in hold:
                continue
            spec = session.stream_spec(name)
            channels = int(np.prod(spec.data.shape[1:])) if len(spec.data.shape) > 1 else 1
            mean, _ = self._stats(name)
            raw = np.asarray(hold.get(name, np.broadcast_to(mean, (channels,))), np.float64)
            if raw.shape != (channels,):
                raise InsilicoError(
                    f"hold {name}={list(raw)}: expected {channels} value(s), one per channel "
                    f"{spec.channel_names or ''}"
                )
            out[name] = self._normalise(name, raw).astype(np.float32)
        return out

    def _make_task(self) -> TaskSpec:
        rules = {
            self.stimulus_stream: StreamRule(visible=(0.0, 1.0)),
            self.response_stream: StreamRule(target=(0.0, 1.0)),
        }
        for name in self.behaviour:
            rules[name] = StreamRule(visible=(0.0, 1.0))
        return TaskSpec(name="insilico", rules=rules)

    def held(self, hold: Mapping[str, Sequence[float]]) -> ModelProbe:
        """A copy of this probe with the behaviour streams in ``hold`` held at other raw values
        (the others as they are)."""
        if not self.behaviour:
            raise InsilicoError("this probe shows no behaviour (show_behaviour=False)")
        other = copy.copy(self)
        other.behaviour = {**self.behaviour, **self._behaviour(hold, only_named=True)}
        other._gray_response = None
        return other

    def describe_hold(self) -> dict[str, list[float]]:
        """The raw value each behaviour stream is held at (for the experiment's record)."""
        out = {}
        for name, values in self.behaviour.items():
            mean, std = self._stats(name)
            mode = self._norm[name]
            v = values.astype(np.float64)
            raw = v * std + mean if mode == "zscore" else v * std if mode == "scale" else v
            out[name] = [float(x) for x in np.broadcast_to(raw, values.shape)]
        return out

    # -- predictions ------------------------------------------------------------------------------
    def _window(self, stimulus: Tensor) -> WindowSample:
        """One window (on the CPU; the model moves it); ``stimulus`` ``[n_frames, ...]`` in the
        encoder's normalised units, NaN where absent. The lead-in is the gray screen (pixel
        streams) or absent (parameters)."""
        n_lead = int((~self.shown).sum())
        lead = stimulus.new_full((n_lead, *self.stimulus_shape), self._lead)
        full = torch.cat([lead, stimulus])
        finite = torch.isfinite(full)
        valid = finite if self.parametric else finite.flatten(1).all(1)
        full = torch.where(finite, full, torch.zeros_like(full))
        streams = {
            self.stimulus_stream: StreamTensor(
                full, valid, torch.from_numpy(self.stimulus_times), self.stimulus_period_s
            )
        }
        for name, values in self.behaviour.items():
            period = 1.0 / self.session.stream_spec(name).sampling_rate_hz
            times = _grid(self.window_s, period)
            v = torch.from_numpy(np.broadcast_to(values, (times.size, values.size)).copy())
            streams[name] = StreamTensor(
                v, torch.ones(v.shape, dtype=torch.bool), torch.from_numpy(times), period
            )
        q = self.response_times.size
        streams[self.response_stream] = StreamTensor(
            torch.zeros(q, self.n_units), torch.ones(q, self.n_units, dtype=torch.bool),
            torch.from_numpy(self.response_times), self.response_period_s,
        )  # fmt: skip
        return WindowSample(self.session_id, 0.0, self.window_s, streams, {}, self._offsets)

    def to_stimulus(self, frames: Tensor) -> Tensor:
        """Contrast frames ``[B, F, H, W]`` (or raw parameters ``[B, F, P]``) in the encoder's
        normalised units."""
        if not self.parametric:
            return self._gray + self._scale * frames
        mean, std = (torch.from_numpy(a).to(frames) for a in self._stats(self.stimulus_stream))
        mode = self._norm[self.stimulus_stream]
        return (
            (frames - mean) / std
            if mode == "zscore"
            else frames / std
            if mode == "scale"
            else frames
        )

    def responses(self, frames: Tensor) -> Tensor:
        """Predicted responses ``[B, Q, N]`` (the head's prediction, in the stream's normalised
        units) to ``frames``: contrast ``[B, n_frames, H, W]`` (``[B, n_frames, P]`` parameters
        for a parametric encoder). Differentiable in ``frames``; batches of ``batch_size``."""
        want = (self.n_frames, *self.stimulus_shape)
        if frames.ndim != len(want) + 1 or tuple(frames.shape[1:]) != want:
            raise InsilicoError(
                f"stimulus of shape {tuple(frames.shape)}; expected [B, {', '.join(map(str, want))}]"
                f" ({self.n_frames} frames from the onset on the {self.stimulus_stream!r} clock)"
            )
        device = self.model.device
        out = []
        for start in range(0, frames.shape[0], self.batch_size):
            chunk = self.to_stimulus(frames[start : start + self.batch_size].cpu())
            batch = [self._window(x) for x in chunk]
            with _eval_mode(self.model):
                result = self.model(batch, [self._task] * len(batch), np.random.default_rng(0))
            pred = torch.zeros(len(batch), self.response_times.size, self.n_units, device=device)
            for target in result.targets:
                if target.stream != self.response_stream:
                    continue
                value = self.model.head(target.stream).predict(target.raw)
                index = torch.arange(self.n_units) if target.units is None else target.units
                index = index.to(device)
                rows = _rows(self.response_times, target.times.detach().cpu().numpy()).to(device)
                pred = pred.index_put(
                    (torch.full_like(index, target.sample)[None, :], rows[:, None], index[None]),
                    value.reshape(len(rows), -1),
                )
            out.append(pred)
        return torch.cat(out).to(frames.device)

    def mean_response(self, frames: Tensor) -> Tensor:
        """``[B, N]``: the responses averaged over the response period."""
        mask = torch.from_numpy(self.response_mask).to(frames.device)
        return self.responses(frames)[:, mask].mean(1)

    def gray_response(self) -> Tensor:
        """``[N]``: :meth:`mean_response` to the gray screen (contrast 0), or for a parametric
        stream to no stimulus (every parameter absent, as on a gray screen)."""
        if self._gray_response is None:
            fill = float("nan") if self.parametric else 0.0
            with torch.no_grad():
                gray = torch.full((1, self.n_frames, *self.stimulus_shape), fill)
                self._gray_response = self.mean_response(gray)[0].cpu()
        return self._gray_response

    def evoked(self, frames: Tensor) -> Tensor:
        """``[B, N]``: :meth:`mean_response` minus the response to the gray screen."""
        return self.mean_response(frames) - self.gray_response().to(frames.device)

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """The model in eval mode with its parameters out of autograd (gradients reach only the
        stimulus); both restored afterwards."""
        model = self.model
        was_training = model.training
        flags = [p.requires_grad for p in model.parameters()]
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p, flag in zip(model.parameters(), flags, strict=True):
                p.requires_grad_(flag)
            model.train(was_training)

    def check_units(self, units: Sequence[int] | None) -> np.ndarray:
        """``units`` as column indices ``[K]`` (None: every unit), checked against the session."""
        if units is None:
            return np.arange(self.n_units)
        idx = np.asarray(list(units), np.int64)
        if idx.size == 0:
            raise InsilicoError(
                f"no neurons chosen; pick columns 0-{self.n_units - 1} of {self.response_stream!r}"
            )
        bad = idx[(idx < 0) | (idx >= self.n_units)]
        if bad.size:
            raise InsilicoError(
                f"neurons {bad.tolist()} do not exist: session {self.session_id!r} has "
                f"{self.n_units} neurons in {self.response_stream!r} (columns 0-{self.n_units - 1})"
            )
        return idx


@contextmanager
def _eval_mode(model) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _grid(duration: float, period: float) -> np.ndarray:
    """Sample times ``[n]`` float32 from 0 with ``period`` inside ``[0, duration)``."""
    n = int(np.floor(duration / period + 1e-6))
    return (np.arange(n) * period).astype(np.float32)


def _rows(grid: np.ndarray, times: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.abs(grid[None, :] - times[:, None]).argmin(1))
