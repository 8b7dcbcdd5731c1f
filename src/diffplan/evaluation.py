"""Closed-loop evaluation: episodes in a Gymnasium vector env, all envs planned in one call."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from diffplan.envs.specs import check_dims, make_env, reference_scores


@dataclass(frozen=True)
class EvalResult:
    """Scores of an evaluation (the fields of ``evaluate --json``).

    Attributes:
        env_id: environment.
        episodes: number of episodes.
        seed: episode ``i`` is reset with ``seed + i``.
        returns: undiscounted return per episode.
        lengths: steps per episode.
        mean_return: mean of ``returns``.
        normalized_score: mean normalized score (0 random, 100 expert), when references exist.
        stderr: standard error of the normalized score (of the return without references).
        success_rate: fraction of episodes that reached their goal (goal tasks only).
        seconds_per_decision: planning wall time per env decision.
        num_envs: envs planned together.
        reference: the reference scores used.
        planner: the planner keyword arguments.
    """

    env_id: str
    episodes: int
    seed: int
    returns: list[float]
    lengths: list[int]
    mean_return: float
    normalized_score: float | None
    stderr: float
    success_rate: float | None
    seconds_per_decision: float
    num_envs: int
    reference: dict[str, Any] | None = None
    planner: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _merge(old: Any, new: Any, mask: np.ndarray) -> Any:
    """Take ``new`` rows where ``mask`` (per env), else ``old``; dict observations key by key."""
    if isinstance(old, dict):
        return {k: _merge(old[k], new[k], mask) for k in old}
    return np.where(mask.reshape(-1, *([1] * (old.ndim - 1))), new, old)


def _stderr(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def evaluate(
    *,
    pipe: Any,
    episodes: int,
    seed: int,
    env_id: str | None = None,
    num_envs: int = 1,
    max_episode_steps: int | None = None,
    plan_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> EvalResult:
    """Run ``episodes`` episodes, acting with the first action of the best plan at every step.

    Args:
        pipe: a ``ValueGuidedRLPipeline``.
        episodes: number of episodes.
        seed: base seed of the resets and of the planner's noise.
        env_id: environment (default: the run's).
        num_envs: environments stepped together and planned in one batched call.
        max_episode_steps: cut episodes at this many steps (default: the env's limit).
        plan_kwargs: keyword arguments of ``pipe.plan``.
        progress: show a progress bar.

    Raises:
        ValueError: no env id, bad counts, or a run whose dimensions do not match the env.
    """
    import gymnasium as gym
    from tqdm.auto import tqdm

    env_id = env_id or (pipe.info.env_id if pipe.info else None)
    if env_id is None:
        raise ValueError("the run records no env id; pass env_id=")
    if episodes < 1 or num_envs < 1:
        raise ValueError(f"expected episodes >= 1 and num_envs >= 1, got {episodes} and {num_envs}")
    num_envs = min(num_envs, episodes)
    check_dims(env_id, obs_dim=pipe.obs_dim, act_dim=pipe.act_dim, what="this checkpoint (the run's planner)")
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    envs = gym.vector.SyncVectorEnv([lambda: make_env(env_id, **kwargs) for _ in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    from diffplan.planning.planner import Planner

    planner = Planner(pipe, n_envs=num_envs, **(plan_kwargs or {}))
    generator = torch.Generator().manual_seed(seed)
    obs, _ = envs.reset(seed=[seed + i for i in range(num_envs)])
    goal_env = isinstance(obs, dict)
    success = np.zeros(episodes, dtype=bool)
    slot_episode = np.arange(num_envs)  # which episode each env runs; -1 when idle
    next_episode = num_envs
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=int)
    plan_time, decisions, finished = 0.0, 0, 0
    bar = tqdm(total=episodes, desc=f"evaluate {env_id}", unit="episode", disable=not progress)
    while finished < episodes:
        active = slot_episode >= 0
        started = time.perf_counter()
        state, goal = (obs["observation"], obs["desired_goal"]) if goal_env else (obs, None)
        actions = planner.act(state, goal=goal, active=active, generator=generator)
        actions = actions.astype(envs.single_action_space.dtype)
        plan_time += time.perf_counter() - started
        decisions += int(active.sum())
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        for i in np.flatnonzero(active):
            returns[slot_episode[i]] += rewards[i]
            lengths[slot_episode[i]] += 1
            if goal_env and bool(infos.get("success", np.zeros(num_envs, dtype=bool))[i]):
                success[slot_episode[i]] = True
        done = terminated | truncated
        if done.any():
            planner.reset(done)
            seeds: list[int | None] = [None] * num_envs
            for i in np.flatnonzero(done):
                if slot_episode[i] >= 0:
                    finished += 1
                    bar.update(1)
                    bar.set_postfix(ret=f"{returns[slot_episode[i]]:.0f}")
                slot_episode[i] = next_episode if next_episode < episodes else -1
                if next_episode < episodes:
                    seeds[i] = seed + next_episode
                    next_episode += 1
            if finished < episodes:
                new_obs, _ = envs.reset(seed=seeds, options={"reset_mask": done})
                obs = _merge(obs, new_obs, done)
    bar.close()
    envs.close()
    info = pipe.info
    refs = reference_scores(env_id, ref_min=info.ref_min_score if info else None,
                            ref_max=info.ref_max_score if info else None)
    norm = np.array([refs.normalize(r) for r in returns]) if refs else None
    return EvalResult(
        env_id=env_id,
        episodes=episodes,
        seed=seed,
        returns=returns.tolist(),
        lengths=lengths.tolist(),
        mean_return=float(returns.mean()),
        normalized_score=float(norm.mean()) if norm is not None else None,
        stderr=_stderr(norm if norm is not None else returns),
        success_rate=float(success.mean()) if goal_env else None,
        seconds_per_decision=plan_time / max(decisions, 1),
        num_envs=num_envs,
        reference=asdict(refs) if refs else None,
        planner=dict(plan_kwargs or {}),
    )
