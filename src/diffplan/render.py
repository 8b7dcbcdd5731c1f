"""Episodes rendered for people: MuJoCo videos (headless), planned-vs-executed plots, maze pictures
(the figures themselves are drawn by :mod:`diffplan.plots`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from diffplan.envs.family import family
from diffplan.evaluation import evaluate, planner_policy
from diffplan.io import atomic_path
from diffplan.plots import plot_denoising, plot_plan_vs_executed
from diffplan.rollout import Observer, Policy, RolloutResult, rollout

if TYPE_CHECKING:
    from diffplan.config import PlanConfig
    from diffplan.planning.pipeline import ValueGuidedRLPipeline


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render_episode` wrote.

    Attributes:
        video: the MP4 (or GIF) of the episode.
        plot: PNG of planned vs executed states.
        frames: frames in the video (steps + 1).
        episode_return: undiscounted return.
        steps: environment steps.
        seconds_acting: wall time spent choosing actions (planning), rendering excluded.
        rollout: the episode as :func:`diffplan.rollout.rollout` measured it.
        replan_every: environment steps between plans (the run's stride).
    """

    video: Path
    plot: Path
    frames: int
    episode_return: float
    steps: int
    seconds_acting: float
    rollout: RolloutResult
    replan_every: int


def _writer_path(out: Path) -> Path:
    try:
        import imageio_ffmpeg  # noqa: F401

        return out.with_suffix(".mp4")
    except ImportError:
        return out.with_suffix(".gif")


class _Recorder(Observer):
    """Frames of env 0, its states at each decision and its first plan."""

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.states: list[np.ndarray] = []
        self.first_plan: np.ndarray | None = None

    def started(self, envs: Any) -> None:
        self.frames.append(envs.render()[0])

    def acted(
        self, *, env_index: int, episode: int, state: np.ndarray, goal: np.ndarray | None, policy: Policy
    ) -> None:
        self.states.append(np.asarray(state, dtype=np.float64))
        plan = policy.plans[env_index]
        if self.first_plan is None and plan is not None:  # the plan the first decision was taken from
            self.first_plan = plan.observations[0]

    def stepped(self, envs: Any) -> None:
        self.frames.append(envs.render()[0])


def render_episode(
    *,
    pipe: ValueGuidedRLPipeline,
    out_dir: str | Path,
    seed: int = 0,
    env_id: str | None = None,
    max_episode_steps: int | None = None,
    plan: PlanConfig | None = None,
    width: int = 320,
    height: int = 240,
    fps: int = 30,
) -> RenderResult:
    """One episode with the planner executed as :func:`diffplan.evaluation.evaluate` executes it,
    recording frames, the states at each decision and the first plan.

    Rendering is offscreen: ``MUJOCO_GL`` defaults to ``egl`` (set it to ``osmesa`` where EGL is
    missing).

    Args:
        pipe: a ``ValueGuidedRLPipeline``.
        out_dir: folder for ``episode.mp4`` (GIF without ffmpeg) and ``plan_vs_executed.png``.
        seed: reset seed and planner seed.
        env_id: environment (default: the run's).
        max_episode_steps: cut the episode at this many steps.
        plan: planner settings (default: the run's).
        width: frame width in pixels.
        height: frame height in pixels.
        fps: video frame rate.

    Returns:
        Paths and counts of what was written.
    """
    os.environ.setdefault("MUJOCO_GL", "egl")
    import imageio.v2 as imageio

    env_id = env_id or (pipe.info.env_id if pipe.info else None)
    if env_id is None:
        raise ValueError("the run records no env id; pass env_id=")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"render_mode": "rgb_array", "width": width, "height": height}
    camera = family(env_id).render_camera
    if camera is not None:
        kwargs["camera_name"] = camera
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    policy = planner_policy(pipe, n_envs=1, seed=seed, env_id=env_id, plan=plan)
    recorder = _Recorder()
    result = rollout(
        env_id=env_id, policy=policy, episodes=1, seed=seed, env_kwargs=kwargs, observers=[recorder], progress=False
    )
    video = _writer_path(out / "episode")
    with atomic_path(video) as tmp:
        if video.suffix == ".mp4":
            imageio.mimsave(tmp, recorder.frames, fps=fps)
        else:
            imageio.mimsave(tmp, recorder.frames, duration=1 / fps)
    if recorder.first_plan is None:
        raise ValueError("the episode ended before its first plan was made")
    plot = plot_plan_vs_executed(
        planned=recorder.first_plan,
        executed=np.stack(recorder.states),
        path=out / "plan_vs_executed.png",
        title=f"{env_id}: first plan vs executed",
    )
    return RenderResult(
        video=video,
        plot=plot,
        frames=len(recorder.frames),
        episode_return=float(result.returns[0]),
        steps=int(result.lengths[0]),
        seconds_acting=result.seconds_acting,
        rollout=result,
        replan_every=policy.replan_every,
    )


@dataclass(frozen=True)
class MazeRenderResult:
    """What :func:`render_maze` wrote.

    Attributes:
        picture: PNG of the walls, the sampled plans, the chosen plan and the executed path.
        denoising: PNG strip of one plan (from the episode's start to its goal) at several denoising steps.
        success: the goal was reached.
        episode_return: undiscounted return.
    """

    picture: Path
    denoising: Path
    success: bool
    episode_return: float


def render_maze(
    *,
    pipe: ValueGuidedRLPipeline,
    out_dir: str | Path,
    seed: int = 0,
    env_id: str | None = None,
    mode: str = "track",
    task: str = "multi",
    max_episode_steps: int | None = None,
    plan: PlanConfig | None = None,
    actions: str = "plan",
    walls: bool = False,
) -> MazeRenderResult:
    """One PointMaze episode drawn over the maze, and a strip of one plan being denoised.

    The strip is a separate sample (batch 2, the same seed) from the episode's start towards its
    goal: the episode itself is run by :func:`diffplan.evaluation.evaluate`, which keeps no
    intermediate denoising steps.

    Args:
        pipe: a goal-reaching ``ValueGuidedRLPipeline`` (PointMaze run).
        out_dir: folder for ``episode_000.png`` and ``denoising.png``.
        seed: reset seed and planner seed.
        env_id: environment (default: the run's).
        mode: ``"track"`` or ``"replan"`` (see :func:`diffplan.evaluation.evaluate`).
        task: ``"multi"`` or ``"single"``.
        max_episode_steps: cut the episode at this many steps.
        plan: planner settings (default: the run's).
        actions: ``replan`` mode's actions, ``"plan"`` or ``"inverse"`` (see ``evaluate``).
        walls: rank plans through the maze's walls last (see ``evaluate``).

    Returns:
        Paths of the pictures and the episode's outcome.
    """
    from diffplan.envs.specs import make_env

    env_id = env_id or (pipe.info.env_id if pipe.info else None)
    if env_id is None or not family(env_id).has_map:
        raise ValueError(f"render_maze needs a PointMaze run, got env {env_id!r}")
    out = Path(out_dir)
    res = evaluate(
        pipe=pipe,
        episodes=1,
        seed=seed,
        env_id=env_id,
        mode=mode,
        task=task,
        plots_dir=out,
        max_episode_steps=max_episode_steps,
        plan=plan,
        progress=False,
        actions=actions,
        walls=walls,
    )
    env = make_env(env_id)
    obs, _ = env.reset(seed=seed, options=family(env_id).reset_options(env_id, task))  # the episode's start and goal
    strip = plot_denoising(
        pipe=pipe,
        obs=obs["observation"],
        goal=obs["desired_goal"],
        env=env,
        path=out / "denoising.png",
        seed=seed,
        plan=plan,
    )
    env.close()
    return MazeRenderResult(
        picture=out / "episode_000.png", denoising=strip, success=bool(res.success_rate), episode_return=res.returns[0]
    )
