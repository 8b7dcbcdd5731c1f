"""envs/family.py: what each environment family tells evaluation, execution, rendering and collection."""

import numpy as np
import pytest

from diffplan.envs.family import LOCOMOTION, POINTMAZE, family, is_maze
from diffplan.envs.maze import FIXED_GOAL_CELLS, WallCost, track_action
from diffplan.envs.specs import action_bounds


def test_ids_map_to_their_family() -> None:
    assert family("PointMaze_Large-v3") is POINTMAZE and family("PointMaze_UMazeDense-v3") is POINTMAZE
    assert family("Hopper-v5") is LOCOMOTION and family("AntMaze_UMaze-v5") is LOCOMOTION and family(None) is LOCOMOTION
    assert is_maze("PointMaze_UMaze-v3") and not is_maze("Hopper-v5") and not is_maze(None)


def test_a_maze_has_a_map_a_tracker_and_fixed_goals() -> None:
    assert POINTMAZE.has_map and POINTMAZE.goal_conditioned and POINTMAZE.track is track_action
    assert isinstance(POINTMAZE.wall_cost("PointMaze_UMaze-v3"), WallCost)
    goal = POINTMAZE.reset_options("PointMaze_UMaze-v3", "single")["goal_cell"]
    assert tuple(goal) == FIXED_GOAL_CELLS["PointMaze_UMaze-v3"]
    assert POINTMAZE.reset_options("PointMaze_UMaze-v3", "multi") is None
    assert POINTMAZE.collect_env_kwargs == {"continuing_task": True, "reset_target": True}


def test_locomotion_has_none_of_them_and_refuses_a_single_goal() -> None:
    assert not LOCOMOTION.has_map and LOCOMOTION.track is None and LOCOMOTION.render_camera == "track"
    with pytest.raises(ValueError, match=r"task 'single' needs a fixed goal; known for .*, not Hopper-v5"):
        LOCOMOTION.reset_options("Hopper-v5", "single")
    with pytest.raises(ValueError, match="unknown task 'both'"):
        LOCOMOTION.reset_options("Hopper-v5", "both")


def test_action_bounds_are_read_once_and_cannot_be_changed() -> None:
    low, high = action_bounds("Hopper-v5")
    assert low.shape == high.shape == (3,) and np.all(low == -1) and np.all(high == 1)
    assert action_bounds("Hopper-v5")[0] is low  # cached
    with pytest.raises(ValueError):
        low[0] = 5.0
