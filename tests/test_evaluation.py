from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from diffplan.evaluation import evaluate
from diffplan.planning import ValueGuidedRLPipeline


@pytest.fixture(scope="module")
def pipe(tiny_run: Path) -> ValueGuidedRLPipeline:
    return ValueGuidedRLPipeline.from_pretrained(tiny_run)


def test_batched_evaluation_fields(pipe: ValueGuidedRLPipeline) -> None:
    res = evaluate(
        pipe=pipe,
        episodes=3,
        seed=4,
        num_envs=2,
        max_episode_steps=15,
        progress=False,
        plan=pipe.plan_config.override(batch_size=4),
    )
    d = res.to_dict()
    assert d["success_rate"] is None and d["seed"] == 4  # a locomotion task has no goal
    assert d["stderr"] == pytest.approx(
        np.std(
            [
                100 * (r - d["reference"]["random"]) / (d["reference"]["expert"] - d["reference"]["random"])
                for r in d["returns"]
            ],
            ddof=1,
        )
        / np.sqrt(3)
    )
    assert d["env_id"] == "Hopper-v5" and d["episodes"] == 3 and len(d["returns"]) == 3
    assert all(1 <= n <= 15 for n in d["lengths"])
    assert d["mean_return"] == pytest.approx(np.mean(d["returns"]))
    ref = d["reference"]
    expected = np.mean([100 * (r - ref["random"]) / (ref["expert"] - ref["random"]) for r in d["returns"]])
    assert d["normalized_score"] == pytest.approx(expected)
    assert d["seconds_per_decision"] > 0 and d["num_envs"] == 2


def test_same_seed_same_returns(pipe: ValueGuidedRLPipeline) -> None:
    a = evaluate(
        pipe=pipe,
        episodes=2,
        seed=1,
        max_episode_steps=10,
        progress=False,
        plan=pipe.plan_config.override(batch_size=2),
    )
    b = evaluate(
        pipe=pipe,
        episodes=2,
        seed=1,
        max_episode_steps=10,
        progress=False,
        plan=pipe.plan_config.override(batch_size=2),
    )
    assert a.returns == b.returns


def test_checkpoint_that_does_not_match_the_env(pipe: ValueGuidedRLPipeline) -> None:
    with pytest.raises(ValueError, match="this checkpoint .* has obs_dim 11, act_dim 3 but Walker2d-v5 has obs_dim 17"):
        evaluate(pipe=pipe, episodes=1, seed=0, env_id="Walker2d-v5", progress=False)


def test_baseline_policy_on_the_same_protocol(pipe: ValueGuidedRLPipeline) -> None:
    seen: list[np.ndarray] = []

    def policy(states: np.ndarray, goals: np.ndarray | None) -> np.ndarray:
        assert goals is None and states.shape == (2, 11)
        seen.append(states.copy())
        return np.zeros((len(states), 3))

    res = evaluate(
        policy=policy, env_id="Hopper-v5", episodes=2, seed=3, num_envs=2, max_episode_steps=5, progress=False
    )
    assert res.lengths == [5, 5] and len(seen) == 5 and res.normalized_score is not None
    # the same seeds give the same first observations as a planner's evaluation would meet
    import gymnasium as gym

    first, _ = gym.make("Hopper-v5").reset(seed=3)
    np.testing.assert_allclose(seen[0][0], first)
    with pytest.raises(ValueError, match="exactly one of pipe= .* and policy="):
        evaluate(pipe=pipe, policy=policy, episodes=1, seed=0, progress=False)
    with pytest.raises(ValueError, match="a policy acts every step"):
        evaluate(policy=policy, env_id="Hopper-v5", episodes=1, seed=0, mode="track", progress=False)


# ---- goal-conditioned planning in PointMaze (fixture maze_run: tests/conftest.py)


def test_walls_in_evaluation(maze_run: Path, tiny_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    res = evaluate(
        pipe=pipe,
        episodes=2,
        seed=0,
        num_envs=2,
        max_episode_steps=4,
        progress=False,
        mode="track",
        walls=True,
        plan=pipe.plan_config.override(batch_size=3),
    )
    assert res.planner["walls"] is True and res.lengths == [4, 4]
    with pytest.raises(ValueError, match="walls=True ranks plans by a PointMaze map; got env 'Hopper-v5'"):
        evaluate(pipe=ValueGuidedRLPipeline.from_pretrained(tiny_run), episodes=1, seed=0, walls=True, progress=False)


def test_replan_with_the_inverse_dynamics(maze_run: Path, tmp_path: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    res = evaluate(
        pipe=pipe,
        episodes=2,
        seed=0,
        num_envs=2,
        max_episode_steps=6,
        progress=False,
        mode="replan",
        actions="inverse",
        plan=pipe.plan_config.override(batch_size=2, goal_arrivals=2),
    )
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


def test_goal_env_evaluation_reports_success(maze_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    res = evaluate(
        pipe=pipe,
        episodes=2,
        seed=0,
        num_envs=2,
        max_episode_steps=8,
        progress=False,
        plan=pipe.plan_config.override(batch_size=2),
    )
    # a success is a step in the goal's radius; the PointMaze reward is 1 exactly there (continuing task)
    assert res.success_rate == np.mean([r > 0 for r in res.returns])
    assert res.lengths == [8, 8] and res.normalized_score is not None


@pytest.mark.parametrize("mode,every", [("track", 1), ("replan", 3)])
def test_track_and_sparse_replan_modes_with_pictures(maze_run: Path, tmp_path: Path, mode: str, every: int) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    res = evaluate(
        pipe=pipe,
        episodes=2,
        seed=1,
        num_envs=2,
        max_episode_steps=9,
        progress=False,
        mode=mode,
        replan_every=every,
        plots_dir=tmp_path,
        plan=pipe.plan_config.override(batch_size=3),
    )
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


def test_replan_every_defaults_to_the_runs_stride(maze_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    pipe.info = replace(pipe.info, stride=3)
    res = evaluate(
        pipe=pipe,
        episodes=1,
        seed=0,
        max_episode_steps=9,
        progress=False,
        mode="replan",
        plan=pipe.plan_config.override(batch_size=2),
    )
    assert res.planner["replan_every"] == 3
    assert res.seconds_per_plan == pytest.approx(res.seconds_per_decision * 9 / 3, rel=1e-6)
