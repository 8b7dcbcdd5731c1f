"""One object per environment family: what evaluation, execution, rendering and data collection need
to know about an environment beyond its spaces, so that none of them tests environment names.

``family(env_id)`` answers for any id: the PointMaze family (goal-conditioned, a map to draw and to
rank plans against, a PD controller that tracks planned positions, one fixed goal per maze for the
single-goal task, a waypoint controller as its expert) or the locomotion family (none of those;
SAC behaviour policies, a camera that follows the body).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from diffplan.envs.maze import FIXED_GOAL_CELLS, WallCost, WaypointController, track_action
from diffplan.envs.specs import make_env

Cost = Callable[[np.ndarray], np.ndarray]
"""Ranking cost of finished plans: ``cost(observations [..., H, obs_dim]) -> [...]``."""
Tracker = Callable[..., np.ndarray]
"""Action that follows planned states: ``tracker(plan=[H, S], t=, state=[S], stride=, goal=) -> [A]``."""


def _wall_cost(env_id: str) -> Cost:
    env = make_env(env_id)
    cost = WallCost(env)
    env.close()
    return cost


@dataclass(frozen=True)
class EnvFamily:
    """What diffplan knows about a family of environments.

    Attributes:
        name: ``"pointmaze"`` or ``"locomotion"``.
        prefixes: environment ids starting with one of these belong to the family (empty: the default).
        goal_conditioned: episodes have goals, which plans inpaint.
        fixed_goals: environment id -> the goal cell ``(row, col)`` of its single-goal task (Maze2D).
        track: a controller following planned states (``evaluate(mode="track")``), or ``None``.
        wall_cost: environment id -> ranking cost of plans through its walls (``walls=True``), or ``None``.
        render_camera: the MuJoCo camera of videos (``None``: the environment's default).
        behavior: the data-collection behaviour of its experts (``"sac"`` or ``"waypoint"``).
        collect_env_kwargs: ``make_env`` keywords when collecting data (e.g. a maze's continuing task).
        expert: environment -> the scripted expert's ``act(obs)`` (``None``: trained SAC policies).
    """

    name: str
    prefixes: tuple[str, ...] = ()
    goal_conditioned: bool = False
    fixed_goals: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    track: Tracker | None = None
    wall_cost: Callable[[str], Cost] | None = None
    render_camera: str | None = None
    behavior: str = "sac"
    collect_env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    expert: Callable[[Any], Callable[[Any], np.ndarray]] | None = None

    @property
    def has_map(self) -> bool:
        """A map to draw plans over and to rank them against (mazes)."""
        return self.wall_cost is not None

    def reset_options(self, env_id: str, task: str) -> dict[str, Any] | None:
        """Reset options of ``task``: ``"single"``'s fixed goal cell, or ``None`` (a random goal).

        Raises:
            ValueError: an unknown task, or ``"single"`` where the environment has no fixed goal.
        """
        if task not in ("multi", "single"):
            raise ValueError(f"unknown task {task!r}; expected 'multi' or 'single'")
        if task == "multi":
            return None
        if env_id not in self.fixed_goals:
            known = sorted(FIXED_GOAL_CELLS)
            raise ValueError(f"task 'single' needs a fixed goal; known for {known}, not {env_id}")
        return {"goal_cell": np.array(self.fixed_goals[env_id])}


POINTMAZE = EnvFamily(
    name="pointmaze",
    prefixes=("PointMaze",),
    goal_conditioned=True,
    fixed_goals=FIXED_GOAL_CELLS,
    track=track_action,
    wall_cost=_wall_cost,
    behavior="waypoint",
    collect_env_kwargs={"continuing_task": True, "reset_target": True},
    expert=WaypointController,
)
LOCOMOTION = EnvFamily(name="locomotion", render_camera="track")  # the camera that follows the body
FAMILIES = (POINTMAZE, LOCOMOTION)


def is_maze(env_id: str | None) -> bool:
    """Whether ``env_id`` is a Gymnasium-Robotics point maze (goal-conditioned, planned by inpainting goals)."""
    return family(env_id) is POINTMAZE


def family(env_id: str | None) -> EnvFamily:
    """The family of ``env_id`` (locomotion for ids of no other family, and for ``None``)."""
    for fam in FAMILIES:
        if env_id is not None and fam.prefixes and env_id.startswith(fam.prefixes):
            return fam
    return LOCOMOTION
