"""How plans become actions: the execution policies of a planner, and baselines, for :func:`diffplan.rollout.rollout`.

* ``replan`` with the plan's actions: plan every ``replan_every`` environment steps; in between,
  each planned action is held for the run's ``stride`` steps (Diffuser's closed loop).
* ``replan`` with ``actions="inverse"``: the same plans, but every step acts with the run's learned
  inverse dynamics towards the next planned state.
* ``track``: plan once per episode and follow the planned states with a PD controller
  (Diffuser's Maze2D results); with a :class:`~diffplan.envs.maze.WallCost`, a best plan that still
  crosses a wall is sampled again (:data:`WALL_RETRIES`).
* :class:`CallablePolicy`: a plain function of states (and goals), acting every step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from diffplan.envs.maze import WallCost, track_action
from diffplan.planning.planner import Planner

if TYPE_CHECKING:
    from diffplan.planning.pipeline import Plan, ValueGuidedRLPipeline

# track mode with a wall cost: a plan whose best sample still crosses a wall is sampled again up to
# this many times (the episode keeps the last one).
WALL_RETRIES = 3
MODES = ("replan", "track")
ACTIONS = ("plan", "inverse")


class PlannerPolicy:
    """A :class:`~diffplan.planning.planner.Planner` executed in ``mode`` (see the module docstring).

    Args:
        pipe: the run's pipeline.
        n_envs: environments acted for.
        mode: ``"replan"`` or ``"track"``.
        replan_every: ``replan`` mode: environment steps between plans (default: the stride of the
            plans, see :meth:`~diffplan.planning.pipeline.ValueGuidedRLPipeline.plan_stride`).
        actions: ``replan`` mode: ``"plan"`` (the plan's actions) or ``"inverse"`` (inverse dynamics).
        wall_cost: PointMaze map cost: plans through walls rank last (and are resampled in ``track``).
        generator: random stream of the plans.
        plan_kwargs: keyword arguments of ``pipe.plan`` (and the planner's warm-start settings).

    Raises:
        ValueError: unknown mode or actions, ``replan_every < 1``, or inverse actions without an
            inverse dynamics model or outside ``replan`` mode.
    """

    def __init__(
        self,
        pipe: ValueGuidedRLPipeline,
        *,
        n_envs: int,
        mode: str = "replan",
        replan_every: int | None = None,
        actions: str = "plan",
        wall_cost: WallCost | None = None,
        generator: torch.Generator | None = None,
        plan_kwargs: dict | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected 'replan' or 'track'")
        if actions not in ACTIONS:
            raise ValueError(f"unknown actions {actions!r}; expected 'plan' or 'inverse'")
        if actions == "inverse" and (mode != "replan" or pipe.inverse_dynamics is None):
            raise ValueError(
                "actions='inverse' needs mode='replan' and a run with an inverse dynamics model "
                "(train one with `diffplan train ... --resume --train.inverse-steps N`)"
            )
        self.stride = pipe.plan_stride(coarse_to_fine=(plan_kwargs or {}).get("coarse_to_fine"))
        self.replan_every = self.stride if replan_every is None else replan_every
        if self.replan_every < 1:
            raise ValueError(f"expected replan_every >= 1, got {self.replan_every}")
        extra = {} if wall_cost is None else {"cost": wall_cost}
        self.pipe, self.mode, self.actions, self.wall_cost = pipe, mode, actions, wall_cost
        self.planner = Planner(pipe, n_envs=n_envs, **dict(plan_kwargs or {}), **extra)
        self.generator = generator
        self.since_plan = np.zeros(n_envs, dtype=int)  # steps executed since each env's last plan
        self.has_plan = np.zeros(n_envs, dtype=bool)
        self.plans_made = 0

    @property
    def plans(self) -> list[Plan | None]:
        """Per env, its latest plans (see :attr:`Planner.plans`)."""
        return self.planner.plans

    def act(self, state: np.ndarray, goal: np.ndarray | None, active: np.ndarray) -> np.ndarray:
        """Actions ``[n, act_dim]``: new plans where due, the current plans' execution elsewhere."""
        if self.mode == "track":
            need = active & ~self.has_plan
        else:
            need = active & (~self.has_plan | (self.since_plan >= self.replan_every))
        actions = np.zeros((len(active), self.pipe.act_dim))
        if need.any():
            self.plans_made += int(need.sum())
            actions = self.planner.act(state, goal=goal, active=need, generator=self.generator)
            for _ in range(WALL_RETRIES if self.wall_cost is not None and self.mode == "track" else 0):
                again = need & np.array(
                    [
                        p is not None and self.wall_cost(p.observations[0]) > 0  # type: ignore[misc]
                        for p in self.planner.plans
                    ]
                )
                if not again.any():
                    break
                self.plans_made += int(again.sum())
                actions[again] = self.planner.act(state, goal=goal, active=again, generator=self.generator)[again]
            self.since_plan[need], self.has_plan[need] = 0, True
        follow = active & ~need
        if self.actions == "inverse":  # every step: inverse dynamics towards the next planned state
            rows = np.flatnonzero(active)
            planned = np.stack([self.planner.plans[i].observations[0] for i in rows])  # type: ignore[union-attr]
            nxt = np.minimum(self.since_plan[rows] // self.stride + 1, planned.shape[1] - 1)
            actions[rows] = self.pipe.inverse_action(
                state=state[rows],
                target=planned[np.arange(len(rows)), nxt],
                lookahead=np.maximum(nxt * self.stride - self.since_plan[rows], 1),
            )
            follow[:] = False
        for i in np.flatnonzero(follow):
            best = self.planner.plans[i]
            assert best is not None
            if self.mode == "track":
                actions[i] = track_action(
                    plan=best.observations[0],
                    t=int(self.since_plan[i]),
                    state=state[i],
                    stride=self.stride,
                    goal=None if goal is None else goal[i],
                )
            else:  # each planned action is held for `stride` environment steps
                k = min(int(self.since_plan[i]) // self.stride, best.actions.shape[1] - 1)
                actions[i] = best.actions[0, k]
        self.since_plan += 1
        return actions

    def reset(self, mask: np.ndarray) -> None:
        """The envs in ``mask`` start new episodes: plan from scratch there."""
        self.planner.reset(mask)
        self.has_plan[mask] = False


class CallablePolicy:
    """A plain policy ``(states [n, S], goals [n, G] | None) -> actions [n, A]`` acting every step."""

    def __init__(self, fn: Callable[[np.ndarray, np.ndarray | None], np.ndarray], n_envs: int) -> None:
        self.fn, self.plans_made = fn, 0
        self.plans: list[Plan | None] = [None] * n_envs  # a plain policy makes no plans

    def act(self, state: np.ndarray, goal: np.ndarray | None, active: np.ndarray) -> np.ndarray:
        """The function's actions, zero where not ``active``."""
        self.plans_made += int(np.sum(active))
        return np.asarray(self.fn(state, goal), dtype=np.float64) * np.asarray(active)[:, None]

    def reset(self, mask: np.ndarray) -> None:
        """Nothing to forget."""
