"""Sequential decisions with warm starts: observation(s) in, action(s) out, plans remembered.

A warm start shifts each env's previous best plan one step forward (the last step repeated),
re-noises it to the level of the last ``warm_start_steps`` steps of the schedule and denoises it
from there with guidance (paper section 5.4). The first decision of an episode, or one whose
observed state jumped away from what the previous plan predicted, plans from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


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
        **plan_kwargs: keyword arguments of ``pipe.plan``; ``warm_start_steps`` and
            ``replan_threshold`` (default: the run's planner settings) control warm starts.

    Attributes:
        plans: per env, the latest plans (best first) as ``{"observations": [B, H, S],
            "actions": [B, H, A], "values": [B]}`` in original units.
    """

    def __init__(self, pipe: Any, *, n_envs: int = 1, **plan_kwargs: Any) -> None:
        self.pipe = pipe
        self.n_envs = n_envs
        cfg = pipe.plan_config
        self.warm_start_steps = plan_kwargs.pop("warm_start_steps", cfg.warm_start_steps)
        self.replan_threshold = plan_kwargs.pop("replan_threshold", cfg.replan_threshold)
        self.plan_kwargs = plan_kwargs
        self.stats = PlannerStats()
        self._prev: torch.Tensor | None = None  # [n_envs, H, D] best plans, normalized
        self._has_prev = np.zeros(n_envs, dtype=bool)
        self.plans: list[Any] = [None] * n_envs  # latest Plan-like record per env (original units)

    def reset(self, mask: np.ndarray | None = None) -> None:
        """Forget the previous plans of the envs in ``mask`` (all envs when ``None``)."""
        if mask is None:
            self._has_prev[:] = False
        else:
            self._has_prev[np.asarray(mask, dtype=bool)] = False

    def _warm_envs(self, obs_norm: torch.Tensor, active: np.ndarray) -> np.ndarray:
        if not self.warm_start_steps or self._prev is None:
            return np.zeros(self.n_envs, dtype=bool)
        predicted = self._prev[:, 1, self.pipe.act_dim :]
        jump = (predicted - obs_norm).abs().amax(dim=1).cpu().numpy()
        return active & self._has_prev & (jump <= self.replan_threshold)

    def act(self, obs: np.ndarray, *, goal: np.ndarray | None = None, active: np.ndarray | None = None,
            generator: torch.Generator | None = None) -> np.ndarray:
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
        actions = np.zeros((self.n_envs, self.pipe.act_dim))
        obs_norm = torch.as_tensor(self.pipe.normalizer.observations.normalize(obs), dtype=torch.float32)
        warm = self._warm_envs(obs_norm, active)
        for group, is_warm in ((np.flatnonzero(warm), True), (np.flatnonzero(active & ~warm), False)):
            if group.size == 0:
                continue
            kwargs = dict(self.plan_kwargs)
            if is_warm:
                prev = self._prev[group]
                kwargs.update(init=torch.cat([prev[:, 1:], prev[:, -1:]], dim=1), warm_start_steps=self.warm_start_steps)
            if goal is not None:
                kwargs["goal"] = np.asarray(goal, dtype=np.float64).reshape(self.n_envs, -1)[group]
            plan = self.pipe.plan(obs[group], generator=generator, **kwargs)
            actions[group] = plan.actions[:, 0, 0]
            for j, env in enumerate(group):
                self.plans[env] = {"observations": plan.observations[j], "actions": plan.actions[j],
                                   "values": plan.values[j]}
            best = plan.normalized[:, 0].to("cpu")
            if self._prev is None:
                self._prev = torch.zeros(self.n_envs, *best.shape[1:], dtype=best.dtype)
            self._prev[group] = best
            self._has_prev[group] = True
            if is_warm:
                self.stats.warm += group.size
            else:
                self.stats.cold += group.size
        return actions
