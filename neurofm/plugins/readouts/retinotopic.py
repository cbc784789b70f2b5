"""Retinotopic readout: each neuron reads the stimulus at its own place on the screen.

Two paths meet in a neuron's prediction (docs/concepts.md, "Two paths into a neuron's
prediction"):

- **stimulus path**: the positioned features of the sample's stimulus encoders (a
  :class:`~neurofm.FeatureMap` ``[T, C, H, W]`` per stream) are read with per-neuron weights over
  the map: ``softmax(prior_n + l_n)``, where the prior is a Gaussian log-window at the neuron's
  screen position ``mu_n`` with spread ``sigma_n`` and ``l_n`` free per-neuron logits on a
  ``mask_height x mask_width`` grid (zero at start, interpolated to the map's size), so the read is
  an interpolation that stays differentiable in ``mu`` and ``sigma`` and every place of the
  screen gets gradient. The position is ``mu_n = map_scale * M_s [x_n, y_n, 1] + offset_scale *
  delta_n`` where ``(x_n, y_n)`` are the neuron's cortical coordinates (centred per session,
  divided by ``position_scale_um``), ``M_s`` a learned 2x3 map and ``delta_n`` a learned
  per-neuron offset; without cortical coordinates the position is learned freely (``mu_n =
  delta_n``). With ``map_sharing="animal"``, sessions of one animal (``SessionUnits.animal_id``)
  share the map's linear part (scale, rotation, shear: one retinotopy per animal, learned from
  all its sessions' neurons) and each keeps its own translation (its field of view). The eye
  position (``eye_stream``) moves the whole feature map of a session (a learned linear shifter:
  every receptive field moves with the eye alike). Per-neuron feature weights give the drive
  ``d_n(t) = w_n . F_n(t) + b_n``, where ``F_n`` is the feature map pooled over the neuron's
  window (with ``squared_features``, plus ``v_n . E_n(t)``, ``E_n`` the square of each channel
  pooled alike: local energy, a phase-invariant, complex-cell-like read); its rate
  ``softplus(d)`` is low-passed by a per-neuron exponential filter (calcium indicator decay;
  learned time constant, weights summing to 1) and
  read at each query time (the last feature step at or before it); where the session records
  per-neuron sample times (``units/time_offset_s``) at each neuron's own time ``t_q +
  offset_n`` (``unit_read_times``): at slow imaging rates a frame lasts several feature steps.
- **context path**: the backbone output ``h`` at the query time gives an additive term and a
  multiplicative gain per neuron (behavioural state, population context) through the neuron's
  identity embedding: ``[c_n, g_n] = <U h, e_n> / sqrt(d)``.

    raw_n(t) = bias_n + c_n(t) + exp(g_n(t)) * a_n * filtered_rate_n(t)

With ``behaviour_gain_streams`` the rate is multiplied, before the filter, by a factorised
behavioural gain ``exp(sum_s v_ns phi_s(x_s(t)))`` read from those streams at the feature map's
times (``StimulusView.behaviour``): each stream's effect on a neuron has a weight of its own,
where the context path's gain mixes every input. Where a stream is not known (hidden by the task,
or past its last visible sample, as in the causal tasks) it contributes no gain.

A sample without a visible stimulus uses ``bias_n + <W h, e_n> / sqrt(d)``, so every task works.
``W`` (``context``) and ``U`` (``modulation``) are two projections of the same backbone output:
alone, the context must predict the response itself (from the population, the past); beside the
stimulus drive it modulates it. With one projection for both, the tasks without the stimulus
(forecasting, population, decoding) pulled the stimulus tasks' gain and offset towards their own
use (on the demo, stimulus+behaviour -> responses gained 0.03 of the noise ceiling with the
second projection; BENCHMARKS.md, "The demo"). The identity
``e_n`` (input side and context path) is a linear map of Fourier features of the position
``mu_n`` and of ``w_n`` plus a learned residual. While the identity map trains (training from
scratch), it reads the position without its gradient, so the context path cannot move where a
neuron reads the screen (when it could, every task pulled the positions, and through the
per-session map every neuron's, to suit the context: stimulus alone -> responses was 0.03 lower,
BENCHMARKS.md, "In-silico experiments"). When the map is frozen (fine-tuning, where only new
neurons' parameters train) it reads the position with its gradient: a new session's position and
identity then adapt together (without it, fine-tuning a held-out animal diverged). The feature
weights are a shared vector plus a per-neuron residual. A session added later (fine-tuning,
zero-shot) starts with residuals and offsets at zero and the mean of the known sessions' maps
``M`` (with ``map_sharing="animal"``, a known animal's session reads with its animal's map):
its neurons are predicted from their cortical coordinates alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from neurofm.core.config import PluginConfig
from neurofm.core.devices import to_device
from neurofm.core.interfaces import ReadoutQuery, SessionUnits, StimulusReadout, StimulusView

__all__ = ["RetinotopicConfig", "RetinotopicReadout"]


class RetinotopicConfig(PluginConfig):
    """Positions, spread, filter and identity of the retinotopic readout.

    ``init_sigma``: starting spread in map units (the screen is 2 wide); the spread never falls
    below half a cell of the feature map, where the read-out place would get no gradient. ``position_scale_um``:
    cortical coordinates are centred per session and divided by it. ``offset_scale``: per-neuron
    offsets enter as ``offset_scale * delta`` where cortical coordinates are known (the learned map
    carries the retinotopy; offsets refine it). ``eye_stream``: stream whose first two channels
    are the eye position that shifts the positions (None: no shifter). ``map_scale``: the map's
    parameters enter multiplied by it, so under one learning rate the shared map learns faster
    than the per-neuron parameters (on synthetic features, 400 steps: positions recovered at r
    0.96 -> 0.997 with 5 instead of 1; on simulated V1, 1500 steps, RF centres at r 0.89 / 0.86
    with 5 and 0.90 / 0.91 with 25, BENCHMARKS.md). ``mask_height`` / ``mask_width``: grid of the free logits
    (best: the feature map's size). ``filter_s``: length of the
    exponential filter on the rate (0: none); ``init_tau_s``: its starting time constant.
    ``position_frequencies``: Fourier features of the screen position in the identity embedding.
    ``logit_penalty`` / ``feature_l1``: weights of the training penalties (:meth:`penalty`) on
    the free logits (sum of squares per neuron) and on the feature weights (L1 per neuron).
    ``feature_l1`` is 0.005 by default: each neuron reads few of the core's channels, which
    raised stimulus+behaviour -> responses on the quality benchmark's small data by 0.016-0.018
    of the noise ceiling (two training seeds; BENCHMARKS.md, "Quality vs baselines"); 0.03 is
    far too strong there (0.53 of the ceiling against 0.70).
    ``stimulus_lr_scale``: the learning rate of the stimulus path's parameters (shifters,
    windows, feature weights, drive, filter, amplitude) as a multiple of the training learning
    rate (:meth:`learning_rate_scales`); the positions (maps, offsets) and spreads, the
    identities, biases and the two context projections train at 1. ``squared_features``: each
    neuron also weighs the square of every feature channel, pooled over its window (local
    energy, which phase-invariant complex cells respond to). ``map_sharing``: ``"session"``:
    one map per session; ``"animal"``: sessions with the same ``animal_id`` and cortical
    coordinates share the linear part of their map (each keeps its translation), and a session
    of a new animal starts its animal's map from the known sessions' mean. Both are off by
    default: together they raised ``benchmarks/stimulus.py`` (r 0.490 -> 0.502, 4 seeds) but
    not the demo's or the quality benchmark's stimulus+behaviour prediction (BENCHMARKS.md,
    "The stimulus path"). ``behaviour_gain_streams``: streams (e.g. ``["running", "pupil"]``)
    whose first channel gives each neuron a factorised gain on its stimulus rate, ``exp(sum_s
    v_ns phi_s(x_s(t)))``, applied before the low-pass filter as a gain on firing is:
    ``phi_s`` a nonlinearity of stream ``s`` shared by every neuron (a sum of
    ``behaviour_gain_basis`` tanh units), ``v_ns`` a per-neuron weight (0 at start). Beside the
    context path's gain, which can use any stream and the population, it gives each stream's
    effect a term of its own. Off by default: on simulated V1 it makes the running gain read in
    silico follow the simulator's more closely (r 0.50-0.56 -> 0.66-0.77, the preferred
    orientation unchanged) and may cost forecasting 0.01, not yet measured on every benchmark
    (BENCHMARKS.md, "In-silico experiments").
    """

    type: Literal["retinotopic"] = "retinotopic"
    init_sigma: float = Field(0.15, gt=0)
    position_scale_um: float = Field(500.0, gt=0)
    offset_scale: float = Field(0.1, gt=0)
    eye_stream: str | None = "gaze"
    filter_s: float = Field(2.0, ge=0)
    init_tau_s: float = Field(0.7, gt=0)
    position_frequencies: int = Field(4, ge=1)
    map_scale: float = Field(25.0, gt=0)
    mask_height: int = Field(9, ge=1)
    mask_width: int = Field(16, ge=1)
    logit_penalty: float = Field(0.0, ge=0)
    feature_l1: float = Field(0.005, ge=0)
    stimulus_lr_scale: float = Field(2.0, gt=0)
    squared_features: bool = False
    map_sharing: Literal["session", "animal"] = "session"
    behaviour_gain_streams: list[str] = Field(default_factory=list)
    behaviour_gain_basis: int = Field(8, ge=1)


class RetinotopicReadout(StimulusReadout):
    """Per animal ``a`` (``map_sharing="animal"``): the map's linear part ``A_a [2, 2]``; per
    session ``s``: map ``M_s [2, 3]`` (its linear part unused where the animal's serves),
    shifter ``S_s [2, 2]``; per neuron ``n``: offset ``delta_n [2]``, log-spread ``[2]``, free
    logits ``[mask_height, mask_width]``, feature-weight residual ``[C]`` (``[2 C]`` with
    ``squared_features``), drive bias, log time constant, amplitude ``a_n [p]``, bias ``[p]``,
    identity residual ``[d]``.

    Shape: ``project_stimulus(h [Q, d], session, units [K], times [Q] or [Q, K], views) ->
    [Q, K, p]`` (times ``[Q, K]``: each neuron's own read times);
    ``unit_embeddings(session, units [K]) -> [K, d]``; ``screen_positions(session) -> [N, 2]``.
    """

    Config = RetinotopicConfig
    unit_read_times = True

    def build_shared(self) -> None:
        config, d_model, p = self.config, self.d_model, self.params_per_unit
        self.eye_stream = config.eye_stream
        self.behaviour_streams = tuple(config.behaviour_gain_streams)
        n_streams, basis = len(self.behaviour_streams), config.behaviour_gain_basis
        if n_streams:  # phi_s(x) = sum_j out_sj tanh(in_sj x + shift_sj), one per stream
            self.gain_in = nn.Parameter(torch.randn(n_streams, basis))
            self.gain_shift = nn.Parameter(torch.randn(n_streams, basis))
            self.gain_out = nn.Parameter(torch.randn(n_streams, basis) / basis**0.5)
        # the feature weights read every channel and, with squared_features, its square too
        c = self.read_channels = self.feature_channels * (2 if config.squared_features else 1)
        self.shared_weights = nn.Parameter(torch.zeros(c))
        self.identity = nn.Linear(4 * config.position_frequencies + c, d_model)
        # the context path: alone where no stimulus is read; beside the stimulus drive, a
        # projection of its own gives the additive term and the log-gain (see the module doc)
        self.context = nn.Linear(d_model, d_model * p)
        self.modulation = nn.Linear(d_model, d_model * (p + 1))
        with torch.no_grad():  # the gain starts at exp(0) = 1
            self.modulation.weight[d_model * p :].zero_()
            self.modulation.bias[d_model * p :].zero_()
        self.register_load_state_dict_pre_hook(_one_context_projection)
        names = ("retinotopy", "animal_map", "shifter", "delta", "log_sigma", "logits", "weights",
                 "drive_bias", "log_tau", "amplitude", "bias", "residual",
                 "behaviour_gain")  # fmt: skip
        for name in names:
            setattr(self, name, nn.ParameterDict())
        self._located: dict[str, bool] = {}
        self._animal: dict[str, str | None] = {}  # session key -> key of its animal's map
        self.register_load_state_dict_pre_hook(_unsquared_feature_weights)

    # -- sessions -------------------------------------------------------------------------------
    def add_session(self, key: str, units: SessionUnits) -> None:
        cfg, device = self.config, self.shared_weights.device
        known = [self.parameter_key(sid) for sid in self.known_sessions()]  # before this call
        first = not known  # no session before this call: those given to the constructor
        known_maps = [self._map(k).detach() for k in known]
        n, p = units.count, self.params_per_unit
        xy = _cortical_xy(units, cfg.position_scale_um)
        located = xy is not None
        self._located[key] = located
        xy_t = torch.zeros(n, 2) if xy is None else torch.from_numpy(xy)
        self.register_buffer(f"xy_{key}", xy_t.to(device), persistent=False)
        gen = torch.Generator().manual_seed(len(self.delta) + 1)
        start_map = torch.stack(known_maps).mean(0) if known_maps else torch.zeros(2, 3)
        self.retinotopy[key] = nn.Parameter(start_map.clone().to(device))
        animal = units.animal_id if located and cfg.map_sharing == "animal" else None
        self._animal[key] = None if animal is None else self.parameter_key(animal)
        if animal is not None and self._animal[key] not in self.animal_map:
            self.animal_map[self._animal[key]] = nn.Parameter(start_map[:, :2].clone().to(device))
        self.shifter[key] = nn.Parameter(torch.zeros(2, 2, device=device))
        delta = torch.zeros(n, 2)
        if not located and first:  # free positions: spread them over the screen's centre
            delta = torch.rand(n, 2, generator=gen) - 0.5
        self.delta[key] = nn.Parameter(delta.to(device))
        self.log_sigma[key] = nn.Parameter(
            torch.full((n, 2), math.log(cfg.init_sigma), device=device)
        )
        self.logits[key] = nn.Parameter(
            torch.zeros(n, cfg.mask_height, cfg.mask_width, device=device)
        )
        weights = torch.zeros(n, self.read_channels)
        if first:  # distinct starting features; added sessions start from the shared ones
            c = self.feature_channels  # (the squares' weights start at 0)
            weights[:, :c] = torch.randn(n, c, generator=gen) / c**0.5
        self.weights[key] = nn.Parameter(weights.to(device))
        self.drive_bias[key] = nn.Parameter(torch.zeros(n, device=device))
        self.log_tau[key] = nn.Parameter(torch.full((n,), math.log(cfg.init_tau_s), device=device))
        amplitude = torch.zeros(n, p)
        amplitude[:, 0] = 1.0
        self.amplitude[key] = nn.Parameter(amplitude.to(device))
        self.bias[key] = nn.Parameter(torch.zeros(n, p, device=device))
        self.residual[key] = nn.Parameter(torch.zeros(n, self.d_model, device=device))
        if self.behaviour_streams:
            self.behaviour_gain[key] = nn.Parameter(
                torch.zeros(n, len(self.behaviour_streams), device=device)
            )

    def learning_rate_scales(self) -> dict[str, float]:
        scale = self.config.stimulus_lr_scale
        return {"shared_weights": scale, **{f"{name}.": scale for name in _STIMULUS_PARAMETERS}}

    def penalty(self) -> Tensor | None:
        """``logit_penalty`` times the sum of squared free logits of a neuron (windows stay close
        to their Gaussian prior unless the data say otherwise) plus ``feature_l1`` times the sum
        of a neuron's absolute feature weights (each neuron reads few core channels), both
        averaged over every neuron of every session (so a session added by fine-tuning gets its
        share of the weight). None when both weights are 0."""
        cfg, terms = self.config, []
        n = sum(p.shape[0] for p in self.logits.values())
        if n == 0:
            return None
        if cfg.logit_penalty > 0:
            squares = sum(p.pow(2).sum() for p in self.logits.values())
            terms.append(cfg.logit_penalty * squares / n)
        if cfg.feature_l1 > 0:
            l1 = sum((self.shared_weights + w).abs().sum() for w in self.weights.values())
            terms.append(cfg.feature_l1 * l1 / n)
        return torch.stack(terms).sum() if terms else None

    # -- positions ------------------------------------------------------------------------------
    def _mu(self, key: str, units: Tensor) -> Tensor:
        delta = self.delta[key][units]
        if not self._located[key]:
            return delta
        xy = getattr(self, f"xy_{key}")[units]
        m = self._map(key)
        cfg = self.config
        return (xy @ m[:, :2].T + m[:, 2]) * cfg.map_scale + cfg.offset_scale * delta

    def _map(self, key: str) -> Tensor:
        """The map ``[2, 3]`` of session ``key``: its animal's linear part where sessions share
        it (``map_sharing="animal"``), the session's own otherwise; the session's translation."""
        m, animal = self.retinotopy[key], self._animal[key]
        if animal is None:
            return m
        return torch.cat([self.animal_map[animal], m[:, 2:]], 1)

    @torch.no_grad()
    def screen_positions(self, session_id: str) -> Tensor:
        """Where each neuron reads the screen at zero eye position: the centre of mass ``[N, 2]``
        of its read-out weights (x right, y down; the screen is ``[-1, 1]^2``)."""
        key = self.checked_key(session_id)
        cfg = self.config
        units = torch.arange(self.delta[key].shape[0], device=self.delta[key].device)
        rows = _Rows(self, [(session_id, units)])
        masks = self._windows(rows, cfg.mask_height, cfg.mask_width)
        masks = masks.view(-1, cfg.mask_height, cfg.mask_width)
        x = (masks.sum(1) * _cell_centres(cfg.mask_width, masks)).sum(-1)
        y = (masks.sum(2) * _cell_centres(cfg.mask_height, masks)).sum(-1)
        return torch.stack([x, y], -1)

    def _features(self, key: str, units: Tensor) -> Tensor:
        return self.shared_weights + self.weights[key][units]  # [K, C]

    def unit_embeddings(self, session_id: str, units: Tensor) -> Tensor:
        return self.unit_embeddings_batch([(session_id, units)])[0]

    def unit_embeddings_batch(self, requests: Sequence[tuple[str, Tensor]]) -> list[Tensor]:
        rows = _Rows(self, requests)
        return rows.split(self._identities(rows))

    def _identities(self, rows: _Rows) -> Tensor:
        """The identity ``e_n [N, d]`` of every neuron of ``rows``."""
        freqs = 2.0 ** torch.arange(self.config.position_frequencies, device=rows.device)
        mu = rows.get("mu")
        if self.identity.weight.requires_grad:  # training the identity map: see the module doc
            mu = mu.detach()
        angles = mu[..., None] * freqs * (math.pi / 2)  # [N, 2, F]
        fourier = torch.cat([angles.sin(), angles.cos()], -1).flatten(1)
        ident = self.identity(torch.cat([fourier, rows.get("features")], -1))
        return ident + rows.get("residual")

    # -- predictions ----------------------------------------------------------------------------
    def project(self, h: Tensor, session_id: str, units: Tensor) -> Tensor:
        return self.project_batch([ReadoutQuery(h, session_id, units)])[0]

    def project_batch(self, queries: Sequence[ReadoutQuery]) -> list[Tensor]:
        return self.project_stimulus_batch(
            [ReadoutQuery(q.h, q.session_id, q.units, q.h.new_zeros(q.h.shape[0])) for q in queries]
        )

    def project_stimulus(
        self,
        h: Tensor,
        session_id: str,
        units: Tensor,
        times: Tensor,
        stimulus: Sequence[StimulusView],
    ) -> Tensor:
        return self.project_stimulus_batch([ReadoutQuery(h, session_id, units, times, stimulus)])[0]

    def project_stimulus_batch(self, queries: Sequence[ReadoutQuery]) -> list[Tensor]:
        """Every query at once: the neurons' parameters gathered once per session, each of the
        two context projections as one product over its queries (padded to the batch's most
        queries and units), and the stimulus path once per group of queries whose views have the
        same shapes."""
        if not queries:
            return []
        p = self.params_per_unit
        rows = _Rows(self, [(q.session_id, q.units) for q in queries])
        h = nn.utils.rnn.pad_sequence([q.h for q in queries], batch_first=True)  # [B, Q, d]
        emb = rows.padded(self._identities(rows))  # [B, K, d]
        reads = [bool(q.stimulus) and rows.counts[i] > 0 and q.h.shape[0] > 0
                 for i, q in enumerate(queries)]  # fmt: skip
        reading = [i for i, r in enumerate(reads) if r]
        alone = [i for i, r in enumerate(reads) if not r]
        terms = None  # [B, Q, K, p]
        if alone:
            terms = _scatter(terms, alone, len(queries), self._context_terms(self.context, h, emb,
                                                                             alone, p))  # fmt: skip
        if reading:
            mod = self._context_terms(self.modulation, h, emb, reading, p + 1)  # [R, Q, K, p + 1]
            rate = self._rates(rows, queries, reading, h.shape[1])  # [R, Q, K]
            gain = mod[..., p].clamp(max=5.0).exp()
            amplitude = _take(rows.get_padded("amplitude"), reading, len(queries))[:, None]
            driven = mod[..., :p] + (gain * rate)[..., None] * amplitude
            terms = _scatter(terms, reading, len(queries), driven)
        raw = rows.get_padded("bias")[:, None] + terms
        return [raw[i, : q.h.shape[0], : rows.counts[i]] for i, q in enumerate(queries)]

    def _context_terms(
        self, projection: nn.Linear, h: Tensor, emb: Tensor, members: list[int], j: int
    ) -> Tensor:
        """``<projection(h), e_n> / sqrt(d)`` for the queries ``members``: ``[M, Q, K, j]``."""
        d = self.d_model
        proj = projection(_take(h, members, h.shape[0])).unflatten(-1, (j, d))  # [M, Q, j, d]
        return torch.einsum("bqjd,bkd->bqkj", proj, _take(emb, members, emb.shape[0])) / d**0.5

    def _rates(
        self, rows: _Rows, queries: Sequence[ReadoutQuery], reading: list[int], n_q: int
    ) -> Tensor:
        """The low-passed stimulus rate ``[R, n_q, K]`` of the queries ``reading``, every view
        summed; the views of queries with the same shapes are read in one computation."""
        rate = None
        groups: dict[tuple, list[int]] = {}
        for i in reading:
            groups.setdefault(_signature(queries[i].stimulus), []).append(i)
        position = {i: r for r, i in enumerate(reading)}
        for members in groups.values():
            part = sum(
                self._filtered_rate(rows, members, [queries[i] for i in members], j, n_q)
                for j in range(len(queries[members[0]].stimulus))
            )  # [G, n_q, K]
            rate = _scatter(rate, [position[i] for i in members], len(reading), part)
        return rate

    def _windows(self, rows: _Rows, height: int, width: int) -> Tensor:
        """Each neuron's read-out weights ``[N, height * width]`` over a ``height x width`` grid of
        the screen (softmax of its Gaussian prior plus its free logits; they sum to 1)."""
        cfg = self.config
        mu = rows.get("mu")  # [N, 2]
        # at least half a cell: a narrower window falls inside one cell, where its position
        # gets no gradient and the read-out place stays stuck on the cell's centre
        cell = mu.new_tensor([1.0 / width, 1.0 / height])
        sigma = torch.maximum(rows.get("log_sigma").exp(), cell)  # [N, 2]
        gx = _cell_centres(width, mu)
        gy = _cell_centres(height, mu)
        zx = (gx[None, :] - mu[:, :1]) / sigma[:, :1]  # [N, W]
        zy = (gy[None, :] - mu[:, 1:]) / sigma[:, 1:]  # [N, H]
        prior = -0.5 * (zy[:, :, None] ** 2 + zx[:, None, :] ** 2)  # [N, H, W]
        free = rows.get("logits")  # [N, mask_h, mask_w]
        if (height, width) != (cfg.mask_height, cfg.mask_width):
            free = F.interpolate(free[:, None], (height, width), mode="bilinear")[:, 0]
        return torch.softmax((prior + free).flatten(1), dim=-1)

    def _behaviour_gain(self, rows: _Rows, index: Tensor, views: list[StimulusView]) -> Tensor:
        """``exp(sum_s v_ns phi_s(x_s(t)))`` ``[G, T, K]``: each neuron's factorised behavioural
        gain at the feature map's times (``behaviour_gain_streams``)."""
        x = torch.stack([v.behaviour for v in views])  # [G, T, S]
        known = torch.isfinite(x)  # a stream not known at a time contributes no gain there
        x = torch.where(known, x, torch.zeros_like(x))
        phi = (torch.tanh(x[..., None] * self.gain_in + self.gain_shift) * self.gain_out).sum(-1)
        phi = torch.where(known, phi, torch.zeros_like(phi))
        weights = rows.get_padded("behaviour_gain")[index]  # [G, K, S]
        return torch.einsum("gts,gks->gtk", phi, weights).clamp(max=5.0).exp()

    def _filtered_rate(
        self, rows: _Rows, members: list[int], queries: list[ReadoutQuery], view: int, n_q: int
    ) -> Tensor:
        """Low-passed rate ``[G, n_q, K]`` of the stimulus drive from view ``view`` of the
        ``G`` queries ``members`` (whose views have the same shapes), read at each query's times
        ``[Q]`` or each neuron's own read times ``[Q, K]``; padded to ``n_q`` queries and the
        batch's most units ``K``."""
        views = [q.stimulus[view] for q in queries]
        values = torch.stack([v.features.values for v in views])  # [G, T, C, H, W]
        g, t, c, height, width = values.shape
        k = rows.width
        if t == 0:
            return values.new_zeros(g, n_q, k)
        index = to_device(members, values.device, torch.int64)
        if views[0].eye is not None:  # the eye moves every receptive field of a session alike
            eye = torch.stack([v.eye[:, :2] for v in views])  # [G, T, 2]
            shifter = torch.stack([self.shifter[rows.keys[i]] for i in members])  # [G, 2, 2]
            shift = torch.einsum("gte,gse->gts", eye, shifter)  # eye @ S.T per query
            gx, gy = _cell_centres(width, values), _cell_centres(height, values)
            base = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1)  # [H, W, 2]
            grid = base[None, None] + shift[:, :, None, None, :]  # [G, T, H, W, 2]
            values = F.grid_sample(
                values.flatten(0, 1), grid.flatten(0, 1), align_corners=False
            ).view(g, t, c, height, width)
        if self.config.squared_features:  # window-pooled local energy, as complex cells respond
            values = torch.cat([values, values.square()], 2)
        masks = rows.get_padded((height, width))[index]  # [G, K, H*W]
        pooled = torch.einsum("gtcx,gkx->gtkc", values.flatten(3), masks)  # [G, T, K, C]
        features = rows.get_padded("features")[index]  # [G, K, C]
        drive_bias = rows.get_padded("drive_bias")[index]  # [G, K]
        rate = F.softplus((pooled * features[:, None]).sum(-1) + drive_bias[:, None])  # [G, T, K]
        if self.behaviour_streams and views[0].behaviour is not None:
            rate = rate * self._behaviour_gain(rows, index, views)
        period = views[0].features.period_s
        taps = min(t, round(self.config.filter_s / period)) if period > 0 else 0
        if taps > 1:
            tau = rows.get_padded("log_tau")[index].exp()  # [G, K] (padding: 1 s)
            lags = torch.arange(taps - 1, -1, -1, device=rate.device, dtype=rate.dtype)
            kernel = torch.exp(-lags * period / tau[..., None])  # [G, K, taps], newest last
            kernel = (kernel / kernel.sum(-1, keepdim=True)).reshape(g * k, 1, taps)
            padded = F.pad(rate.transpose(1, 2).reshape(1, g * k, t), (taps - 1, 0))
            rate = F.conv1d(padded, kernel, groups=g * k).view(g, k, t).transpose(1, 2)
        read = rate.new_zeros(g, n_q, k)  # each query's read times per neuron, padded
        for row, (i, q) in enumerate(zip(members, queries, strict=True)):
            times = q.times if q.times.ndim == 2 else q.times[:, None]
            read[row, : times.shape[0], : rows.counts[i]] = times
        starts = torch.stack([v.features.times for v in views])  # [G, T]
        step = torch.searchsorted(starts.contiguous(), read.view(g, -1), right=True) - 1
        step = step.view(g, n_q, k)
        return rate.gather(1, step.clamp(min=0)) * (step >= 0).to(rate.dtype)


# the per-session and per-neuron tables of the stimulus path that train at stimulus_lr_scale
# (learning_rate_scales). The positions and spreads (retinotopy, delta, log_sigma) train at 1:
# at twice the rate one seed in four of the stimulus benchmark lost its receptive-field map
# (BENCHMARKS.md, "The stimulus path").
_STIMULUS_PARAMETERS = ("shifter", "logits", "weights", "drive_bias", "log_tau", "amplitude")


class _Rows:
    """The per-neuron parameters of several ``(session_id, units)`` requests, gathered with one
    index per parameter and session. ``get(name)`` gives them flat ``[N, ...]`` (requests of one
    session together, in order of first appearance); ``padded`` lays a flat tensor out as
    ``[requests, most units, ...]`` (zero rows after a request's units), ``get_padded`` does so
    once per parameter, and ``split`` gives one tensor per request."""

    def __init__(self, readout: RetinotopicReadout, requests: Sequence[tuple[str, Tensor]]) -> None:
        self.readout = readout
        self.keys = [readout.checked_key(sid) for sid, _ in requests]
        self.counts = [int(units.numel()) for _, units in requests]
        self.width = max(self.counts, default=0)
        self.device = readout.shared_weights.device
        members: dict[str, list[int]] = {}
        for i, key in enumerate(self.keys):
            members.setdefault(key, []).append(i)
        self.groups = []  # (key, the session's units of all its requests)
        starts, position = [0] * len(requests), 0
        for key, idx in members.items():
            units = [requests[i][1].to(self.device) for i in idx]
            self.groups.append((key, units[0] if len(units) == 1 else torch.cat(units)))
            for i in idx:
                starts[i], position = position, position + self.counts[i]
        self.starts, self.total = starts, position
        self._cache: dict = {}
        self._layout: Tensor | None = None

    def get(self, name: str) -> Tensor:
        if name not in self._cache:
            r = self.readout
            if name == "mu":
                parts = [r._mu(key, units) for key, units in self.groups]
            elif name == "features":
                parts = [r._features(key, units) for key, units in self.groups]
            else:  # a per-neuron table: residual, bias, amplitude, drive_bias, log_tau, ...
                parts = [getattr(r, name)[key][units] for key, units in self.groups]
            self._cache[name] = parts[0] if len(parts) == 1 else torch.cat(parts)
        return self._cache[name]

    def windows(self, height: int, width: int) -> Tensor:
        if (height, width) not in self._cache:
            self._cache[(height, width)] = self.readout._windows(self, height, width)
        return self._cache[(height, width)]

    def get_padded(self, name: str | tuple[int, int]) -> Tensor:
        """``padded`` of ``get(name)``, or of ``windows(height, width)`` for a ``(height, width)``
        name; computed once however many query groups and views read it."""
        key = ("padded", name)
        if key not in self._cache:
            flat = self.windows(*name) if isinstance(name, tuple) else self.get(name)
            self._cache[key] = self.padded(flat)
        return self._cache[key]

    def padded(self, flat: Tensor) -> Tensor:
        if self._layout is None:
            layout = np.full((len(self.counts), self.width), self.total, dtype=np.int64)
            for i, (start, count) in enumerate(zip(self.starts, self.counts, strict=True)):
                layout[i, :count] = np.arange(start, start + count)
            self._layout = to_device(layout, self.device)
        zero = flat.new_zeros(1, *flat.shape[1:])
        return torch.cat([flat, zero])[self._layout]

    def split(self, flat: Tensor) -> list[Tensor]:
        return [flat[s : s + c] for s, c in zip(self.starts, self.counts, strict=True)]


def _take(x: Tensor, members: list[int], n: int) -> Tensor:
    """Rows ``members`` of ``x`` (``x`` itself when they are all ``n`` rows, in order)."""
    if len(members) == n:
        return x
    return x.index_select(0, to_device(members, x.device, torch.int64))


def _scatter(into: Tensor | None, members: list[int], n: int, part: Tensor) -> Tensor:
    """``part`` (rows for ``members``) placed into ``n`` rows: ``into`` (or zeros) with those rows
    replaced; ``part`` itself when it covers all ``n`` rows."""
    if len(members) == n:
        return part
    if into is None:
        into = part.new_zeros(n, *part.shape[1:])
    return into.index_copy(0, to_device(members, part.device, torch.int64), part)


def _one_context_projection(module, state_dict, prefix, *args) -> None:
    """Weights saved when one context projection served both cases (``context`` with ``d (p +
    1)`` outputs and no ``modulation``) load as that projection in both roles, which gives the
    same predictions."""
    weight, bias = f"{prefix}context.weight", f"{prefix}context.bias"
    if f"{prefix}modulation.weight" in state_dict or weight not in state_dict:
        return
    rows = module.d_model * module.params_per_unit
    if state_dict[weight].shape[0] != rows + module.d_model:
        return
    state_dict[f"{prefix}modulation.weight"] = state_dict[weight]
    state_dict[f"{prefix}modulation.bias"] = state_dict[bias]
    state_dict[weight] = state_dict[weight][:rows]
    state_dict[bias] = state_dict[bias][:rows]


def _unsquared_feature_weights(module, state_dict, prefix, *args) -> None:
    """Feature weights saved without ``squared_features`` (``C`` per neuron, where ``2 C`` are
    now read) load with zero weights on the squares, which gives the same predictions."""
    c = module.feature_channels
    shared = state_dict.get(f"{prefix}shared_weights")
    if module.read_channels == c or shared is None or shared.shape[-1] != c:
        return
    names = [k for k in state_dict if k.startswith(f"{prefix}weights.")]
    for name in [*names, f"{prefix}shared_weights", f"{prefix}identity.weight"]:
        if name in state_dict:
            state_dict[name] = F.pad(state_dict[name], (0, c))


def _signature(views: Sequence[StimulusView]) -> tuple:
    """What must agree for views of several queries to be read in one computation."""
    return tuple(
        (tuple(v.features.values.shape), v.features.period_s, v.eye is None) for v in views
    )


def _cell_centres(size: int, like: Tensor) -> Tensor:
    """Centres ``[size]`` of ``size`` cells tiling ``[-1, 1]`` (``align_corners=False``)."""
    return (torch.arange(size, device=like.device, dtype=like.dtype) * 2 + 1) / size - 1


def _cortical_xy(units: SessionUnits, scale_um: float) -> np.ndarray | None:
    """Cortical (x, y) ``[N, 2]`` centred on the session's mean and divided by ``scale_um``, or
    None when the session has no (finite) positions."""
    if units.position_um is None:
        return None
    xy = np.asarray(units.position_um, np.float64).reshape(units.count, -1)[:, :2]
    if xy.shape[1] < 2 or not np.isfinite(xy).all() or units.count == 0:
        return None
    return ((xy - xy.mean(0)) / scale_um).astype(np.float32)
