"""PointMaze helpers: the maze grid, shortest paths and D4RL's maze2d waypoint controller.

The controller follows D4RL's recipe: a shortest path over the free cells of the maze grid
gives the next waypoint (the centre of the next cell, or the goal itself in the goal cell), and
a PD controller pushes the point mass towards it, ``a = clip(kp (w - x) + kd v, -1, 1)``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

# One fixed goal cell (row, col) per maze for single-task evaluation, as D4RL maze2d's
# evaluation maps place one goal: the far end of each maze from its usual start region.
FIXED_GOAL_CELLS: dict[str, tuple[int, int]] = {
    "PointMaze_UMaze-v3": (3, 1),
    "PointMaze_Medium-v3": (6, 6),
    "PointMaze_Large-v3": (7, 10),
}


def maze_grid(env: Any) -> np.ndarray:
    """``[rows, cols]`` int array of the maze (1 wall, 0 free) of a PointMaze env."""
    return np.array(env.unwrapped.maze.maze_map, dtype=int) != 1


def shortest_path(free: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
    """Cells from ``start`` to ``goal`` (both included) over 4-connected free cells (BFS).

    Raises:
        ValueError: a cell is a wall or the goal is unreachable.
    """
    for name, cell in (("start", start), ("goal", goal)):
        if not (0 <= cell[0] < free.shape[0] and 0 <= cell[1] < free.shape[1]) or not free[cell]:
            raise ValueError(f"{name} cell {cell} is not a free cell of the maze")
    prev: dict[tuple[int, int], tuple[int, int] | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            break
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nxt = (cell[0] + dr, cell[1] + dc)
            if 0 <= nxt[0] < free.shape[0] and 0 <= nxt[1] < free.shape[1] and free[nxt] and nxt not in prev:
                prev[nxt] = cell
                queue.append(nxt)
    if goal not in prev:
        raise ValueError(f"goal cell {goal} cannot be reached from {start}")
    path = [goal]
    back = prev[goal]
    while back is not None:
        path.append(back)
        back = prev[back]
    return path[::-1]


class WaypointController:
    """D4RL maze2d's expert: shortest-path waypoints and a PD controller.

    Args:
        env: a PointMaze env (Gymnasium-Robotics).
        p_gain: proportional gain on the waypoint error.
        d_gain: gain on the velocity (negative: damping).
    """

    def __init__(self, env: Any, *, p_gain: float = 10.0, d_gain: float = -1.0) -> None:
        self.maze = env.unwrapped.maze
        self.free = maze_grid(env)
        self.p_gain, self.d_gain = p_gain, d_gain

    def cell(self, xy: np.ndarray) -> tuple[int, int]:
        """Grid cell ``(row, col)`` of a position ``xy: [2]``."""
        r, c = self.maze.cell_xy_to_rowcol(np.asarray(xy))
        return int(r), int(c)

    def waypoint(self, pos: np.ndarray, goal: np.ndarray) -> np.ndarray:
        """Next waypoint ``[2]`` on the shortest path from ``pos`` to ``goal``."""
        path = shortest_path(self.free, self.cell(pos), self.cell(goal))
        if len(path) == 1:
            return np.asarray(goal, dtype=np.float64)
        return np.asarray(self.maze.cell_rowcol_to_xy(np.array(path[1])), dtype=np.float64)

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Action ``[2]`` for a PointMaze observation dict."""
        state = obs["observation"]
        pos, vel = state[:2], state[2:4]
        target = self.waypoint(pos, obs["desired_goal"])
        return np.clip(self.p_gain * (target - pos) + self.d_gain * vel, -1.0, 1.0).astype(np.float32)


# PointMaze counts the goal as reached within this distance (gymnasium-robotics ``maze_v4``).
GOAL_RADIUS = 0.45


def track_action(
    *,
    plan: np.ndarray,
    t: int,
    state: np.ndarray,
    stride: int = 1,
    goal: np.ndarray | None = None,
    p_gain: float = 5.0,
    d_gain: float = 1.0,
) -> np.ndarray:
    """PD action that follows planned waypoints (Diffuser's Maze2D ``track`` execution).

    The target at environment step ``t + 1`` is the plan interpolated linearly between its
    planned steps (``stride`` environment steps apart). With a ``goal``, the plan is followed
    only up to its first step within :data:`GOAL_RADIUS` of the goal; from there the target is
    the goal at rest (a plan inpainted to end at the goal may wander before its last step).

    Args:
        plan: ``[H, 4]`` planned states ``(x, y, vx, vy)``.
        t: environment steps executed since the plan was made.
        state: ``[4]`` current state.
        stride: environment steps between planned steps.
        goal: ``[2]`` goal position, or ``None``.
        p_gain: gain on the position error to the next waypoint (Diffuser's Maze2D controller
            used 1; 5 follows sharp turns round wall corners better, see RESULTS.md's maze section).
        d_gain: gain on the velocity error to the next waypoint's velocity.

    Returns:
        ``[2]`` action in ``[-1, 1]``.
    """
    plan = np.asarray(plan, dtype=np.float64)
    end = len(plan) - 1
    if goal is not None:
        near = np.flatnonzero(np.linalg.norm(plan[:, :2] - np.asarray(goal)[None, :2], axis=1) < GOAL_RADIUS)
        if near.size:
            end = int(near[0])
    u = (t + 1) / stride  # fractional plan index of the next environment step
    if u < end:
        k = int(u)
        frac = u - k
        target = (1 - frac) * plan[k] + frac * plan[k + 1]
    else:  # past the plan's end (or its arrival at the goal): hold that point at rest
        hold = plan[end, :2] if goal is None else np.asarray(goal, dtype=np.float64)[:2]
        target = np.concatenate([hold, np.zeros(2)])
    action = p_gain * (target[:2] - state[:2]) + d_gain * (target[2:4] - state[2:4])
    return np.clip(action, -1.0, 1.0)


def wall_cells(env: Any) -> list[np.ndarray]:
    """Centres ``[2]`` of the wall cells of a PointMaze env, in world coordinates."""
    maze = env.unwrapped.maze
    free = maze_grid(env)
    return [
        np.asarray(maze.cell_rowcol_to_xy(np.array([r, c])), dtype=np.float64)
        for r in range(free.shape[0])
        for c in range(free.shape[1])
        if not free[r, c]
    ]


class WallCost:
    """Ranking cost of plans that cross the walls of a known maze map.

    Each segment between consecutive planned positions is sampled at ``samples`` points; the cost
    of a plan is ``weight`` times the number of those points that fall in a wall cell (or off the
    map), so with the default weight any plan through a wall ranks below every plan that avoids
    them. Pass it as ``pipe.plan(..., cost=WallCost(env))`` (``evaluate(walls=True)``).

    Args:
        env: a PointMaze env (its maze map is read once).
        samples: points per planned segment.
        weight: cost per point inside a wall.
    """

    def __init__(self, env: Any, *, samples: int = 4, weight: float = 100.0) -> None:
        maze = env.unwrapped.maze
        self.free = maze_grid(env)
        self.scale, self.x_center, self.y_center = maze.maze_size_scaling, maze.x_map_center, maze.y_map_center
        self.samples, self.weight = samples, weight

    def cells(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grid ``(rows, cols)`` of positions ``xy: [..., 2]`` (Gymnasium-Robotics' ``cell_xy_to_rowcol``)."""
        rows = np.floor((self.y_center - xy[..., 1]) / self.scale).astype(int)
        cols = np.floor((xy[..., 0] + self.x_center) / self.scale).astype(int)
        return rows, cols

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        """Cost ``[...]`` of plans ``observations: [..., H, obs_dim]`` (positions in the first two dims)."""
        xy = np.asarray(observations, dtype=np.float64)[..., :2]
        frac = np.arange(self.samples)[:, None] / self.samples  # [samples, 1]
        points = xy[..., :-1, None, :] * (1 - frac) + xy[..., 1:, None, :] * frac  # [..., H-1, samples, 2]
        rows, cols = self.cells(points)
        inside = (rows >= 0) & (rows < self.free.shape[0]) & (cols >= 0) & (cols < self.free.shape[1])
        free = np.zeros(rows.shape, dtype=bool)
        free[inside] = self.free[rows[inside], cols[inside]]
        return self.weight * (~free).sum(axis=(-2, -1))
