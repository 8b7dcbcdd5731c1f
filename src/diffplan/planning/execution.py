"""How plans become actions: the execution policies of a planner, and baselines, for :func:`diffplan.rollout.rollout`.

* ``replan`` with the plan's actions: plan every ``replan_every`` environment steps; in between,
  each planned action is held for the run's ``stride`` steps (Diffuser's closed loop).
* ``replan`` with ``actions="inverse"``: the same plans, but every step acts with the run's learned
  inverse dynamics towards the next planned state.
* ``track``: plan once per episode and follow the planned states with a PD controller
  (Diffuser's Maze2D results) with the environment family's tracker; with a wall cost, a best plan
  that still crosses a wall is sampled again (:data:`WALL_RETRIES`).

Plain functions of states (baselines) are :class:`diffplan.rollout.CallablePolicy`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from diffplan.config import PlanConfig
from diffplan.envs.family import Cost, Tracker
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
        wall_cost: map cost: plans through walls rank last (and are resampled in ``track``).
        tracker: ``track`` mode: the controller following the planned states (see
            :attr:`~diffplan.envs.family.EnvFamily.track`).
        generator: random stream of the plans.
        settings: the planner's settings (default: the run's, ``pipe.plan_config``).

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
        wall_cost: Cost | None = None,
        tracker: Tracker | None = None,
        generator: torch.Generator | None = None,
        settings: PlanConfig | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected 'replan' or 'track'")
        if mode == "track" and tracker is None:
            raise ValueError("mode 'track' follows the planned states with the environment's tracker; pass tracker=")
        if actions not in ACTIONS:
            raise ValueError(f"unknown actions {actions!r}; expected 'plan' or 'inverse'")
        if actions == "inverse" and (mode != "replan" or pipe.inverse_dynamics is None):
            raise ValueError(
                "actions='inverse' needs mode='replan' and a run with an inverse dynamics model "
                "(train one with `diffplan train ... --resume --train.inverse-steps N`)"
            )
        settings = pipe.plan_config if settings is None else settings
        self.stride = pipe.plan_stride(coarse_to_fine=settings.coarse_to_fine)
        self.replan_every = self.stride if replan_every is None else replan_every
        if self.replan_every < 1:
            raise ValueError(f"expected replan_every >= 1, got {self.replan_every}")
        self.pipe, self.mode, self.actions, self.wall_cost = pipe, mode, actions, wall_cost
        self.tracker = tracker if mode == "track" else None  # replan mode executes the plans' own actions
        self.planner = Planner(pipe, n_envs=n_envs, settings=settings, cost=wall_cost)
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
            if self.mode == "track" and self.wall_cost is not None:
                actions = self._resample_through_walls(self.wall_cost, state, goal, need, actions)
            self.since_plan[need], self.has_plan[need] = 0, True
        follow = active & ~need
        if self.actions == "inverse":  # every step: inverse dynamics towards the next planned state
            rows = np.flatnonzero(active)
            plans = self.planner.plans
            planned = np.stack([_made(plans[i]).observations[0] for i in rows])
            nxt = np.minimum(self.since_plan[rows] // self.stride + 1, planned.shape[1] - 1)
            actions[rows] = self.pipe.inverse_action(
                state=state[rows],
                target=planned[np.arange(len(rows)), nxt],
                lookahead=np.maximum(nxt * self.stride - self.since_plan[rows], 1),
            )
            follow[:] = False
        for i in np.flatnonzero(follow):
            best = _made(self.planner.plans[i])
            if self.tracker is not None:  # track mode
                actions[i] = self.tracker(
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

    def _resample_through_walls(
        self, cost: Cost, state: np.ndarray, goal: np.ndarray | None, need: np.ndarray, actions: np.ndarray
    ) -> np.ndarray:
        """Plan again (up to :data:`WALL_RETRIES` times) where the new best plan still crosses a wall."""
        for _ in range(WALL_RETRIES):
            again = need & np.array([p is not None and cost(p.observations[0]) > 0 for p in self.planner.plans])
            if not again.any():
                break
            self.plans_made += int(again.sum())
            actions[again] = self.planner.act(state, goal=goal, active=again, generator=self.generator)[again]
        return actions

    def reset(self, mask: np.ndarray) -> None:
        """The envs in ``mask`` start new episodes: plan from scratch there."""
        self.planner.reset(mask)
        self.has_plan[mask] = False


def _made(plan: Plan | None) -> Plan:
    """An env's plan, which exists once it has planned (every acting env has)."""
    if plan is None:
        raise RuntimeError("an env acted on a plan before its first plan was made")
    return plan
