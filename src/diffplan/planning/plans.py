"""What a planning call returns: :class:`Plan` (host arrays) and :class:`Samples` (device tensors),
and the arrival steps of goal plans."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

# A goal plan counts as dynamically consistent when its largest jump between planned steps is at
# most this multiple of the smoothest plan's (plans that must arrive too early jump 3-5x more).
CONSISTENT_SLACK = 1.5


@dataclass(frozen=True)
class Plan:
    """Sampled plans in original units, best first.

    With one observation the leading ``n_envs`` axis is absent.

    Attributes:
        actions: ``[n_envs, batch, horizon, act_dim]``.
        observations: ``[n_envs, batch, horizon, obs_dim]``.
        values: ``[n_envs, batch]`` value of each plan, descending. Runs without a value network
            rank by dynamic consistency instead: minus the largest jump between consecutive planned
            states (normalized units), so plans that teleport to an inpainted goal come last. With
            ``goal_arrivals``, the consistent plans (largest jump at most
            :data:`CONSISTENT_SLACK` times the smoothest plan's) score ``1 - arrival / H`` instead,
            so the earliest of them comes first.
        normalized: ``[n_envs, batch, horizon, D]`` normalized plans as the denoiser made them
            (torch; ``D = act_dim + obs_dim``, or ``obs_dim`` for a states-only run, whose actions
            come from its inverse dynamics).
    """

    actions: np.ndarray
    observations: np.ndarray
    values: np.ndarray
    normalized: torch.Tensor


@dataclass(frozen=True)
class Samples:
    """A planning call's sorted plans, still on the device; :attr:`plan` copies them to the host once.

    Attributes:
        normalized: ``[n_envs, batch, H, D]`` normalized plans as the denoiser made them, best first
            (``D = act_dim + obs_dim``, or ``obs_dim`` for a states-only run).
        trajectories: ``[n_envs, batch, H, act_dim + obs_dim]`` in original units (float64;
            inpainted start and goal exact; a states-only run's actions from its inverse dynamics).
        values: ``[n_envs, batch]``, descending.
        act_dim: action dimensions A (the first A channels).
        single: one observation was given (the ``n_envs`` axis is dropped in :attr:`plan`).
    """

    normalized: torch.Tensor
    trajectories: torch.Tensor
    values: torch.Tensor
    act_dim: int
    single: bool

    @cached_property
    def plan(self) -> Plan:
        """The plans in original units as numpy arrays (copied from the device on first access)."""
        traj = self.trajectories.cpu().numpy()
        plan = Plan(
            actions=traj[..., : self.act_dim],
            observations=traj[..., self.act_dim :],
            values=self.values.double().cpu().numpy(),
            normalized=self.normalized,
        )
        if self.single:
            plan = Plan(plan.actions[0], plan.observations[0], plan.values[0], plan.normalized[0])
        return plan

    def best(self) -> np.ndarray:
        """``[n_envs, H, act_dim + obs_dim]`` best plan of each env in original units (one small copy)."""
        return self.trajectories[:, 0].cpu().numpy()


def goal_arrival_steps(*, horizon: int, count: int, batch_size: int) -> torch.Tensor:
    """Arrival step of each of ``batch_size`` goal plans: ``count`` steps (at most ``horizon - 1``
    and ``batch_size``) evenly spaced over ``(0, horizon - 1]``, the last one ``horizon - 1``,
    cycled over the batch.

    Returns:
        ``[batch_size]`` long tensor.

    Raises:
        ValueError: ``count < 1``.
    """
    if count < 1:
        raise ValueError(f"expected goal_arrivals >= 1, got {count}")
    count = min(count, horizon - 1, batch_size)
    steps = torch.linspace(horizon - 1, 0, count + 1)[:count].round().long().flip(0)
    return steps[torch.arange(batch_size) % count]
