"""Per-session parameters sharded over ranks (``training.shard_sessions``).

A model trained on many sessions holds most of its parameters per session (the readout's
per-neuron tables), and each is used only by windows of its own session. Replicated, every rank
keeps every session's parameters, their gradients and their optimizer state. Sharded, each session
belongs to one rank (:func:`assign_sessions`); that rank alone draws its windows, keeps its
parameters and their optimizer state. The other ranks keep the parameter object with no elements
(so names, parameter groups and the optimizer's layout are the same on every rank). The shared
parameters (backbone, encoders, the readout's shared parts, heads) are reduced as without sharding,
by DDP or FSDP2; per-session parameters are left out of both (each has one rank's gradient only).

Which parameters are per-session: every parameter of the model one of whose name's components is
a session's :meth:`~neurofm.core.interfaces.Readout.parameter_key` (the built-in readouts keep them
in ``nn.ParameterDict`` tables keyed so; a plugin that stores its per-session parameters that way is
sharded without code of its own). Buffers are not sharded (the built-ins' per-session buffers are
the neurons' cortical coordinates, a few numbers per neuron).

What makes the sharded run compute what the replicated run computes, given the same windows:

- gradients: the trainer scales the loss by ``world_size / global target count`` for DDP's mean;
  a per-session gradient is not averaged, so it is divided by ``world_size`` instead
  (:meth:`SessionShards.finish_gradients`);
- clipping: the norm is the global one, the shared gradients' norm (the same on every rank) and
  the sum over ranks of the per-session gradients' squared norms (:meth:`SessionShards.clip`);
- checkpoints: :meth:`SessionShards.gather` collects every session's tensors on rank 0, so the
  training state and the final checkpoint hold all sessions, in the layout of an unsharded run
  (loadable by one process); :meth:`SessionShards.localise` empties other ranks' entries again on
  resume (same world size: the assignment is a function of the sessions and the world size).

One difference remains: a plugin penalty computed over a table of every session (the
``retinotopic`` readout's logit and feature penalties average over every neuron) sees only the
rank's own sessions, so its per-neuron weight is that of the rank's neurons, not of all of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from neurofm.core.data.session import Session
from neurofm.core.model.neurofm import NeuroFM
from neurofm.errors import NeurofmError

__all__ = ["SessionShards", "assign_sessions", "session_parameter_names"]


def assign_sessions(loads: Mapping[str, tuple[int, float]], world_size: int) -> dict[str, int]:
    """Session id -> rank, balancing neuron counts (the per-session memory) over ranks.

    ``loads``: session id -> ``(neurons, train seconds)``. Sessions are taken largest first
    (neurons, then train time, then id) and each goes to the rank with the fewest neurons so far
    (ties: the least train time, then the lowest rank). Deterministic: every rank computes the
    same assignment.

    Raises:
        NeurofmError: fewer sessions than ranks (a rank without a session has no windows to draw).
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if len(loads) < world_size:
        raise NeurofmError(
            f"training.shard_sessions needs at least one session per process: {len(loads)} "
            f"session(s) for {world_size} processes. Run with at most {len(loads)} processes, "
            f"or set training.shard_sessions to false"
        )
    order = sorted(loads, key=lambda s: (-loads[s][0], -loads[s][1], s))
    neurons = [0] * world_size
    seconds = [0.0] * world_size
    owner: dict[str, int] = {}
    for session_id in order:
        rank = min(range(world_size), key=lambda r: (neurons[r], seconds[r], r))
        owner[session_id] = rank
        neurons[rank] += loads[session_id][0]
        seconds[rank] += loads[session_id][1]
    return owner


def session_parameter_names(model: NeuroFM) -> dict[str, str]:
    """Name (as ``model.named_parameters()`` gives it) -> session id of every per-session
    parameter: those with a name component equal to a session's parameter key."""
    if model.readout is None:
        return {}
    keys = {model.readout.parameter_key(sid): sid for sid in model.session_units}
    out = {}
    for name, _ in model.named_parameters():
        hits = [keys[part] for part in name.split(".") if part in keys]
        if hits:
            out[name] = hits[-1]
    return out


def _train_seconds(session: Session) -> float:
    return float(sum(iv.end - iv.start for iv in session.intervals("train")))


class SessionShards:
    """Which rank owns which session, and the operations a sharded run needs.

    Args:
        model: the full model (every session's parameters, identical on every rank).
        sessions: the training sessions (train time is the second balancing key).
        rank, world_size: this process's place in the job.
    """

    def __init__(
        self, model: NeuroFM, sessions: Sequence[Session], *, rank: int, world_size: int
    ) -> None:
        train = {s.session_id: _train_seconds(s) for s in sessions}
        unknown = sorted(set(train) - set(model.session_units))
        if unknown:
            raise NeurofmError(
                f"training sessions {unknown} have no neurons in the model (it knows "
                f"{sorted(model.session_units)}); build the model with these sessions"
            )
        loads = {sid: (model.session_units[sid].count, train[sid]) for sid in train}
        self.owner = assign_sessions(loads, world_size)
        self.rank = rank
        self.world_size = world_size
        self.names = {
            n: sid for n, sid in session_parameter_names(model).items() if sid in self.owner
        }
        params = dict(model.named_parameters())
        self.shapes = {n: params[n].shape for n in self.names}

    # -- who holds what ---------------------------------------------------------------------------
    def owns(self, session_id: str) -> bool:
        return self.owner.get(session_id) == self.rank

    def own_sessions(self, sessions: Iterable[Session]) -> list[Session]:
        """The sessions of ``sessions`` this rank owns, in their order."""
        return [s for s in sessions if self.owns(s.session_id)]

    @property
    def owned_names(self) -> list[str]:
        return [n for n, sid in self.names.items() if self.owns(sid)]

    @property
    def other_names(self) -> list[str]:
        return [n for n, sid in self.names.items() if not self.owns(sid)]

    def rank_loads(self, model: NeuroFM, sessions: Sequence[Session]) -> list[tuple[int, float]]:
        """``(neurons, train seconds)`` of each rank's sessions."""
        out = [[0, 0.0] for _ in range(self.world_size)]
        for s in sessions:
            rank = self.owner[s.session_id]
            out[rank][0] += model.session_units[s.session_id].count
            out[rank][1] += _train_seconds(s)
        return [(int(n), float(t)) for n, t in out]

    def describe(self, model: NeuroFM, sessions: Sequence[Session]) -> list[str]:
        """One line per rank: its sessions, neurons and train time (shares of the totals)."""
        loads = self.rank_loads(model, sessions)
        neurons = sum(n for n, _ in loads) or 1
        seconds = sum(t for _, t in loads) or 1.0
        lines = []
        for rank, (n, t) in enumerate(loads):
            count = sum(1 for r in self.owner.values() if r == rank)
            lines.append(
                f"rank {rank}: {count} session(s), {n} neurons ({100 * n / neurons:.0f} %), "
                f"{t:.0f} s of training data ({100 * t / seconds:.0f} %)"
            )
        return lines

    def parameter_bytes(self, model: NeuroFM) -> int:
        """Bytes of the per-session parameters this rank holds."""
        params = dict(model.named_parameters())
        return sum(params[n].numel() * params[n].element_size() for n in self.names)

    # -- memory -----------------------------------------------------------------------------------
    def release(self, model: NeuroFM) -> None:
        """Drop the tensors of other ranks' sessions: each such parameter keeps its name, its
        object and its number of dimensions (so it lands in the same optimizer parameter group
        on every rank) with no elements. Call before wrapping for DDP/FSDP and building the
        optimizer."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name in self.other_names:
                params[name].data = _emptied(params[name].data)

    # -- gradients --------------------------------------------------------------------------------
    def _parameters(self, model: NeuroFM) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        params = dict(model.named_parameters())
        session = {id(params[n]) for n in self.names}
        owned = [params[n] for n in self.owned_names]
        shared = [p for p in model.parameters() if id(p) not in session]
        return shared, owned

    def finish_gradients(self, model: NeuroFM) -> None:
        """Divide the per-session gradients by the world size: the loss was scaled for DDP's
        mean over ranks, which per-session gradients do not go through."""
        _, owned = self._parameters(model)
        if self.world_size > 1:
            for p in owned:
                if p.grad is not None:
                    p.grad.div_(self.world_size)

    def clip(self, model: NeuroFM, max_norm: float) -> Tensor:
        """Clip every gradient by the global norm (the shared gradients' norm and the per-session
        ones' of every rank); returns that norm (the same on every rank)."""
        shared, owned = self._parameters(model)
        shared_grads = [p.grad for p in shared if p.grad is not None]
        owned_grads = [p.grad for p in owned if p.grad is not None]
        device = next(model.parameters()).device
        squared = torch.zeros((), dtype=torch.float32, device=device)
        if shared_grads:
            norm = torch.nn.utils.get_total_norm(shared_grads)
            if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
                norm = norm.full_tensor()
            squared = squared + norm.float().square()
        local = torch.zeros((), dtype=torch.float32, device=device)
        if owned_grads:
            local = torch.nn.utils.get_total_norm(owned_grads).float().square()
        if dist.is_available() and dist.is_initialized() and self.world_size > 1:
            dist.all_reduce(local)
        total = (squared + local).sqrt()
        for group in (shared, owned):  # apart: under FSDP2 the shared ones are DTensors
            torch.nn.utils.clip_grads_with_norm_(group, max_norm, total)
        return total

    # -- state ------------------------------------------------------------------------------------
    def _session_of(self, key: str, prefix: str) -> str | None:
        name = key.split("\t", 1)[0].removeprefix(prefix)
        return self.names.get(name)

    def gather(
        self, model: NeuroFM, optimizer: torch.optim.Optimizer | None = None, prefix: str = ""
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]] | None:
        """Collective: every session's parameters (and, with ``optimizer``, their optimizer
        state flattened as ``"name\tfield"``), each from the rank that owns it, as CPU tensors;
        on rank 0 (None on the others). ``prefix`` goes before every parameter name (e.g.
        ``"model."``, the names in the wrapped training step's state dicts)."""
        params = dict(model.named_parameters())
        weights, states = {}, {}
        for name in self.owned_names:
            p = params[name]
            weights[prefix + name] = p.detach().cpu().clone()
            for field, value in (optimizer.state.get(p, {}) if optimizer else {}).items():
                if isinstance(value, Tensor):
                    states[f"{prefix}{name}\t{field}"] = value.detach().cpu().clone()
        parts: list[Any] = [None] * self.world_size
        dist.gather_object((weights, states), parts if self.rank == 0 else None, dst=0)
        if self.rank != 0:
            return None
        all_weights: dict[str, Tensor] = {}
        all_states: dict[str, Tensor] = {}
        for w, o in parts:
            all_weights.update(w)
            all_states.update(o)
        return all_weights, all_states

    def localise(self, state: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        """``state`` (full, as :meth:`gather` gives it) with other ranks' session entries
        replaced by empty tensors, to load into this rank's released model or optimizer."""
        out = {}
        for k, v in state.items():
            sid = self._session_of(k, prefix)
            if sid is not None and not self.owns(sid) and isinstance(v, Tensor) and v.ndim > 0:
                v = _emptied(v)
            out[k] = v
        return out

    def restore(self, model: NeuroFM, weights: Mapping[str, Tensor], prefix: str = "") -> None:
        """Put every session's parameters from ``weights`` (:meth:`gather`'s) back into
        ``model`` (rank 0: the model is complete again, e.g. to save or evaluate it)."""
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name in self.names:
                params[name].data = weights[prefix + name].to(params[name].device).clone()


def _emptied(t: Tensor) -> Tensor:
    """``t`` with no elements and as many dimensions (a scalar is kept)."""
    return t.new_empty((0, *t.shape[1:])) if t.ndim > 0 else t
