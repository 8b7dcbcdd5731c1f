"""Pictures of plans: MuJoCo episode videos (headless) and planned-vs-executed state plots."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


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
    """

    video: Path
    plot: Path
    frames: int
    episode_return: float
    steps: int
    seconds_acting: float = 0.0


def _writer_path(out: Path) -> Path:
    try:
        import imageio_ffmpeg  # noqa: F401

        return out.with_suffix(".mp4")
    except ImportError:
        return out.with_suffix(".gif")


def render_episode(*, pipe: Any, out_dir: str | Path, seed: int = 0, env_id: str | None = None,
                   max_episode_steps: int | None = None, plan_kwargs: dict[str, Any] | None = None,
                   width: int = 320, height: int = 240, fps: int = 30) -> RenderResult:
    """Run one episode with the planner, recording frames, executed states and the first plan.

    Rendering is offscreen: ``MUJOCO_GL`` defaults to ``egl`` (set it to ``osmesa`` where EGL is
    missing).

    Args:
        pipe: a ``ValueGuidedRLPipeline``.
        out_dir: folder for ``episode.mp4`` (GIF without ffmpeg) and ``plan_vs_executed.png``.
        seed: reset seed and planner seed.
        env_id: environment (default: the run's).
        max_episode_steps: cut the episode at this many steps.
        plan_kwargs: keyword arguments of ``pipe.plan``.
        width: frame width in pixels.
        height: frame height in pixels.
        fps: video frame rate.

    Returns:
        Paths and counts of what was written.
    """
    os.environ.setdefault("MUJOCO_GL", "egl")
    import imageio.v2 as imageio
    import torch

    from diffplan.envs.specs import make_env
    from diffplan.planning.planner import Planner

    env_id = env_id or (pipe.info.env_id if pipe.info else None)
    if env_id is None:
        raise ValueError("the run records no env id; pass env_id=")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"render_mode": "rgb_array", "width": width, "height": height}
    if not env_id.startswith("PointMaze"):
        kwargs["camera_name"] = "track"  # the locomotion models' camera that follows the body
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    env = make_env(env_id, **kwargs)
    planner = Planner(pipe, n_envs=1, **(plan_kwargs or {}))
    generator = torch.Generator().manual_seed(seed)
    obs, _ = env.reset(seed=seed)
    frames, executed, total = [env.render()], [np.asarray(obs, dtype=np.float64)], 0.0
    first_plan = None
    done, acting = False, 0.0
    while not done:
        started = time.perf_counter()
        action = planner.act(obs[None], generator=generator)[0]
        acting += time.perf_counter() - started
        if first_plan is None:  # the plan the first decision was taken from, not a second sample
            first_plan = planner.plans[0]["observations"][0]
        obs, reward, terminated, truncated, _ = env.step(action.astype(env.action_space.dtype))
        total += float(reward)
        frames.append(env.render())
        executed.append(np.asarray(obs, dtype=np.float64))
        done = terminated or truncated
    env.close()
    video = _writer_path(out / "episode")
    tmp = video.with_name(f".{video.stem}.tmp{video.suffix}")
    imageio.mimsave(tmp, frames, fps=fps) if video.suffix == ".mp4" else imageio.mimsave(tmp, frames, duration=1 / fps)
    tmp.replace(video)
    plot = plot_plan_vs_executed(planned=first_plan, executed=np.stack(executed),
                                 path=out / "plan_vs_executed.png", title=f"{env_id}: first plan vs executed")
    return RenderResult(video=video, plot=plot, frames=len(frames), episode_return=total, steps=len(frames) - 1,
                        seconds_acting=acting)


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


def render_maze(*, pipe: Any, out_dir: str | Path, seed: int = 0, env_id: str | None = None, mode: str = "track",
                task: str = "multi", max_episode_steps: int | None = None,
                plan_kwargs: dict[str, Any] | None = None, actions: str = "plan",
                walls: bool = False) -> MazeRenderResult:
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
        plan_kwargs: keyword arguments of ``pipe.plan``.
        actions: ``replan`` mode's actions, ``"plan"`` or ``"inverse"`` (see ``evaluate``).
        walls: rank plans through the maze's walls last (see ``evaluate``).

    Returns:
        Paths of the pictures and the episode's outcome.
    """
    from diffplan.envs.maze import FIXED_GOAL_CELLS
    from diffplan.envs.specs import make_env
    from diffplan.evaluation import evaluate

    env_id = env_id or (pipe.info.env_id if pipe.info else None)
    if env_id is None or not env_id.startswith("PointMaze"):
        raise ValueError(f"render_maze needs a PointMaze run, got env {env_id!r}")
    out = Path(out_dir)
    res = evaluate(pipe=pipe, episodes=1, seed=seed, env_id=env_id, mode=mode, task=task, plots_dir=out,
                   max_episode_steps=max_episode_steps, plan_kwargs=plan_kwargs, progress=False, actions=actions,
                   walls=walls)
    env = make_env(env_id)
    options = {"goal_cell": np.array(FIXED_GOAL_CELLS[env_id])} if task == "single" else None
    obs, _ = env.reset(seed=seed, options=options)  # the episode's start and goal
    strip = plot_denoising(pipe=pipe, obs=obs["observation"], goal=obs["desired_goal"], env=env,
                           path=out / "denoising.png", seed=seed, plan_kwargs=plan_kwargs)
    env.close()
    return MazeRenderResult(picture=out / "episode_000.png", denoising=strip, success=bool(res.success_rate),
                            episode_return=res.returns[0])


def plot_plan_vs_executed(*, planned: np.ndarray, executed: np.ndarray, path: str | Path, title: str = "",
                          dims: int = 6) -> Path:
    """Plot the first ``dims`` state dimensions of a plan against the executed trajectory.

    Args:
        planned: ``[H, obs_dim]`` planned observations (the best plan of the first decision).
        executed: ``[T + 1, obs_dim]`` observations met while acting.
        path: PNG to write (atomically).
        title: figure title.
        dims: number of state dimensions shown.

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = min(dims, planned.shape[1])
    cols = 3
    rows = (dims + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for d in range(dims):
        ax = axes[d // cols][d % cols]
        ax.plot(np.arange(len(executed)), executed[:, d], label="executed", color="tab:blue")
        ax.plot(np.arange(len(planned)), planned[:, d], "--", label="planned (first decision)", color="tab:orange")
        ax.set_title(f"state dim {d}")
        ax.set_xlabel("step")
    for d in range(dims, rows * cols):
        axes[d // cols][d % cols].axis("off")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path, dpi=90)


def save_figure(fig: Any, path: str | Path, *, dpi: int = 100) -> Path:
    """Write a matplotlib figure as PNG atomically (temporary file, then rename) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path


def _draw_walls(ax: Any, env: Any) -> None:
    """The wall cells of a PointMaze env as dark squares."""
    from matplotlib.patches import Rectangle

    from diffplan.envs.maze import wall_cells

    size = env.unwrapped.maze.maze_size_scaling
    for c in wall_cells(env):
        ax.add_patch(Rectangle((c[0] - size / 2, c[1] - size / 2), size, size, color="0.25"))


def _maze_limits(ax: Any, env: Any) -> None:
    """Same square frame (the maze's outer walls) for every maze picture."""
    from diffplan.envs.maze import wall_cells

    cells = np.stack(wall_cells(env))
    half = env.unwrapped.maze.maze_size_scaling / 2
    ax.set_xlim(cells[:, 0].min() - half, cells[:, 0].max() + half)
    ax.set_ylim(cells[:, 1].min() - half, cells[:, 1].max() + half)
    ax.set_aspect("equal")


def plot_maze(*, env: Any, plans: np.ndarray | None, executed: np.ndarray | None, goal: np.ndarray | None,
              path: str | Path, title: str = "") -> Path:
    """Maze walls with sampled plans, the chosen plan and the executed path.

    Args:
        env: the PointMaze env (for its walls).
        plans: ``[B, H, >=2]`` planned states, best first (positions in the first two dims).
        executed: ``[T, >=2]`` visited states.
        goal: ``[2]`` goal position.
        path: PNG to write (atomically).
        title: figure title.

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    _draw_walls(ax, env)
    if plans is not None:
        for p in plans[1:]:
            ax.plot(p[:, 0], p[:, 1], color="tab:orange", alpha=0.25, lw=1)
        ax.plot(plans[0][:, 0], plans[0][:, 1], color="tab:red", lw=2, label="chosen plan")
        ax.plot(plans[0][0, 0], plans[0][0, 1], "o", color="tab:green", ms=8, label="start")
    if executed is not None:
        ax.plot(executed[:, 0], executed[:, 1], color="tab:blue", lw=2, label="executed")
    if goal is not None:
        ax.plot(goal[0], goal[1], "*", color="gold", ms=16, mec="k", label="goal")
    _maze_limits(ax, env)
    ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return save_figure(fig, path, dpi=100)


def plot_denoising(*, pipe: Any, obs: np.ndarray, path: str | Path, goal: np.ndarray | None = None,
                   env: Any = None, panels: int = 5, seed: int = 0, plan_kwargs: dict[str, Any] | None = None) -> Path:
    """A strip of one plan at several denoising steps, from noise to the final plan.

    Mazes (``env`` given): the plan's positions over the walls. Other envs: the first state
    dimensions over the horizon.

    Args:
        pipe: a ``ValueGuidedRLPipeline``.
        obs: ``[obs_dim]`` start observation.
        path: PNG to write (atomically).
        goal: ``[k]`` goal, inpainted as ``pipe.plan`` does.
        env: a PointMaze env for the walls.
        panels: number of denoising steps shown (evenly spaced, the last one included).
        seed: planner seed.
        plan_kwargs: keyword arguments of ``pipe.plan``.

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    snapshots: list[tuple[int, np.ndarray]] = []

    def keep(t: int, x: torch.Tensor) -> None:
        snapshots.append((t, pipe.normalizer.unnormalize(x[0].detach().double().cpu().numpy())[:, pipe.act_dim :]))

    kwargs = dict(plan_kwargs or {}) | {"batch_size": 2}  # the first plan is drawn
    pipe.plan(obs, goal=goal, generator=torch.Generator().manual_seed(seed), callback=keep, **kwargs)
    picks = np.unique(np.linspace(0, len(snapshots) - 1, min(panels, len(snapshots))).round().astype(int))
    fig, axes = plt.subplots(1, len(picks), figsize=(3 * len(picks), 3), squeeze=False)
    for ax, i in zip(axes[0], picks):
        t, states = snapshots[i]
        if env is not None:
            _draw_walls(ax, env)
            ax.plot(states[:, 0], states[:, 1], "-o", ms=2, color="tab:red")
            if goal is not None:
                ax.plot(goal[0], goal[1], "*", color="gold", ms=12, mec="k")
            _maze_limits(ax, env)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            ax.plot(states[:, : min(3, states.shape[1])])
            ax.set_xlabel("plan step")
        ax.set_title(f"after step t={t}", fontsize=9)
    return save_figure(fig, path, dpi=90)
