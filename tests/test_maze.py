"""Goal-conditioned planning in PointMaze on a tiny waypoint dataset."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from diffplan.collect.collect import collect
from diffplan.evaluation import evaluate
from diffplan.planning import ValueGuidedRLPipeline
from diffplan.presets import get_preset
from diffplan.training import train


@pytest.fixture(scope="module")
def maze_run(minari_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    collect(env_id="PointMaze_UMaze-v3", behavior="waypoint", steps=900, seed=0,
            dataset_id="test/umaze-tiny-v0", progress=False)
    out = tmp_path_factory.mktemp("maze") / "run"
    preset = replace(get_preset("tiny", denoiser_steps=40, value_steps=20, inverse_steps=300), normalizer="limits")
    train(dataset="test/umaze-tiny-v0", out=out, preset=preset, device="cpu", progress=False)
    return out


def test_goal_arrivals_hold_the_goal_exactly_from_each_plans_arrival(maze_run: Path) -> None:
    run = ValueGuidedRLPipeline.from_pretrained(maze_run)
    # without a value network (as the maze presets), plans are ranked by consistency and arrival
    pipe = ValueGuidedRLPipeline(value_function=None, unet=run.unet, scheduler=run.scheduler,
                                 normalizer=run.normalizer, plan_config=run.plan_config, info=run.info)
    start, goal = np.array([-1.0, -1.0, 0.0, 0.0]), np.array([1.0, 1.0])
    plan = pipe.plan(start, goal=goal, batch_size=6, goal_arrivals=3, generator=torch.Generator().manual_seed(0))
    at_goal = (plan.observations[:, :, :2] == goal).all(axis=-1)  # [batch, H]
    arrivals = at_goal.argmax(axis=1)
    assert sorted(arrivals.tolist()) == [2, 2, 5, 5, 7, 7]  # H = 8: arrivals 2, 5, 7, two plans each
    for row, k in zip(at_goal, arrivals):
        assert row[k:].all() and not row[:k].any()  # exact from the arrival on, free before it
    np.testing.assert_array_equal(plan.observations[:, 0], np.broadcast_to(start, (6, 4)))
    assert (np.diff(plan.values) <= 0).all()
    # the consistent plans score 1 - arrival / H and come first, the earliest of them on top
    consistent = plan.values >= 0
    assert consistent[0] and np.allclose(plan.values[consistent], 1 - arrivals[consistent] / 8)
    with pytest.raises(ValueError, match=r"expected goal_arrivals >= 1, got -1"):
        pipe.plan(start, goal=goal, batch_size=2, goal_arrivals=-1)
    wide = pipe.plan(start, goal=goal, batch_size=9, goal_arrivals=20)  # at most H - 1 = 7 arrival steps
    assert sorted(set((wide.observations[:, :, :2] == goal).all(axis=-1).argmax(axis=1).tolist())) == list(range(1, 8))
    pair = pipe.plan(start, goal=goal, batch_size=2, goal_arrivals=8)  # at most one arrival step per plan
    assert sorted((pair.observations[:, :, :2] == goal).all(axis=-1).argmax(axis=1).tolist()) == [4, 7]


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


def test_a_plan_cost_reorders_the_plans(maze_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    start, goal = np.array([-1.0, -1.0, 0.0, 0.0]), np.array([1.0, 1.0])
    free = pipe.plan(start, goal=goal, batch_size=5, generator=torch.Generator().manual_seed(0))
    favourite = free.observations[-1, 3]  # the worst-ranked plan, made the only one without cost

    def cost(observations: np.ndarray) -> np.ndarray:
        assert observations.shape == (1, 5, 8, 4)
        return np.where(np.isclose(observations[..., 3, :], favourite).all(axis=-1), 0.0, 1e3)

    ranked = pipe.plan(start, goal=goal, batch_size=5, generator=torch.Generator().manual_seed(0), cost=cost)
    np.testing.assert_allclose(ranked.observations[0, 3], favourite)
    assert (np.diff(ranked.values) <= 0).all() and ranked.values[1] < -500


def test_walls_in_evaluation(maze_run: Path, tiny_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    res = evaluate(pipe=pipe, episodes=2, seed=0, num_envs=2, max_episode_steps=4, progress=False, mode="track",
                   walls=True, plan_kwargs={"batch_size": 3})
    assert res.planner["walls"] is True and res.lengths == [4, 4]
    with pytest.raises(ValueError, match="walls=True ranks plans by a PointMaze map; got env 'Hopper-v5'"):
        evaluate(pipe=ValueGuidedRLPipeline.from_pretrained(tiny_run), episodes=1, seed=0, walls=True,
                 progress=False)


def test_inverse_dynamics_predicts_the_datasets_actions(maze_run: Path) -> None:
    from diffplan.data.episodes import load_episodes

    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    assert pipe.inverse_dynamics is not None and pipe.inverse_dynamics.config.max_lookahead == 1
    eps = load_episodes("test/umaze-tiny-v0")
    obs = np.concatenate([e.observations[:-1] for e in eps.episodes])
    nxt = np.concatenate([e.observations[1:] for e in eps.episodes])
    act = np.concatenate([e.actions[:-1] for e in eps.episodes])
    pred = pipe.inverse_action(state=obs, target=nxt, lookahead=np.ones(len(obs)))
    assert pred.shape == act.shape
    assert ((pred - act) ** 2).mean() < 0.5 * ((act - act.mean(0)) ** 2).mean()


def test_replan_with_the_inverse_dynamics(maze_run: Path, tmp_path: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    res = evaluate(pipe=pipe, episodes=2, seed=0, num_envs=2, max_episode_steps=6, progress=False, mode="replan",
                   actions="inverse", plan_kwargs={"batch_size": 2, "goal_arrivals": 2})
    assert res.planner["actions"] == "inverse" and res.lengths == [6, 6]
    with pytest.raises(ValueError, match="actions='inverse' needs mode='replan'"):
        evaluate(pipe=pipe, episodes=1, seed=0, mode="track", actions="inverse", progress=False)
    with pytest.raises(ValueError, match="unknown actions 'magic'"):
        evaluate(pipe=pipe, episodes=1, seed=0, actions="magic", progress=False)
    pipe.save_pretrained(tmp_path / "copy")
    (tmp_path / "copy" / "inverse_dynamics" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ValueError, match="cannot load .*inverse_dynamics: the weights or config are corrupt"):
        ValueGuidedRLPipeline.from_pretrained(tmp_path / "copy")
    pipe.inverse_dynamics = None
    with pytest.raises(ValueError, match="actions='inverse' needs mode='replan' and a run with an inverse"):
        evaluate(pipe=pipe, episodes=1, seed=0, actions="inverse", progress=False)
    with pytest.raises(ValueError, match="this run has no inverse dynamics model"):
        pipe.inverse_action(state=np.zeros((1, 4)), target=np.zeros((1, 4)), lookahead=np.ones(1))


def test_limits_normalizer_and_goal_inpainting(maze_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    assert pipe.normalizer.observations.kind == "limits" and pipe.obs_dim == 4
    start, goal = np.array([-1.0, -1.0, 0.0, 0.0]), np.array([1.0, 1.0])
    plan = pipe.plan(start, goal=goal, batch_size=3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(plan.observations[:, 0], np.broadcast_to(start, (3, 4)))
    np.testing.assert_array_equal(plan.observations[:, -1, :2], np.broadcast_to(goal, (3, 2)))


def test_goal_env_evaluation_reports_success(maze_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    res = evaluate(pipe=pipe, episodes=2, seed=0, num_envs=2, max_episode_steps=8, progress=False,
                   plan_kwargs={"batch_size": 2})
    assert res.success_rate is not None and 0.0 <= res.success_rate <= 1.0
    assert res.lengths == [8, 8] and res.normalized_score is not None


@pytest.mark.parametrize("mode,every", [("track", 1), ("replan", 3)])
def test_track_and_sparse_replan_modes_with_pictures(maze_run: Path, tmp_path: Path, mode: str, every: int) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    res = evaluate(pipe=pipe, episodes=2, seed=1, num_envs=2, max_episode_steps=9, progress=False, mode=mode,
                   replan_every=every, plots_dir=tmp_path, plan_kwargs={"batch_size": 3})
    plans_per_episode = 1 if mode == "track" else 3
    assert res.seconds_per_plan == pytest.approx(res.seconds_per_decision * 9 / plans_per_episode, rel=1e-6)
    pictures = sorted(tmp_path.glob("episode_*.png"))
    assert [p.name for p in pictures] == ["episode_000.png", "episode_001.png"]
    assert all(p.stat().st_size > 5_000 for p in pictures)


def test_bad_mode_and_goal(maze_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    with pytest.raises(ValueError, match="unknown mode 'teleport'"):
        evaluate(pipe=pipe, episodes=1, seed=0, mode="teleport", progress=False)
    with pytest.raises(ValueError, match=r"expected goal of shape \(at most 4,\)"):
        pipe.plan(np.zeros(4), goal=np.zeros(5))


def test_evaluate_cli_track_mode_with_plots(maze_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from diffplan.cli import main

    out_json = tmp_path / "e.json"
    assert main(["evaluate", str(maze_run), "--mode", "track", "--episodes", "2", "--max-episode-steps", "5",
                 "--batch-size", "2", "--plots", str(tmp_path / "pics"), "--task", "single",
                 "--json", str(out_json)]) == 0
    assert "success rate" in capsys.readouterr().out
    assert (tmp_path / "pics" / "episode_000.png").is_file()
    import json

    assert json.loads(out_json.read_text())["planner"]["task"] == "single"
    assert main(["evaluate", str(maze_run), "--mode", "replan", "--actions", "inverse", "--walls", "--episodes", "1",
                 "--max-episode-steps", "4", "--batch-size", "2", "--goal-arrivals", "3", "--json", str(out_json)]) == 0
    planner = json.loads(out_json.read_text())["planner"]
    assert planner["actions"] == "inverse" and planner["walls"] is True and planner["goal_arrivals"] == 3


def test_single_task_uses_the_fixed_goal(maze_run: Path) -> None:
    from diffplan.envs.maze import FIXED_GOAL_CELLS
    from diffplan.envs.specs import make_env

    env = make_env("PointMaze_UMaze-v3")
    obs, _ = env.reset(seed=0, options={"goal_cell": np.array(FIXED_GOAL_CELLS["PointMaze_UMaze-v3"])})
    cell = env.unwrapped.maze.cell_xy_to_rowcol(obs["desired_goal"])
    assert tuple(int(c) for c in cell) == FIXED_GOAL_CELLS["PointMaze_UMaze-v3"]
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    with pytest.raises(ValueError, match="task 'single' needs a fixed goal"):
        evaluate(pipe=pipe, episodes=1, seed=0, env_id="PointMaze_Open-v3", task="single", progress=False)


def test_value_free_goal_run(minari_root: Path, tmp_path: Path) -> None:
    """Maze presets train no value network: plans come from inpainting alone."""
    preset = get_preset("maze-umaze-small", denoiser_steps=5, horizon=16, inverse_steps=0)
    preset = replace(preset, unet=replace(preset.unet, block_out_channels=(16, 32)),
                     diffusion=replace(preset.diffusion, num_train_timesteps=8))
    collect(env_id="PointMaze_UMaze-v3", behavior="waypoint", steps=300, seed=2, dataset_id="test/umaze-vf-v0",
            progress=False)
    train(dataset="test/umaze-vf-v0", out=tmp_path / "run", preset=preset, device="cpu", progress=False)
    assert not (tmp_path / "run" / "value_function").exists()
    pipe = ValueGuidedRLPipeline.from_pretrained(tmp_path / "run")
    assert pipe.value_function is None
    plan = pipe.plan(np.zeros(4), goal=np.array([1.0, 0.5]), batch_size=5, goal_arrivals=1,
                     generator=torch.Generator().manual_seed(0))
    assert plan.observations.shape == (5, 16, 4)
    np.testing.assert_array_equal(plan.observations[:, -1, :2], np.broadcast_to([1.0, 0.5], (5, 2)))
    # ranked by dynamic consistency: minus the largest jump between consecutive (normalized) states
    states = plan.normalized[..., pipe.act_dim:]
    jumps = (states[:, 1:] - states[:, :-1]).norm(dim=-1).amax(dim=1).numpy()
    np.testing.assert_allclose(plan.values, -jumps, rtol=1e-5)
    assert np.all(np.diff(plan.values) <= 0)


def test_denoising_strip_picture(maze_run: Path, tmp_path: Path) -> None:
    from diffplan.envs.specs import make_env
    from diffplan.plots import plot_denoising

    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    env = make_env("PointMaze_UMaze-v3")
    out = plot_denoising(pipe=pipe, obs=np.array([-1.0, -1.0, 0, 0]), goal=np.array([1.0, 1.0]), env=env,
                         path=tmp_path / "strip.png", panels=4)
    assert out.is_file() and out.stat().st_size > 5_000


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

    collect(env_id="PointMaze_UMaze-v3", behavior="waypoint", steps=4_000, seed=3, dataset_id="test/umaze-near-v0",
            progress=False)
    preset = get_preset("maze-umaze-small", denoiser_steps=400, horizon=8, stride=4, batch_size=32,
                        learning_rate=1e-3, ema_start=50, inverse_steps=0)
    preset = replace(preset, unet=replace(preset.unet, block_out_channels=(16, 32)),
                     diffusion=replace(preset.diffusion, num_train_timesteps=10))
    torch.manual_seed(0)
    train(dataset="test/umaze-near-v0", out=tmp_path / "run", preset=preset, device="cpu", progress=False)
    pipe = ValueGuidedRLPipeline.from_pretrained(tmp_path / "run")
    options = {"reset_cell": np.array([1, 1]), "goal_cell": np.array([1, 2])}
    generator = torch.Generator().manual_seed(0)
    planner = Planner(pipe, n_envs=1, batch_size=4)

    def diffplan_act(obs: dict, t: int) -> np.ndarray:
        if t % 4 == 0:
            planner.act(obs["observation"][None], goal=obs["desired_goal"][None], generator=generator)
        return planner.plans[0]["actions"][0, (t % 4) // pipe.info.stride]

    rng = np.random.default_rng(0)
    planned = _successes(options, diffplan_act, episodes=6, steps=60)
    random = _successes(options, lambda obs, t: rng.uniform(-1, 1, 2), episodes=6, steps=60)
    assert planned > random and planned >= 4, (planned, random)


def test_render_cli_draws_a_maze_episode_and_its_denoising(maze_run: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    from diffplan.cli import main

    assert main(["render", str(maze_run), "--out", str(tmp_path / "r"), "--max-episode-steps", "6",
                 "--batch-size", "3", "--task", "single"]) == 0
    assert "maze picture" in capsys.readouterr().out
    for name in ("episode_000.png", "denoising.png"):
        assert (tmp_path / "r" / name).stat().st_size > 5_000


def test_replan_every_defaults_to_the_runs_stride(maze_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    pipe.info = replace(pipe.info, stride=3)
    res = evaluate(pipe=pipe, episodes=1, seed=0, max_episode_steps=9, progress=False, mode="replan",
                   plan_kwargs={"batch_size": 2})
    assert res.planner["replan_every"] == 3
    assert res.seconds_per_plan == pytest.approx(res.seconds_per_decision * 9 / 3, rel=1e-6)
