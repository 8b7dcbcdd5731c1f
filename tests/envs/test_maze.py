"""envs/maze.py: the maze map as a ranking cost."""

import numpy as np


def test_wall_cost_counts_points_inside_walls() -> None:
    from diffplan.envs.maze import WallCost
    from diffplan.envs.specs import make_env

    env = make_env("PointMaze_UMaze-v3")
    cost = WallCost(env, samples=4, weight=100.0)
    maze = env.unwrapped.maze
    xy = np.random.default_rng(0).uniform(-2.4, 2.4, (50, 2))
    rows, cols = cost.cells(xy)
    assert all((r, c) == tuple(maze.cell_xy_to_rowcol(p)) for r, c, p in zip(rows, cols, xy))
    # U-Maze: free top row (y = 1), right column (x = 1) and bottom row (y = -1); wall at (-1, 0) and (0, 0)
    around = np.array([[-1.0, -1.0], [0.0, -1.0], [1.0, -1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 1.0]])
    through = np.array([[-1.0, -1.0], [-1.0, 0.0], [-1.0, 1.0]])
    plans = np.zeros((2, 7, 4))
    plans[0, :, :2] = around
    plans[1, :, :2] = np.concatenate([through, np.repeat(through[-1:], 4, axis=0)])
    costs = cost(plans)
    assert costs[0] == 0.0 and costs[1] >= 100.0 and costs[1] % 100 == 0
    env.close()
