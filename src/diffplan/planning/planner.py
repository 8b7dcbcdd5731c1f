"""Sequential decisions with warm starts: observation(s) in, action(s) out, plans remembered.

A warm start shifts each env's previous best plan one step forward (the last step repeated),
re-noises it to the level of the last ``warm_start_steps`` steps of the schedule and denoises it
from there with guidance (paper section 5.4). The first decision of an episode, or one whose
observed state jumped away from what the previous plan predicted, plans from scratch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from diffplan.config import PlanConfig
from diffplan.planning.pipeline import Plan, Samples

if TYPE_CHECKING:
    from diffplan.planning.pipeline import ValueGuidedRLPipeline


@dataclass
class PlannerStats:
    """Counts of the decisions a planner made.

    Attributes:
        cold: decisions planned from pure noise.
        warm: decisions warm-started from the previous plan.
    """

    cold: int = 0
    warm: int = 0


class Planner:
    """Acts for ``n_envs`` environments with one batched diffusion call per decision.

    Args:
        pipe: a ``ValueGuidedRLPipeline``.
        n_envs: environments acted for.
        settings: the planner's settings (default: the run's, ``pipe.plan_config``);
            ``warm_start_steps`` and ``replan_threshold`` control warm starts.
        cost: ranking cost of finished plans (see ``pipe.plan``).

    Between decisions only each env's best plan is copied to the host (its first action is the
    decision); :attr:`plans` copies the others when it is read.
    """

    def __init__(
        self,
        pipe: ValueGuidedRLPipeline,
        *,
        n_envs: int = 1,
        settings: PlanConfig | None = None,
        cost: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.pipe = pipe
        self.n_envs = n_envs
        self.settings = pipe.plan_config if settings is None else settings
        self.cost = cost
        self.stats = PlannerStats()
        self._prev: torch.Tensor | None = None  # [n_envs, H, D] best plans, normalized, on the pipeline's device
        self._predicted = np.zeros((n_envs, pipe.obs_dim))  # normalized next state each best plan predicts
        self._has_prev = np.zeros(n_envs, dtype=bool)
        self._latest: list[tuple[Samples, int] | None] = [None] * n_envs  # (Samples, row) of each env's latest plans

    @property
    def plans(self) -> list[Plan | None]:
        """Per env, its latest plans, best first, in original units (``None`` before its first plan):
        a :class:`~diffplan.planning.plans.Plan` with ``actions [B, H, A]``, ``observations
        [B, H, S]``, ``values [B]`` and ``normalized [B, H, A + S]``."""
        out: list[Plan | None] = []
        for entry in self._latest:
            if entry is None:
                out.append(None)
                continue
            samples, row = entry
            plan = samples.plan
            out.append(Plan(actions=plan.actions[row], observations=plan.observations[row], values=plan.values[row],
                            normalized=plan.normalized[row]))  # fmt: skip
        return out

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget the previous plans of the envs in ``mask`` (all envs when ``None``)."""
        if mask is None:
            self._has_prev[:] = False
        else:
            self._has_prev[np.asarray(mask, dtype=bool)] = False

    def _warm_envs(self, obs_norm: np.ndarray, active: np.ndarray) -> np.ndarray:
        if not self.settings.warm_start_steps or self._prev is None:
            return np.zeros(self.n_envs, dtype=bool)
        jump = np.abs(self._predicted - obs_norm).max(axis=1)
        return active & self._has_prev & (jump <= self.settings.replan_threshold)

    def act(
        self,
        obs: np.ndarray,
        *,
        goal: np.ndarray | None = None,
        active: np.ndarray | None = None,
        generator: torch.Generator | None = None,
    ) -> np.ndarray:
        """First actions of the best plans.

        Args:
            obs: ``[n_envs, obs_dim]`` observations.
            goal: ``[n_envs, k]`` goals (first ``k`` obs dims), inpainted as ``pipe.plan`` does.
            active: ``[n_envs]`` envs to plan for (others get zero actions and keep their previous
                plan, e.g. between replans; :meth:`reset` forgets it).
            generator: random stream of the diffusion.

        Returns:
            ``[n_envs, act_dim]`` actions.
        """
        obs = np.asarray(obs, dtype=np.float64).reshape(self.n_envs, -1)
        active = np.ones(self.n_envs, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        act_dim = self.pipe.act_dim
        actions = np.zeros((self.n_envs, act_dim))
        norm = self.pipe.normalizer.observations
        warm = self._warm_envs(norm.normalize(obs), active)
        for group, is_warm in ((np.flatnonzero(warm), True), (np.flatnonzero(active & ~warm), False)):
            if group.size == 0:
                continue
            every = group.size == self.n_envs
            init = None
            if is_warm:
                assert self._prev is not None  # warm envs have a previous plan
                prev = self._prev if every else self._prev[torch.as_tensor(group, device=self._prev.device)]
                init = torch.cat([prev[:, 1:], prev[:, -1:]], dim=1)
            goals = None if goal is None else np.asarray(goal, dtype=np.float64).reshape(self.n_envs, -1)[group]
            samples = self.pipe.sample(
                obs[group], settings=self.settings, goal=goals, init=init, cost=self.cost, generator=generator
            )
            best = samples.best()  # [g, H, D], the one copy to the host
            actions[group] = best[:, 0, :act_dim]
            self._predicted[group] = norm.normalize(best[:, min(1, best.shape[1] - 1), act_dim:])
            for row, env in enumerate(group):
                self._latest[env] = (samples, row)
            first = samples.normalized[:, 0].clone()
            if every:
                self._prev = first
            else:
                if self._prev is None:
                    self._prev = torch.zeros((self.n_envs, *first.shape[1:]), dtype=first.dtype, device=first.device)
                self._prev[torch.as_tensor(group, device=first.device)] = first
            self._has_prev[group] = True
            if is_warm:
                self.stats.warm += group.size
            else:
                self.stats.cold += group.size
        return actions
