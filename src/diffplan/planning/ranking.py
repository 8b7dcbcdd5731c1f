"""The ranking rules of a planning call: what orders the finished plans (``PlanConfig.rank_by``), and
the inverse-dynamics actions that states-only plans are ranked and executed with."""

from __future__ import annotations

import torch

from diffplan.diffusion.guidance import value
from diffplan.models import InverseDynamics, QFunction, StateValue
from diffplan.planning.plans import CONSISTENT_SLACK


def inverse_actions(model: InverseDynamics, states: torch.Tensor, *, act_dim: int) -> torch.Tensor:
    """Normalized actions ``[N, H, A]`` of normalized planned states ``[N, H, S]``: the inverse
    dynamics from each state to the next (the last step repeats the one before)."""
    n, horizon, obs_dim = states.shape
    if horizon == 1:
        return torch.zeros((n, 1, act_dim), dtype=states.dtype, device=states.device)
    now, nxt = states[:, :-1].reshape(-1, obs_dim), states[:, 1:].reshape(-1, obs_dim)
    lookahead = torch.full((now.shape[0],), model.config.max_lookahead, device=states.device)
    actions = model(now, nxt, lookahead).view(n, horizon - 1, act_dim)
    return torch.cat([actions, actions[:, -1:]], dim=1)


def check_ranker(rank_by: str, *, critic: QFunction | None, state_value: StateValue | None) -> None:
    """Raise when ``rank_by`` needs a model the run lacks.

    Raises:
        ValueError: ``"q"`` without a critic or ``"state_value"`` without a state value, with the
            command that trains the missing model.
    """
    if rank_by == "q" and critic is None:
        raise ValueError(
            "rank_by='q' needs a run with a Q-function (critic/); train one with "
            "`diffplan train ... --resume --train.critic-steps N`, or rank by 'value'"
        )
    if rank_by == "state_value" and state_value is None:
        raise ValueError(
            "rank_by='state_value' needs a run with a state value V(s) (state_value/); train one with "
            "`diffplan train ... --resume --train.state-value-steps N`, or rank by 'value'"
        )


def plan_values(
    *,
    rank_by: str,
    plans: torch.Tensor,
    full: torch.Tensor,
    act_dim: int,
    n_envs: int,
    value_function: torch.nn.Module | None,
    critic: QFunction | None,
    state_value: StateValue | None,
    arrival: torch.Tensor | None = None,
    n_arrivals: int = 1,
) -> torch.Tensor:
    """The score of each finished plan, higher first (see :class:`~diffplan.config.PlanConfig`).

    Args:
        rank_by: ``"value"`` (the value network on the clean plans; without one, dynamic
            consistency: minus the largest jump between planned states, and with several goal
            arrivals the consistent plans — largest jump at most :data:`CONSISTENT_SLACK` times the
            env's smoothest plan's — scored ``1 - arrival / H``, the earliest first), ``"q"`` (the
            critic on each plan's first state and action) or ``"state_value"`` (V summed over the
            planned states after the start).
        plans: ``[n_envs * batch, H, D]`` normalized plans as diffused.
        full: ``[n_envs * batch, H, A + S]`` their actions and states (a states-only plan's actions
            from inverse dynamics).
        act_dim: action dimensions A.
        n_envs: envs planned together (plans ``[e * batch, (e + 1) * batch)`` are env ``e``'s).
        value_function: the run's value network (``None``: rank by dynamic consistency).
        critic: the run's Q-function (needed by ``"q"``).
        state_value: the run's V(s) (needed by ``"state_value"``).
        arrival: ``[n_envs * batch]`` goal arrival steps, or ``None`` without a goal.
        n_arrivals: distinct arrival steps.

    Returns:
        ``[n_envs, batch]`` scores.
    """
    states = full[..., act_dim:]
    if rank_by == "q":
        assert critic is not None  # checked before sampling
        return critic(states[:, 0], full[:, 0, :act_dim]).view(n_envs, -1)
    if rank_by == "state_value":
        assert state_value is not None  # checked before sampling
        return state_value(states[:, 1:]).sum(dim=1).view(n_envs, -1)
    if value_function is not None:
        return value(value_function, plans).view(n_envs, -1)
    values = -(states[:, 1:] - states[:, :-1]).norm(dim=-1).amax(dim=1).view(n_envs, -1)
    if arrival is None or n_arrivals <= 1:
        return values
    consistent = values >= CONSISTENT_SLACK * values.amax(dim=1, keepdim=True)
    early = 1.0 - arrival.to(values.dtype).view_as(values) / plans.shape[1]
    return torch.where(consistent, early, values)
