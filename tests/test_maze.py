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
    preset = replace(get_preset("tiny", denoiser_steps=40, value_steps=20), normalizer="limits")
    train(dataset="test/umaze-tiny-v0", out=out, preset=preset, device="cpu", progress=False)
    return out


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
    preset = get_preset("maze-umaze-small", denoiser_steps=5, horizon=16)
    preset = replace(preset, unet=replace(preset.unet, block_out_channels=(16, 32)),
                     diffusion=replace(preset.diffusion, num_train_timesteps=8))
    collect(env_id="PointMaze_UMaze-v3", behavior="waypoint", steps=300, seed=2, dataset_id="test/umaze-vf-v0",
            progress=False)
    train(dataset="test/umaze-vf-v0", out=tmp_path / "run", preset=preset, device="cpu", progress=False)
    assert not (tmp_path / "run" / "value_function").exists()
    pipe = ValueGuidedRLPipeline.from_pretrained(tmp_path / "run")
    assert pipe.value_function is None
    plan = pipe.plan(np.zeros(4), goal=np.array([1.0, 0.5]), batch_size=5, generator=torch.Generator().manual_seed(0))
    assert plan.observations.shape == (5, 16, 4)
    np.testing.assert_array_equal(plan.observations[:, -1, :2], np.broadcast_to([1.0, 0.5], (5, 2)))
    # ranked by dynamic consistency: minus the largest jump between consecutive (normalized) states
    states = plan.normalized[..., pipe.act_dim:]
    jumps = (states[:, 1:] - states[:, :-1]).norm(dim=-1).amax(dim=1).numpy()
    np.testing.assert_allclose(plan.values, -jumps, rtol=1e-5)
    assert np.all(np.diff(plan.values) <= 0)


def test_denoising_strip_picture(maze_run: Path, tmp_path: Path) -> None:
    from diffplan.envs.specs import make_env
    from diffplan.render import plot_denoising

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
                        learning_rate=1e-3, ema_start=50)
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
