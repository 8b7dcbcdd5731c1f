"""planning/execution.py: when plans are made and how they become actions."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from diffplan.envs.family import POINTMAZE
from diffplan.planning import ValueGuidedRLPipeline
from diffplan.planning.execution import PlannerPolicy
from diffplan.rollout import CallablePolicy


@pytest.fixture(scope="module")
def pipe(tiny_run: Path) -> ValueGuidedRLPipeline:
    return ValueGuidedRLPipeline.from_pretrained(tiny_run)


def _state(n: int) -> np.ndarray:
    s = np.zeros((n, 11))
    s[:, 0] = 1.25
    return s


def test_replan_holds_each_planned_action_for_the_stride(pipe: ValueGuidedRLPipeline) -> None:
    strided = ValueGuidedRLPipeline(
        value_function=pipe.value_function,
        unet=pipe.unet,
        scheduler=pipe.scheduler,
        normalizer=pipe.normalizer,
        plan_config=pipe.plan_config,
        info=replace(pipe.info, stride=2),
    )
    policy = PlannerPolicy(
        strided,
        n_envs=2,
        generator=torch.Generator().manual_seed(0),
        settings=strided.plan_config.override(batch_size=3),
        replan_every=4,
    )
    active = np.ones(2, dtype=bool)
    actions = [policy.act(_state(2), None, active) for _ in range(4)]
    assert policy.plans_made == 2  # one plan per env in 4 steps
    best = np.stack([p.actions[0] for p in policy.plans])  # [envs, H, A]
    for t, a in enumerate(actions):  # planned step t // stride
        np.testing.assert_array_equal(a, best[:, t // 2])
    policy.act(_state(2), None, active)
    assert policy.plans_made == 4  # replanned after replan_every steps
    policy.reset(np.array([True, False]))
    policy.act(_state(2), None, np.array([True, False]))
    assert policy.plans_made == 5  # the reset env plans at once; the inactive one is left alone


def test_track_plans_once_per_episode(maze_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    policy = PlannerPolicy(
        pipe,
        n_envs=1,
        mode="track",
        tracker=POINTMAZE.track,
        generator=torch.Generator().manual_seed(0),
        settings=pipe.plan_config.override(batch_size=2),
    )
    state, goal, active = np.array([[-1.0, -1.0, 0.0, 0.0]]), np.array([[1.0, 1.0]]), np.ones(1, dtype=bool)
    for _ in range(5):
        a = policy.act(state, goal, active)
        assert a.shape == (1, 2) and np.abs(a).max() <= 1.0
    assert policy.plans_made == 1
    policy.reset(np.ones(1, dtype=bool))
    policy.act(state, goal, active)
    assert policy.plans_made == 2


def test_bad_execution_settings(pipe: ValueGuidedRLPipeline) -> None:
    with pytest.raises(ValueError, match="unknown mode 'teleport'"):
        PlannerPolicy(pipe, n_envs=1, mode="teleport")
    with pytest.raises(ValueError, match="unknown actions 'magic'"):
        PlannerPolicy(pipe, n_envs=1, actions="magic")
    with pytest.raises(ValueError, match="actions='inverse' needs mode='replan' and a run with an inverse"):
        PlannerPolicy(pipe, n_envs=1, actions="inverse")  # the tiny Hopper run has no inverse dynamics
    with pytest.raises(ValueError, match="expected replan_every >= 1, got 0"):
        PlannerPolicy(pipe, n_envs=1, replan_every=0)


def test_callable_policy_acts_where_active() -> None:
    policy = CallablePolicy(lambda s, g: s[:, :2] + 1.0, n_envs=3)
    a = policy.act(np.ones((3, 4)), None, np.array([True, False, True]))
    np.testing.assert_array_equal(a, [[2.0, 2.0], [0.0, 0.0], [2.0, 2.0]])
    assert policy.plans_made == 2 and policy.plans == [None, None, None]


def test_track_mode_needs_a_tracker(maze_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    with pytest.raises(ValueError, match="mode 'track' follows the planned states with the environment's tracker"):
        PlannerPolicy(pipe, n_envs=1, mode="track")
