"""Figures, written atomically as PNG: planned vs executed states, maze plans and paths, the denoising process.

Only matplotlib drawing lives here (no episodes are run): :mod:`diffplan.evaluation` and
:mod:`diffplan.render` run the episodes and call these, and training draws its loss curves.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from diffplan.io import atomic_path

if TYPE_CHECKING:
    from diffplan.config import PlanConfig
    from diffplan.planning.pipeline import ValueGuidedRLPipeline


def plot_plan_vs_executed(
    *, planned: np.ndarray, executed: np.ndarray, path: str | Path, title: str = "", dims: int = 6
) -> Path:
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
    """Write a matplotlib figure as PNG atomically (:func:`diffplan.io.atomic_path`) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return Path(path)


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


def plot_maze(
    *,
    env: Any,
    plans: np.ndarray | None,
    executed: np.ndarray | None,
    goal: np.ndarray | None,
    path: str | Path,
    title: str = "",
) -> Path:
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


def plot_denoising(
    *,
    pipe: ValueGuidedRLPipeline,
    obs: np.ndarray,
    path: str | Path,
    goal: np.ndarray | None = None,
    env: Any = None,
    panels: int = 5,
    seed: int = 0,
    plan: PlanConfig | None = None,
) -> Path:
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
        plan: planner settings (default: the run's; two plans are sampled, the first drawn).

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    snapshots: list[tuple[int, np.ndarray]] = []

    def keep(i: int, t: int, x: torch.Tensor) -> None:
        states = x[0, :, pipe.plan_act_dim :].detach().double().cpu().numpy()  # states-only runs too
        snapshots.append((t, pipe.normalizer.observations.unnormalize(states)))

    settings = replace(pipe.plan_config if plan is None else plan, batch_size=2)  # the first plan is drawn
    pipe.sample(obs, settings=settings, goal=goal, generator=torch.Generator().manual_seed(seed), callback=keep)
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
