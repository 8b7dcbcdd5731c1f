"""Closed-loop evaluation: episodes in a Gymnasium vector env, all envs planned in one call."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffplan.envs.specs import check_dims, is_maze, make_env, reference_scores


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
        seconds_per_decision: acting wall time (planning and tracking) per env step.
        seconds_per_plan: that time per plan made (equal in closed loop with replanning every step).
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
    seconds_per_plan: float
    num_envs: int
    reference: dict[str, Any] | None = None
    planner: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of this object."""
        return asdict(self)


# track mode with walls=True: a plan whose best sample still crosses a wall is sampled again up to
# this many times (the episode keeps the last one).
WALL_RETRIES = 3


def _plot_episode(env_id: str, episode: int, first_plans: dict[int, Any], visited: dict[int, list[np.ndarray]],
                  plots_dir: str | Path, mode: str) -> None:
    """Maze picture of one episode (goal envs) or the plan-vs-executed plot (others)."""
    from diffplan.plots import plot_maze, plot_plan_vs_executed

    plan, goal = first_plans.get(episode, (None, None))
    executed = np.stack(visited.pop(episode, [])) if visited.get(episode) else None
    out = Path(plots_dir) / f"episode_{episode:03d}.png"
    if plan is None or executed is None:
        return
    if is_maze(env_id):
        env = make_env(env_id)
        plot_maze(env=env, plans=plan["observations"], executed=executed, goal=goal, path=out,
                  title=f"{env_id} episode {episode} ({mode})")
        env.close()
    else:
        plot_plan_vs_executed(planned=plan["observations"][0], executed=executed, path=out,
                              title=f"{env_id} episode {episode}")


def _merge(old: Any, new: Any, mask: np.ndarray) -> Any:
    """Take ``new`` rows where ``mask`` (per env), else ``old``; dict observations key by key."""
    if isinstance(old, dict):
        return {k: _merge(old[k], new[k], mask) for k in old}
    return np.where(mask.reshape(-1, *([1] * (old.ndim - 1))), new, old)


def _stderr(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


class _PolicyActor:
    """Planner-shaped wrapper of a plain policy ``(states [n, S], goals [n, G] | None) -> actions [n, A]``."""

    def __init__(self, policy: Callable[[np.ndarray, np.ndarray | None], np.ndarray], n_envs: int) -> None:
        self.policy, self.plans = policy, [None] * n_envs

    def act(self, obs: np.ndarray, *, goal: np.ndarray | None = None, active: np.ndarray,
            generator: torch.Generator | None = None) -> np.ndarray:
        return np.asarray(self.policy(obs, goal), dtype=np.float64) * np.asarray(active)[:, None]

    def reset(self, mask: np.ndarray | None = None) -> None:
        pass


def evaluate(
    *,
    pipe: Any = None,
    episodes: int,
    seed: int,
    env_id: str | None = None,
    num_envs: int = 1,
    max_episode_steps: int | None = None,
    plan_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    mode: str = "replan",
    replan_every: int | None = None,
    plots_dir: str | Path | None = None,
    task: str = "multi",
    policy: Callable[[np.ndarray, np.ndarray | None], np.ndarray] | None = None,
    actions: str = "plan",
    walls: bool = False,
) -> EvalResult:
    """Run ``episodes`` episodes, acting with the first action of the best plan at every step.

    Args:
        pipe: a ``ValueGuidedRLPipeline`` (or ``policy``).
        episodes: number of episodes.
        seed: base seed of the resets and of the planner's noise.
        env_id: environment (default: the run's).
        num_envs: environments stepped together and planned in one batched call.
        max_episode_steps: cut episodes at this many steps (default: the env's limit).
        plan_kwargs: keyword arguments of ``pipe.plan``.
        progress: show a progress bar.
        mode: ``"replan"`` (closed loop: plan every ``replan_every`` steps and execute the
            planner's own actions) or ``"track"`` (plan once per episode, then follow the planned
            states with a PD controller, as Diffuser's Maze2D results did).
        replan_every: steps between plans in ``replan`` mode (the best plan's actions in between,
            each held for the run's ``stride`` steps); default: the run's ``stride``.
        plots_dir: goal envs: write a maze picture of each episode's first plans and executed path.
        task: PointMaze only: ``"multi"`` (a random goal each episode, Multi2D) or ``"single"``
            (the fixed goal cell of ``diffplan.envs.maze.FIXED_GOAL_CELLS``, Maze2D).
        policy: instead of ``pipe``, a baseline acting every step on the same episodes:
            ``policy(states [n, obs_dim], goals [n, goal_dim] | None) -> actions [n, act_dim]``.
        actions: ``replan`` mode: ``"plan"`` executes the plan's sampled actions (each held for
            the run's ``stride`` steps, Diffuser's way); ``"inverse"`` the action of the run's
            learned inverse dynamics towards the next planned state, at every step.
        walls: PointMaze only: rank plans that cross the maze's walls last
            (:class:`diffplan.envs.maze.WallCost`: the planner is given the maze map); in
            ``track`` mode a best plan through a wall is sampled again (:data:`WALL_RETRIES`).

    Raises:
        ValueError: no env id, bad counts, not exactly one of ``pipe`` and ``policy``, or a run
            whose dimensions do not match the env.
    """
    import gymnasium as gym
    from tqdm.auto import tqdm

    from diffplan.envs.maze import FIXED_GOAL_CELLS, WallCost, track_action
    from diffplan.planning.planner import Planner

    if (pipe is None) == (policy is None):
        raise ValueError("pass exactly one of pipe= (a diffplan run) and policy= (a baseline)")
    if policy is not None and (mode != "replan" or replan_every not in (None, 1)):
        raise ValueError("a policy acts every step: use mode='replan' with replan_every=1")
    info = pipe.info if pipe is not None else None
    stride = info.stride if info else 1
    replan_every = stride if replan_every is None else replan_every
    env_id = env_id or (info.env_id if info else None)
    if env_id is None:
        raise ValueError("the run records no env id; pass env_id=")
    if mode not in ("replan", "track"):
        raise ValueError(f"unknown mode {mode!r}; expected 'replan' or 'track'")
    if actions not in ("plan", "inverse"):
        raise ValueError(f"unknown actions {actions!r}; expected 'plan' or 'inverse'")
    if actions == "inverse" and (mode != "replan" or pipe is None or pipe.inverse_dynamics is None):
        raise ValueError("actions='inverse' needs mode='replan' and a run with an inverse dynamics model "
                         "(train one with `diffplan train ... --resume --inverse-steps N`)")
    if task not in ("multi", "single"):
        raise ValueError(f"unknown task {task!r}; expected 'multi' or 'single'")
    reset_options: dict[str, Any] = {}
    if task == "single":
        if env_id not in FIXED_GOAL_CELLS:
            raise ValueError(f"task 'single' needs a fixed goal; known for {sorted(FIXED_GOAL_CELLS)}, not {env_id}")
        reset_options["goal_cell"] = np.array(FIXED_GOAL_CELLS[env_id])
    if walls and (pipe is None or not is_maze(env_id)):
        raise ValueError(f"walls=True ranks plans by a PointMaze map; got env {env_id!r}"
                         + ("" if pipe is not None else " and a policy"))
    if replan_every < 1:
        raise ValueError(f"expected replan_every >= 1, got {replan_every}")
    if episodes < 1 or num_envs < 1:
        raise ValueError(f"expected episodes >= 1 and num_envs >= 1, got {episodes} and {num_envs}")
    num_envs = min(num_envs, episodes)
    if pipe is not None:
        check_dims(env_id, obs_dim=pipe.obs_dim, act_dim=pipe.act_dim, what="this checkpoint (the run's planner)")
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    envs = gym.vector.SyncVectorEnv([lambda: make_env(env_id, **kwargs) for _ in range(num_envs)],
                                    autoreset_mode=gym.vector.AutoresetMode.DISABLED)
    if walls:
        map_env = make_env(env_id)
        extra: dict[str, Any] = {"cost": WallCost(map_env)}
        map_env.close()
    else:
        extra = {}
    planner = (Planner(pipe, n_envs=num_envs, **(plan_kwargs or {}), **extra) if policy is None
               else _PolicyActor(policy, num_envs))
    act_dim = int(np.prod(envs.single_action_space.shape))
    generator = torch.Generator(device=pipe.device if pipe is not None else "cpu").manual_seed(seed)
    obs, _ = envs.reset(seed=[seed + i for i in range(num_envs)], options=dict(reset_options) or None)
    goal_env = isinstance(obs, dict)
    success = np.zeros(episodes, dtype=bool)
    since_plan = np.zeros(num_envs, dtype=int)  # steps executed since each env's last plan
    has_plan = np.zeros(num_envs, dtype=bool)
    first_plans: dict[int, Any] = {}
    visited: dict[int, list[np.ndarray]] = {}  # per episode, filled only when plots are asked for
    slot_episode = np.arange(num_envs)  # which episode each env runs; -1 when idle
    next_episode = num_envs
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=int)
    plan_time, decisions, plans, finished = 0.0, 0, 0, 0
    bar = tqdm(total=episodes, desc=f"evaluate {env_id}", unit="episode", disable=not progress)
    while finished < episodes:
        active = slot_episode >= 0
        started = time.perf_counter()
        state, goal = (obs["observation"], obs["desired_goal"]) if goal_env else (obs, None)
        if mode == "track":
            need = active & ~has_plan
        else:
            need = active & (~has_plan | (since_plan >= replan_every))
        step_actions = np.zeros((num_envs, act_dim))
        if need.any():
            plans += int(need.sum())
            step_actions = planner.act(state, goal=goal, active=need, generator=generator)
            for _ in range(WALL_RETRIES if walls and mode == "track" else 0):  # resample plans through walls
                again = need & np.array([p is not None and extra["cost"](p["observations"][0]) > 0
                                         for p in planner.plans])
                if not again.any():
                    break
                plans += int(again.sum())
                step_actions[again] = planner.act(state, goal=goal, active=again, generator=generator)[again]
            since_plan[need], has_plan[need] = 0, True
            for i in np.flatnonzero(need):
                first_plans.setdefault(int(slot_episode[i]), (planner.plans[i], None if goal is None else goal[i]))
        follow = active & ~need
        if actions == "inverse":  # every step: the run's inverse dynamics towards the next planned state
            rows = np.flatnonzero(active)
            planned = np.stack([planner.plans[i]["observations"][0] for i in rows])  # [n, H, S]
            nxt = np.minimum(since_plan[rows] // stride + 1, planned.shape[1] - 1)
            step_actions[rows] = pipe.inverse_action(state=state[rows], target=planned[np.arange(len(rows)), nxt],
                                                     lookahead=np.maximum(nxt * stride - since_plan[rows], 1))
            follow[:] = False
        for i in np.flatnonzero(follow):
            best = planner.plans[i]
            if mode == "track":
                step_actions[i] = track_action(plan=best["observations"][0], t=int(since_plan[i]), state=state[i],
                                               stride=stride, goal=None if goal is None else goal[i])
            else:  # each planned action is held for `stride` environment steps
                k = min(int(since_plan[i]) // stride, best["actions"].shape[1] - 1)
                step_actions[i] = best["actions"][0, k]
        if plots_dir is not None:
            for i in np.flatnonzero(active):
                visited.setdefault(int(slot_episode[i]), []).append(np.asarray(state[i], dtype=np.float64))
        space = envs.single_action_space
        step_actions = np.clip(step_actions, space.low, space.high).astype(space.dtype)
        plan_time += time.perf_counter() - started
        decisions += int(active.sum())
        obs, rewards, terminated, truncated, infos = envs.step(step_actions)
        since_plan += 1
        for i in np.flatnonzero(active):
            returns[slot_episode[i]] += rewards[i]
            lengths[slot_episode[i]] += 1
            if goal_env and bool(infos.get("success", np.zeros(num_envs, dtype=bool))[i]):
                success[slot_episode[i]] = True
        done = terminated | truncated
        if done.any():
            planner.reset(done)
            has_plan[done] = False
            seeds: list[int | None] = [None] * num_envs
            for i in np.flatnonzero(done):
                if slot_episode[i] >= 0:
                    if plots_dir is not None:
                        _plot_episode(env_id, int(slot_episode[i]), first_plans, visited, plots_dir, mode)
                    finished += 1
                    bar.update(1)
                    bar.set_postfix(ret=f"{returns[slot_episode[i]]:.0f}")
                slot_episode[i] = next_episode if next_episode < episodes else -1
                if next_episode < episodes:
                    seeds[i] = seed + next_episode
                    next_episode += 1
            if finished < episodes:
                new_obs, _ = envs.reset(seed=seeds, options={"reset_mask": done} | reset_options)
                obs = _merge(obs, new_obs, done)
    bar.close()
    envs.close()
    return summarize(pipe=pipe, env_id=env_id, seed=seed, returns=returns, lengths=lengths,
                     success=success if goal_env else None, seconds=plan_time, decisions=decisions, plans=plans,
                     num_envs=num_envs, planner=dict(plan_kwargs or {}) | {"mode": mode, "replan_every": replan_every}
                     | ({"actions": actions} if mode == "replan" and policy is None else {})
                     | ({"walls": True} if walls else {})
                     | ({"task": task} if goal_env else {}))


def summarize(*, pipe: Any, env_id: str, seed: int, returns: np.ndarray, lengths: np.ndarray,
              success: np.ndarray | None, seconds: float, decisions: int, plans: int, num_envs: int,
              planner: dict[str, Any]) -> EvalResult:
    """Scores of finished episodes, normalized with the run's (or the env's) reference returns.

    Args:
        pipe: the pipeline that acted (its run record holds the reference returns), or ``None``.
        env_id: environment.
        seed: base seed of the episodes.
        returns: ``[episodes]`` undiscounted returns.
        lengths: ``[episodes]`` steps.
        success: ``[episodes]`` goal reached (goal envs), else ``None``.
        seconds: acting wall time.
        decisions: env steps acted.
        plans: plans made.
        num_envs: envs planned together.
        planner: planner settings to record.
    """
    returns = np.asarray(returns, dtype=np.float64)
    info = pipe.info if pipe is not None else None
    refs = reference_scores(env_id, ref_min=info.ref_min_score if info else None,
                            ref_max=info.ref_max_score if info else None)
    norm = np.array([refs.normalize(r) for r in returns]) if refs else None
    return EvalResult(
        env_id=env_id,
        episodes=len(returns),
        seed=seed,
        returns=returns.tolist(),
        lengths=np.asarray(lengths).tolist(),
        mean_return=float(returns.mean()),
        normalized_score=float(norm.mean()) if norm is not None else None,
        stderr=_stderr(norm if norm is not None else returns),
        success_rate=float(np.mean(success)) if success is not None else None,
        seconds_per_decision=seconds / max(decisions, 1),
        seconds_per_plan=seconds / max(plans, 1),
        num_envs=num_envs,
        reference=asdict(refs) if refs else None,
        planner=planner,
    )
