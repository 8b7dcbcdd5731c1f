from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from diffplan.collect.collect import collect
from diffplan.planning import ValueGuidedRLPipeline
from diffplan.planning.planner import Planner
from diffplan.presets import get_preset
from diffplan.training import train


@pytest.fixture(scope="module")
def pipe(tiny_run: Path) -> ValueGuidedRLPipeline:
    return ValueGuidedRLPipeline.from_pretrained(tiny_run)


def _obs(n: int) -> np.ndarray:
    base = np.zeros((n, 11))
    base[:, 0] = 1.25
    return base + 0.005 * np.random.default_rng(0).normal(size=(n, 11))


class _CountCalls:
    def __init__(self, module: torch.nn.Module) -> None:
        self.n = 0
        self.handle = module.register_forward_hook(self)

    def __call__(self, *args: object) -> None:
        self.n += 1


def test_warm_start_runs_only_the_last_k_steps(pipe: ValueGuidedRLPipeline) -> None:
    counter = _CountCalls(pipe.unet)
    try:
        cold = pipe.plan(_obs(2), batch_size=3, generator=torch.Generator().manual_seed(0))
        assert counter.n == 20
        counter.n = 0
        warm = pipe.plan(
            _obs(2),
            batch_size=3,
            init=cold.normalized[:, 0],
            warm_start_steps=3,
            generator=torch.Generator().manual_seed(1),
        )
        assert counter.n == 3
    finally:
        counter.handle.remove()
    np.testing.assert_array_equal(warm.observations[:, :, 0], np.broadcast_to(_obs(2)[:, None], (2, 3, 11)))
    with pytest.raises(ValueError, match="expected init plans of shape"):
        pipe.plan(_obs(2), init=cold.normalized[0, :1], warm_start_steps=3)
    with pytest.raises(ValueError, match="warm_start_steps <= 20"):
        pipe.plan(_obs(2), batch_size=3, init=cold.normalized[:, 0], warm_start_steps=50)


def test_planner_warm_starts_after_the_first_decision(pipe: ValueGuidedRLPipeline) -> None:
    planner = Planner(
        pipe, n_envs=3, settings=pipe.plan_config.override(batch_size=4, warm_start_steps=2, replan_threshold=1e9)
    )
    g = torch.Generator().manual_seed(0)
    first = planner.act(_obs(3), generator=g)
    assert first.shape == (3, 3) and planner.stats.cold == 3 and planner.stats.warm == 0
    planner.act(_obs(3), generator=g)
    assert planner.stats.warm == 3
    planner.reset(np.array([True, False, False]))
    planner.act(_obs(3), generator=g)
    assert planner.stats.cold == 4 and planner.stats.warm == 5
    # inactive envs get no plan now and keep their previous one (between replans)
    actions = planner.act(_obs(3), active=np.array([True, True, False]), generator=g)
    assert np.all(actions[2] == 0) and planner.stats.warm == 7
    planner.act(_obs(3), generator=g)
    assert planner.stats.warm == 10 and planner.stats.cold == 4


def test_a_state_jump_forces_a_cold_start(pipe: ValueGuidedRLPipeline) -> None:
    planner = Planner(
        pipe, n_envs=1, settings=pipe.plan_config.override(batch_size=4, warm_start_steps=2, replan_threshold=0.5)
    )
    g = torch.Generator().manual_seed(0)
    planner.act(_obs(1), generator=g)
    jumped = _obs(1) + 50 * pipe.normalizer.observations.scale
    planner.act(jumped, generator=g)
    assert planner.stats.cold == 2 and planner.stats.warm == 0


def test_dpm_solver_sampler(pipe: ValueGuidedRLPipeline) -> None:
    plan = pipe.plan(
        _obs(1)[0],
        sampler="dpmsolver++",
        num_inference_steps=5,
        batch_size=4,
        generator=torch.Generator().manual_seed(0),
    )
    assert np.isfinite(plan.actions).all()
    np.testing.assert_array_equal(plan.observations[:, 0], np.broadcast_to(_obs(1)[0], (4, 11)))


def test_warm_starts_live_in_the_planner_not_in_the_pipeline_call(pipe: ValueGuidedRLPipeline) -> None:
    fast = dict(batch_size=4, n_guide_steps=1, sampler="ddim", num_inference_steps=5, warm_start_steps=2)
    counter = _CountCalls(pipe.unet)
    try:
        obs = _obs(1)[0]
        for _ in range(2):  # the stateless call plans from noise every time
            counter.n = 0
            assert pipe(obs, **fast).shape == (3,)
            assert counter.n == 5
        planner = Planner(pipe, n_envs=1, settings=pipe.plan_config.override(replan_threshold=1e9, **fast))
        for expected in (5, 2):  # the planner's first decision is cold, the next warm-started
            counter.n = 0
            assert planner.act(obs[None]).shape == (1, 3)
            assert counter.n == expected
        assert pipe(_obs(2), **fast).shape == (2, 3)
    finally:
        counter.handle.remove()


# ---- goal-conditioned planning in PointMaze (fixture maze_run: tests/conftest.py)


def _successes(env_options: dict, act, episodes: int, steps: int) -> int:
    """Episodes (seeds 0..episodes-1) in which ``act(obs_dict, t)`` reaches the goal."""
    from diffplan.envs.specs import make_env

    env, reached = make_env("PointMaze_UMaze-v3", max_episode_steps=steps), 0
    for ep in range(episodes):
        obs, _ = env.reset(seed=ep, options=env_options)
        for t in range(steps):
            obs, _, _, truncated, info = env.step(act(obs, t))
            if info["success"]:
                reached += 1
                break
    env.close()
    return reached


def test_tiny_model_reaches_a_nearby_goal_more_often_than_random_actions(minari_root: Path, tmp_path: Path) -> None:
    """Closed loop with the planner's own actions (replanning every 4 steps), start and goal one cell apart."""
    from diffplan.planning.planner import Planner

    collect(
        env_id="PointMaze_UMaze-v3",
        behavior="waypoint",
        steps=4_000,
        seed=3,
        dataset_id="test/umaze-near-v0",
        progress=False,
    )
    preset = get_preset(
        "maze-umaze-small",
        denoiser_steps=400,
        horizon=8,
        stride=4,
        batch_size=32,
        learning_rate=1e-3,
        ema_start=50,
        inverse_steps=0,
    )
    preset = replace(
        preset,
        unet=replace(preset.unet, block_out_channels=(16, 32)),
        diffusion=replace(preset.diffusion, num_train_timesteps=10),
    )
    torch.manual_seed(0)
    train(dataset="test/umaze-near-v0", out=tmp_path / "run", preset=preset, device="cpu", progress=False)
    pipe = ValueGuidedRLPipeline.from_pretrained(tmp_path / "run")
    options = {"reset_cell": np.array([1, 1]), "goal_cell": np.array([1, 2])}
    generator = torch.Generator().manual_seed(0)
    planner = Planner(pipe, n_envs=1, settings=pipe.plan_config.override(batch_size=4))

    def diffplan_act(obs: dict, t: int) -> np.ndarray:
        if t % 4 == 0:
            planner.act(obs["observation"][None], goal=obs["desired_goal"][None], generator=generator)
        return planner.plans[0].actions[0, (t % 4) // pipe.info.stride]

    rng = np.random.default_rng(0)
    planned = _successes(options, diffplan_act, episodes=6, steps=60)
    random = _successes(options, lambda obs, t: rng.uniform(-1, 1, 2), episodes=6, steps=60)
    assert planned > random and planned >= 4, (planned, random)
