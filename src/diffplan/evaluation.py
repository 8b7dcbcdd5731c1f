"""Evaluation: validation, a rollout of the run's planner (or a baseline), and normalized scores."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffplan.config import PlanConfig
from diffplan.envs.family import family
from diffplan.envs.specs import check_dims, make_env, reference_scores
from diffplan.planning.execution import PlannerPolicy
from diffplan.rollout import CallablePolicy, Observer, PlanView, Policy, RolloutResult, rollout

if TYPE_CHECKING:
    from diffplan.planning.pipeline import ValueGuidedRLPipeline


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


class _EpisodePictures(Observer):
    """Each episode's first plans and visited states, drawn when it ends (maze picture or state plot)."""

    def __init__(self, env_id: str, plots_dir: str | Path, mode: str) -> None:
        self.env_id, self.plots_dir, self.mode = env_id, Path(plots_dir), mode
        self.first: dict[int, tuple[PlanView | None, np.ndarray | None]] = {}
        self.visited: dict[int, list[np.ndarray]] = {}

    def acted(
        self, *, env_index: int, episode: int, state: np.ndarray, goal: np.ndarray | None, policy: Policy
    ) -> None:
        self.first.setdefault(episode, (policy.plans[env_index], goal))
        self.visited.setdefault(episode, []).append(np.asarray(state, dtype=np.float64))

    def ended(self, *, env_index: int, episode: int) -> None:
        from diffplan.plots import plot_maze, plot_plan_vs_executed

        plan, goal = self.first.pop(episode, (None, None))
        visited = self.visited.pop(episode, [])
        if plan is None or not visited:
            return
        out = self.plots_dir / f"episode_{episode:03d}.png"
        if family(self.env_id).has_map:
            env = make_env(self.env_id)
            plot_maze(
                env=env,
                plans=plan.observations,
                executed=np.stack(visited),
                goal=goal,
                path=out,
                title=f"{self.env_id} episode {episode} ({self.mode})",
            )
            env.close()
        else:
            plot_plan_vs_executed(
                planned=plan.observations[0],
                executed=np.stack(visited),
                path=out,
                title=f"{self.env_id} episode {episode}",
            )


def _stderr(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


def planner_policy(
    pipe: ValueGuidedRLPipeline,
    *,
    n_envs: int,
    seed: int,
    env_id: str,
    mode: str = "replan",
    replan_every: int | None = None,
    actions: str = "plan",
    walls: bool = False,
    plan: PlanConfig | None = None,
) -> PlannerPolicy:
    """The run's planner executed in ``mode`` with settings ``plan`` (default: the run's), its noise
    seeded by ``seed`` on the pipeline's device, tracking and wall costs those of the environment's
    family (``walls``: rank plans through the map's walls last; see
    :class:`~diffplan.planning.execution.PlannerPolicy`)."""
    fam = family(env_id)
    if walls and fam.wall_cost is None:
        raise ValueError(f"walls=True ranks plans by a PointMaze map; got env {env_id!r}")
    wall_cost = fam.wall_cost(env_id) if walls and fam.wall_cost is not None else None
    generator = torch.Generator(device=pipe.device).manual_seed(seed)
    return PlannerPolicy(pipe, n_envs=n_envs, mode=mode, replan_every=replan_every, actions=actions,
                         wall_cost=wall_cost, tracker=fam.track, generator=generator, settings=plan)  # fmt: skip


def _check_request(
    *, pipe: ValueGuidedRLPipeline | None, policy: object, env_id: str | None, mode: str, replan_every: int | None,
    walls: bool, task: str, episodes: int, num_envs: int,
) -> str:  # fmt: skip
    """The environment of an :func:`evaluate` call after checking its arguments (see its Raises)."""
    if (pipe is None) == (policy is None):
        raise ValueError("pass exactly one of pipe= (a diffplan run) and policy= (a baseline)")
    if policy is not None and (mode != "replan" or replan_every not in (None, 1) or walls):
        raise ValueError("a policy acts every step: use mode='replan' with replan_every=1 and no walls")
    env_id = env_id or (pipe.info.env_id if pipe is not None and pipe.info else None)
    if env_id is None:
        raise ValueError("the run records no env id; pass env_id=")
    if mode == "track" and family(env_id).track is None:
        raise ValueError(f"mode 'track' PD-follows the planned positions of a PointMaze; {env_id} is not one: "
                         "use mode 'replan'")  # fmt: skip
    family(env_id).reset_options(env_id, task)  # checks the task
    if episodes < 1 or num_envs < 1:
        raise ValueError(f"expected episodes >= 1 and num_envs >= 1, got {episodes} and {num_envs}")
    if pipe is not None:
        check_dims(env_id, obs_dim=pipe.obs_dim, act_dim=pipe.act_dim, what="this checkpoint (the run's planner)")
    return env_id


def evaluate(
    *,
    pipe: ValueGuidedRLPipeline | None = None,
    episodes: int,
    seed: int,
    env_id: str | None = None,
    num_envs: int = 1,
    max_episode_steps: int | None = None,
    plan: PlanConfig | None = None,
    progress: bool = True,
    mode: str = "replan",
    replan_every: int | None = None,
    plots_dir: str | Path | None = None,
    task: str = "multi",
    policy: Callable[[np.ndarray, np.ndarray | None], np.ndarray] | None = None,
    actions: str = "plan",
    walls: bool = False,
) -> EvalResult:
    """Run ``episodes`` episodes with the run's planner (or a baseline ``policy``) and score them.

    Args:
        pipe: a ``ValueGuidedRLPipeline`` (or ``policy``).
        episodes: number of episodes.
        seed: base seed of the resets and of the planner's noise.
        env_id: environment (default: the run's).
        num_envs: environments stepped together and planned in one batched call.
        max_episode_steps: cut episodes at this many steps (default: the env's limit).
        plan: planner settings (default: the run's, ``pipe.plan_config``; those that differ from
            it are recorded in :attr:`EvalResult.planner`).
        progress: show a progress bar.
        mode: ``"replan"`` (closed loop: plan every ``replan_every`` steps and execute the
            planner's own actions) or ``"track"`` (plan once per episode, then follow the planned
            states with a PD controller, as Diffuser's Maze2D results did).
        replan_every: steps between plans in ``replan`` mode (default: the run's ``stride``).
        plots_dir: write a picture of each episode's first plans and executed path.
        task: PointMaze only: ``"multi"`` (a random goal each episode, Multi2D) or ``"single"``
            (the maze's fixed goal cell, :attr:`~diffplan.envs.family.EnvFamily.fixed_goals`, Maze2D).
        policy: instead of ``pipe``, a baseline acting every step on the same episodes:
            ``policy(states [n, obs_dim], goals [n, goal_dim] | None) -> actions [n, act_dim]``.
        actions: ``replan`` mode: ``"plan"`` or ``"inverse"`` (see :mod:`diffplan.planning.execution`).
        walls: PointMaze only: the planner is given the maze map (plans through walls rank last).

    Raises:
        ValueError: no env id, bad counts, not exactly one of ``pipe`` and ``policy``, or a run
            whose dimensions do not match the env.
    """
    env_id = _check_request(pipe=pipe, policy=policy, env_id=env_id, mode=mode, replan_every=replan_every,
                            walls=walls, task=task, episodes=episodes, num_envs=num_envs)  # fmt: skip
    num_envs = min(num_envs, episodes)
    actor: Policy
    if pipe is not None:
        executed = planner_policy(pipe, n_envs=num_envs, seed=seed, env_id=env_id, mode=mode,
                                  replan_every=replan_every, actions=actions, walls=walls, plan=plan)  # fmt: skip
        chosen = {} if plan is None else plan.changes_from(pipe.plan_config)
        actor, planner = executed, chosen | {"mode": mode, "replan_every": executed.replan_every}
        planner |= {"actions": actions} if mode == "replan" else {}
    else:
        assert policy is not None  # checked above: exactly one of the two
        actor, planner = CallablePolicy(policy, num_envs), {"mode": "replan", "replan_every": 1}
    result = rollout(
        env_id=env_id, policy=actor, episodes=episodes, seed=seed, num_envs=num_envs,
        env_kwargs={} if max_episode_steps is None else {"max_episode_steps": max_episode_steps},
        reset_options=family(env_id).reset_options(env_id, task),
        observers=[_EpisodePictures(env_id, plots_dir, mode)] if plots_dir is not None else [],
        progress=progress,
    )  # fmt: skip
    extra = ({"walls": True} if walls else {}) | ({"task": task} if result.success is not None else {})
    return summarize(pipe=pipe, env_id=env_id, seed=seed, result=result, num_envs=num_envs, planner=planner | extra)


def summarize(
    *,
    pipe: ValueGuidedRLPipeline | None,
    env_id: str,
    seed: int,
    result: RolloutResult,
    num_envs: int,
    planner: dict[str, Any],
) -> EvalResult:
    """Scores of finished episodes, normalized with the run's (or the env's) reference returns.

    Args:
        pipe: the pipeline that acted (its run record holds the reference returns), or ``None``.
        env_id: environment.
        seed: base seed of the episodes.
        result: the rollout's returns, lengths, successes and timing.
        num_envs: envs planned together.
        planner: planner settings to record.
    """
    returns, success = np.asarray(result.returns, dtype=np.float64), result.success
    seconds, decisions, plans = result.seconds_acting, result.decisions, result.plans
    info = pipe.info if pipe is not None else None
    refs = reference_scores(
        env_id, ref_min=info.ref_min_score if info else None, ref_max=info.ref_max_score if info else None
    )
    norm = np.array([refs.normalize(r) for r in returns]) if refs else None
    return EvalResult(
        env_id=env_id,
        episodes=len(returns),
        seed=seed,
        returns=returns.tolist(),
        lengths=np.asarray(result.lengths).tolist(),
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
