"""THE loop that steps a Gymnasium vector env, for any policy: planners, baselines, renders.

``rollout`` runs ``episodes`` episodes on ``num_envs`` envs stepped together: env ``i`` starts with
episode ``i`` (reset seed ``seed + i``) and takes the next unplayed episode when its episode ends;
envs without an episode left idle. A :class:`Policy` maps the observations of all envs to actions
in one call; :class:`Observer` objects see what callers need (frames, visited states, plans)
without the loop knowing about videos or pictures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from diffplan.envs.specs import make_env


class PlanView(Protocol):
    """What observers read of a policy's latest plans (a :class:`diffplan.planning.plans.Plan`)."""

    @property
    def observations(self) -> np.ndarray:
        """``[B, H, obs_dim]`` planned states, best plan first."""
        ...

    @property
    def actions(self) -> np.ndarray:
        """``[B, H, act_dim]`` planned actions, best plan first."""
        ...


class Policy(Protocol):
    """Observations in, actions out, for ``n`` envs at once."""

    plans_made: int  # plans (or decisions) made so far, for seconds-per-plan figures

    @property
    def plans(self) -> Sequence[PlanView | None]:
        """Per env, its latest plans (``None`` before its first plan, or for a policy that makes none)."""
        ...

    def act(self, state: np.ndarray, goal: np.ndarray | None, active: np.ndarray) -> np.ndarray:
        """``[n, act_dim]`` actions for ``state: [n, obs_dim]`` (``goal: [n, goal_dim]`` in goal
        envs); rows where ``active: [n]`` is false are ignored."""
        ...

    def reset(self, mask: np.ndarray) -> None:
        """Forget what the envs in ``mask: [n]`` remembered (their episodes ended)."""
        ...


class CallablePolicy:
    """A plain policy ``fn(states [n, S], goals [n, G] | None) -> actions [n, A]`` acting every step (a
    baseline, a behaviour policy)."""

    def __init__(self, fn: Callable[[np.ndarray, np.ndarray | None], np.ndarray], n_envs: int) -> None:
        self.fn, self.plans_made = fn, 0
        self.plans: list[PlanView | None] = [None] * n_envs  # a plain policy makes no plans

    def act(self, state: np.ndarray, goal: np.ndarray | None, active: np.ndarray) -> np.ndarray:
        """The function's actions, zero where not ``active``."""
        self.plans_made += int(np.sum(active))
        return np.asarray(self.fn(state, goal), dtype=np.float64) * np.asarray(active)[:, None]

    def reset(self, mask: np.ndarray) -> None:
        """Nothing to forget."""


class Observer:
    """Hooks of :func:`rollout`; every method is optional (the defaults do nothing)."""

    def started(self, envs: Any) -> None:
        """After the first reset (``envs``: the Gymnasium vector env)."""

    def acted(
        self, *, env_index: int, episode: int, state: np.ndarray, goal: np.ndarray | None, policy: Policy
    ) -> None:
        """After the policy acted, for each active env, before the step."""

    def stepped(self, envs: Any) -> None:
        """After each step of the vector env."""

    def ended(self, *, env_index: int, episode: int) -> None:
        """When an episode ends."""


@dataclass(frozen=True)
class RolloutResult:
    """What :func:`rollout` measured.

    Attributes:
        returns: ``[episodes]`` undiscounted returns.
        lengths: ``[episodes]`` steps.
        success: ``[episodes]`` goal reached (goal envs), else ``None``.
        seconds_acting: wall time inside the policy (and clipping its actions).
        decisions: env steps acted.
        plans: ``policy.plans_made`` at the end.
    """

    returns: np.ndarray
    lengths: np.ndarray
    success: np.ndarray | None
    seconds_acting: float
    decisions: int
    plans: int


def _merge(old: Any, new: Any, mask: np.ndarray) -> Any:
    """Take ``new`` rows where ``mask`` (per env), else ``old``; dict observations key by key."""
    if isinstance(old, dict):
        return {k: _merge(old[k], new[k], mask) for k in old}
    return np.where(mask.reshape(-1, *([1] * (old.ndim - 1))), new, old)


def rollout(
    *,
    env_id: str,
    policy: Policy,
    episodes: int,
    seed: int,
    num_envs: int = 1,
    env_kwargs: dict[str, Any] | None = None,
    reset_options: dict[str, Any] | None = None,
    observers: Sequence[Observer] = (),
    progress: bool = True,
) -> RolloutResult:
    """Run ``episodes`` episodes of ``env_id`` with ``policy`` (see the module docstring).

    Args:
        env_id: Gymnasium id.
        policy: acts for all ``num_envs`` envs in one call.
        episodes: number of episodes.
        seed: episode ``k`` is reset with ``seed + k``.
        num_envs: envs stepped together (at most ``episodes``).
        env_kwargs: keyword arguments of ``gym.make`` (e.g. ``max_episode_steps``, ``render_mode``).
        reset_options: options of every reset (e.g. a PointMaze ``goal_cell``).
        observers: hooks (frames, visited states, plans).
        progress: show a progress bar.

    Returns:
        Returns, lengths, successes and timing of the episodes.
    """
    import gymnasium as gym
    from tqdm.auto import tqdm

    num_envs = min(num_envs, episodes)
    envs = gym.vector.SyncVectorEnv(
        [lambda: make_env(env_id, **(env_kwargs or {})) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.DISABLED,
    )
    options = dict(reset_options or {})
    obs, _ = envs.reset(seed=[seed + i for i in range(num_envs)], options=options or None)
    goal_env = isinstance(obs, dict)
    space = envs.single_action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"expected a Box action space, got {space}")
    for o in observers:
        o.started(envs)
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=int)
    success = np.zeros(episodes, dtype=bool)
    slot_episode = np.arange(num_envs)  # which episode each env runs; -1 when idle
    next_episode, finished, acting, decisions = num_envs, 0, 0.0, 0
    bar = tqdm(total=episodes, desc=f"{env_id}", unit="episode", disable=not progress)
    while finished < episodes:
        active = slot_episode >= 0
        state, goal = (obs["observation"], obs["desired_goal"]) if goal_env else (obs, None)
        started = time.perf_counter()
        actions = np.clip(policy.act(state, goal, active), space.low, space.high).astype(space.dtype)
        acting += time.perf_counter() - started
        decisions += int(active.sum())
        for i in np.flatnonzero(active):
            for o in observers:
                o.acted(
                    env_index=int(i),
                    episode=int(slot_episode[i]),
                    state=state[i],
                    goal=None if goal is None else goal[i],
                    policy=policy,
                )
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        for o in observers:
            o.stepped(envs)
        for i in np.flatnonzero(active):
            returns[slot_episode[i]] += rewards[i]
            lengths[slot_episode[i]] += 1
            if goal_env and bool(infos.get("success", np.zeros(num_envs, dtype=bool))[i]):
                success[slot_episode[i]] = True
        done = terminated | truncated
        if not done.any():
            continue
        policy.reset(done)
        seeds: list[int | None] = [None] * num_envs
        for i in np.flatnonzero(done):
            if slot_episode[i] >= 0:
                for o in observers:
                    o.ended(env_index=int(i), episode=int(slot_episode[i]))
                finished += 1
                bar.update(1)
                bar.set_postfix(ret=f"{returns[slot_episode[i]]:.0f}")
            slot_episode[i] = next_episode if next_episode < episodes else -1
            if next_episode < episodes:
                seeds[i] = seed + next_episode
                next_episode += 1
        if finished < episodes:
            new_obs, _ = envs.reset(seed=seeds, options={"reset_mask": done} | options)
            obs = _merge(obs, new_obs, done)
    bar.close()
    envs.close()
    return RolloutResult(
        returns=returns,
        lengths=lengths,
        success=success if goal_env else None,
        seconds_acting=acting,
        decisions=decisions,
        plans=policy.plans_made,
    )
