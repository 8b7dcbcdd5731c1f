import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from diffplan.collect.collect import collect
from diffplan.config import PlanConfig
from diffplan.planning import ValueGuidedRLPipeline
from diffplan.planning.runs import list_runs, resolve_run
from diffplan.presets import get_preset
from diffplan.training import train


@pytest.fixture(scope="module")
def pipe(tiny_run: Path) -> ValueGuidedRLPipeline:
    return ValueGuidedRLPipeline.from_pretrained(tiny_run)


def _obs(n: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(0)
    base = np.array([1.25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    return base + 0.01 * rng.normal(size=(11,) if n is None else (n, 11))


def test_plan_shapes_order_and_exact_start(pipe: ValueGuidedRLPipeline) -> None:
    obs = _obs()
    plan = pipe.plan(obs, batch_size=6, generator=torch.Generator().manual_seed(0))
    h = pipe.plan_config.planning_horizon
    assert plan.actions.shape == (6, h, 3)
    assert plan.observations.shape == (6, h, 11)
    assert plan.values.shape == (6,)
    assert np.all(np.diff(plan.values) <= 0)  # best first
    np.testing.assert_array_equal(plan.observations[:, 0], np.broadcast_to(obs, (6, 11)))
    normed = torch.as_tensor(pipe.normalizer.observations.normalize(obs), dtype=torch.float32)
    assert torch.equal(plan.normalized[:, 0, 3:], normed.expand(6, -1))


def test_batched_observations_in_one_call(pipe: ValueGuidedRLPipeline) -> None:
    obs = _obs(4)
    plan = pipe.plan(obs, batch_size=5, generator=torch.Generator().manual_seed(0))
    assert plan.actions.shape[:2] == (4, 5) and plan.values.shape == (4, 5)
    for i in range(4):
        np.testing.assert_array_equal(plan.observations[i, :, 0], np.broadcast_to(obs[i], (5, 11)))
    actions = pipe(obs)
    assert actions.shape == (4, 3)
    assert pipe(obs[0]).shape == (3,)


def test_same_generator_same_plan_and_ddim(pipe: ValueGuidedRLPipeline) -> None:
    a = pipe.plan(_obs(), generator=torch.Generator().manual_seed(5))
    b = pipe.plan(_obs(), generator=torch.Generator().manual_seed(5))
    np.testing.assert_array_equal(a.actions, b.actions)
    d = pipe.plan(_obs(), sampler="ddim", num_inference_steps=4, generator=torch.Generator().manual_seed(5))
    assert d.actions.shape == a.actions.shape and np.isfinite(d.actions).all()
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        pipe.plan(_obs(), sampler="euler")


def test_goal_is_inpainted(pipe: ValueGuidedRLPipeline) -> None:
    goal = _obs() + 0.5
    plan = pipe.plan(_obs(), goal=goal, batch_size=3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(plan.observations[:, -1], np.broadcast_to(goal, (3, 11)))
    # a partial goal (e.g. a maze position) fixes the first k observation dimensions only
    part = pipe.plan(_obs(), goal=np.array([1.1, 0.2]), batch_size=3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(part.observations[:, -1, :2], np.broadcast_to([1.1, 0.2], (3, 2)))
    assert not np.allclose(part.observations[:, -1, 2:], goal[2:])
    with pytest.raises(ValueError, match=r"expected goal of shape \(at most 11,\)"):
        pipe.plan(_obs(), goal=np.zeros(12))
    with pytest.raises(ValueError, match="goal contains NaN"):
        pipe.plan(_obs(), goal=np.array([np.nan, 0.0]))


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros(12), r"expected observation of shape \(11,\) or \(n_envs, 11\), got \(12,\)"),
        (np.zeros((2, 3, 11)), r"got \(2, 3, 11\)"),
        (np.full(11, np.nan), "NaN or inf"),
        (np.full(11, np.inf), "NaN or inf"),
    ],
)
def test_bad_observations(pipe: ValueGuidedRLPipeline, bad: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pipe(bad)


def test_save_load_round_trip(pipe: ValueGuidedRLPipeline, tmp_path: Path) -> None:
    pipe.save_pretrained(tmp_path / "copy")
    again = ValueGuidedRLPipeline.from_pretrained(tmp_path / "copy")
    a = pipe.plan(_obs(), generator=torch.Generator().manual_seed(1))
    b = again.plan(_obs(), generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(a.actions, b.actions)
    assert again.info.env_id == "Hopper-v5" and again.plan_config == pipe.plan_config
    assert not list((tmp_path / "copy").glob(".*"))  # no temporary leftovers


def test_compiled_networks_plan_as_the_eager_ones(tiny_run: Path) -> None:
    compiled = ValueGuidedRLPipeline.from_pretrained(tiny_run)
    eager = compiled.plan(_obs(), generator=torch.Generator().manual_seed(3))
    assert compiled.compile(backend="eager") is compiled  # the eager backend: no C++ compiler in the test
    again = compiled.plan(_obs(), generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(again.actions, eager.actions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again.values, eager.values, rtol=1e-5, atol=1e-6)


def test_to_device_keeps_working(pipe: ValueGuidedRLPipeline) -> None:
    moved = pipe.to("cpu")
    assert moved.device.type == "cpu" and moved(_obs()).shape == (3,)


def test_missing_and_corrupt_run_files(tiny_run: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no run folder at .* and no shipped run named"):
        ValueGuidedRLPipeline.from_pretrained(tmp_path / "nothing")
    for rel, match in [
        ("unet/diffusion_pytorch_model.safetensors", "lacks unet/diffusion_pytorch_model"),
        ("value_function/config.json", "lacks value_function/config.json"),
        ("diffplan.json", "lacks diffplan.json"),  # and normalizer/: nothing records the normalizer
        ("scheduler/scheduler_config.json", "lacks scheduler/scheduler_config.json"),
        ("model_index.json", "lacks model_index.json"),
    ]:
        broken = tmp_path / rel.replace("/", "_")
        shutil.copytree(tiny_run, broken)
        (broken / rel).unlink()
        if rel == "diffplan.json":
            shutil.rmtree(broken / "normalizer")
        with pytest.raises(FileNotFoundError, match=match):
            ValueGuidedRLPipeline.from_pretrained(broken)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_run, corrupt)
    weights = corrupt / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // 2])
    with pytest.raises(ValueError, match="cannot load .*unet: the weights or config are corrupt"):
        ValueGuidedRLPipeline.from_pretrained(corrupt)
    bad_json = tmp_path / "badjson"
    shutil.copytree(tiny_run, bad_json)
    (bad_json / "diffplan.json").write_text("{not json")
    with pytest.raises(ValueError, match="diffplan.json is not valid JSON"):
        ValueGuidedRLPipeline.from_pretrained(bad_json)
    shutil.copy(tiny_run / "diffplan.json", bad_json / "diffplan.json")
    (bad_json / "model_index.json").write_text("{not json")
    with pytest.raises(ValueError, match="model_index.json is not valid JSON"):
        ValueGuidedRLPipeline.from_pretrained(bad_json)


def test_models_of_folders_written_before_they_were_registered_still_load(maze_run: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"  # model_index.json without inverse_dynamics, its folder beside it
    shutil.copytree(maze_run, old)
    index = json.loads((old / "model_index.json").read_text())
    del index["inverse_dynamics"]
    (old / "model_index.json").write_text(json.dumps(index))
    loaded, new = ValueGuidedRLPipeline.from_pretrained(old), ValueGuidedRLPipeline.from_pretrained(maze_run)
    assert loaded.components["inverse_dynamics"] is loaded.inverse_dynamics
    for a, b in zip(loaded.inverse_dynamics.parameters(), new.inverse_dynamics.parameters(), strict=True):
        assert torch.equal(a, b)


def test_constructor_needs_a_normalizer(pipe: ValueGuidedRLPipeline) -> None:
    with pytest.raises(ValueError, match="expected normalizer=.* or a D4RL env"):
        ValueGuidedRLPipeline(value_function=pipe.value_function, unet=pipe.unet, scheduler=pipe.scheduler, env=None)


def test_d4rl_style_env_gives_per_dimension_normalizer(pipe: ValueGuidedRLPipeline) -> None:
    class FakeD4RL:
        def get_dataset(self) -> dict:
            rng = np.random.default_rng(0)
            return {
                "observations": rng.normal(0, np.arange(1, 12), size=(500, 11)),
                "actions": rng.normal(size=(500, 3)),
            }

    p = ValueGuidedRLPipeline(
        value_function=pipe.value_function, unet=pipe.unet, scheduler=pipe.scheduler, env=FakeD4RL()
    )
    scale = p.normalizer.observations.scale
    assert scale[-1] / scale[0] > 5  # per dimension, not one scalar


def test_shipped_runs_load_and_plan() -> None:
    names = list_runs()
    assert "hopper-medium" in names
    for name in names:
        assert resolve_run(name).is_dir()
    pipe = ValueGuidedRLPipeline.from_pretrained("hopper-medium")
    assert pipe.info.env_id == "Hopper-v5" and pipe.plan_config.sampler == "ddim"
    assert pipe.plan_config.warm_start_steps == 2  # used by a Planner, not by the stateless call
    first, again = (pipe(_obs(), generator=torch.Generator().manual_seed(4)) for _ in range(2))
    assert first.shape == (3,)
    np.testing.assert_array_equal(first, again)  # no hidden state between calls


@pytest.mark.parametrize("name", list_runs())
def test_every_shipped_run_is_a_diffusers_pipeline_of_registered_components(name: str, tmp_path: Path) -> None:
    from diffplan.planning.runs import CRITIC, FINE, INVERSE_DYNAMICS, NORMALIZER, STATE_VALUE

    pipe = ValueGuidedRLPipeline.from_pretrained(name)
    assert pipe.info is not None
    score, ev = pipe.info.extra["score"], pipe.info.evaluation  # its figure, on episodes it never saw
    assert score["unseen"] and (score["episodes"], score["eval_seed"], ev.num_envs) == (ev.episodes, ev.seed, 10)
    for sub in (NORMALIZER, INVERSE_DYNAMICS, CRITIC, STATE_VALUE, FINE):  # registered: saved, loaded, moved
        assert pipe.components[sub] is getattr(pipe, sub)
        assert (getattr(pipe, sub) is not None) == (resolve_run(name) / sub).is_dir()
    settings = pipe.plan_config.override(batch_size=2, sampler="ddim", num_inference_steps=2, coarse_to_fine=False)
    obs = pipe.normalizer.observations.shift  # the data's mean state

    def planned(p: ValueGuidedRLPipeline) -> np.ndarray:
        return p.sample(obs, settings=settings, generator=torch.Generator().manual_seed(0)).plan.observations

    pipe.save_pretrained(tmp_path / "copy")
    np.testing.assert_array_equal(planned(ValueGuidedRLPipeline.from_pretrained(tmp_path / "copy")), planned(pipe))
    shift = pipe.normalizer.observations.shift
    pipe.to(dtype=torch.float64)  # diffusers' .to() reaches every model, the inverse dynamics and critics too
    models = [m for m in pipe.components.values() if isinstance(m, torch.nn.Module)]
    assert {p.dtype for m in models for p in m.parameters()} == {torch.float64}
    assert pipe.normalizer.observations.shift is shift  # the normalizer's float64 constants are not cast
    assert planned(pipe).shape == (2, pipe.plan_config.planning_horizon, pipe.obs_dim)


@pytest.mark.parametrize(
    ("maze", "env_id", "dit"),
    [
        ("umaze", "PointMaze_UMaze-v3", True),
        ("medium", "PointMaze_Medium-v3", True),
        ("large", "PointMaze_Large-v3", False),
    ],
)
def test_shipped_mazes_diffuse_states_only_beside_the_diffuser_run(maze: str, env_id: str, dit: bool) -> None:
    from diffplan.transformer import DiT1DModel

    obs, goal = np.array([1.0, 1.0, 0.0, 0.0]), np.array([-1.0, -1.0])
    for name, is_dit, channels in ((f"pointmaze-{maze}", dit, 4), (f"pointmaze-{maze}-diffuser", False, 6)):
        pipe = ValueGuidedRLPipeline.from_pretrained(name)
        assert pipe.info.env_id == env_id
        assert isinstance(pipe.unet, DiT1DModel) == is_dit
        plan = pipe.plan(obs, goal=goal, batch_size=4, generator=torch.Generator().manual_seed(0))
        assert plan.normalized.shape[-1] == channels  # states only (x, y, vx, vy) vs states + actions
        action = pipe(obs, goal=goal, batch_size=4, generator=torch.Generator().manual_seed(0))
        assert action.shape == (2,) and np.all(np.abs(action) <= 1.0)


def test_call_is_stateless_with_tensor_keywords(pipe: ValueGuidedRLPipeline) -> None:
    """Regression: a second call with a tensor in the keywords raised 'Boolean value of Tensor ... is ambiguous'."""
    from diffplan.diffusion import Constraint

    fixed = Constraint(index=2, start=0, values=torch.full((4, 3), 0.5))
    goal = torch.tensor([1.2, 0.1], dtype=torch.float64)
    actions = [
        pipe(
            _obs(),
            batch_size=4,
            constraints=[fixed],
            goal=goal,
            warm_start_steps=2,
            generator=torch.Generator().manual_seed(1),
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(actions[0], actions[1])
    plan = pipe.plan(_obs(), batch_size=4, constraints=[fixed], generator=torch.Generator().manual_seed(1))
    assert torch.equal(plan.normalized[:, 2, :3], torch.full((4, 3), 0.5))


def test_callback_on_step_end_sees_and_may_replace_the_plans(pipe: ValueGuidedRLPipeline) -> None:
    steps: list[tuple[int, int]] = []

    def zero_actions_at_the_end(p: ValueGuidedRLPipeline, i: int, t: int, tensors: dict) -> dict:
        assert p is pipe and tensors["x"].shape == (3, pipe.plan_config.planning_horizon, 14)
        steps.append((i, t))
        x = tensors["x"].clone()
        if t == 0:
            x[..., :3] = 0.0
        return {"x": x}

    plan = pipe.plan(
        _obs(), batch_size=3, sampler="ddim", num_inference_steps=4, callback_on_step_end=zero_actions_at_the_end
    )
    assert [i for i, _ in steps] == [0, 1, 2, 3] and steps[-1][1] == 0
    assert torch.equal(plan.normalized[..., :3], torch.zeros_like(plan.normalized[..., :3]))
    np.testing.assert_array_equal(plan.observations[:, 0], np.broadcast_to(_obs(), (3, 11)))  # start still inpainted
    with pytest.raises(ValueError, match="may only name 'x'; got \\['latents'\\]"):
        pipe.plan(_obs(), callback_on_step_end=zero_actions_at_the_end, callback_on_step_end_tensor_inputs=["latents"])


# ---- goal-conditioned planning in PointMaze (fixture maze_run: tests/conftest.py)


def test_goal_arrivals_hold_the_goal_exactly_from_each_plans_arrival(maze_run: Path) -> None:
    run = ValueGuidedRLPipeline.from_pretrained(maze_run)
    # without a value network (as the maze presets), plans are ranked by consistency and arrival
    pipe = ValueGuidedRLPipeline(
        value_function=None,
        unet=run.unet,
        scheduler=run.scheduler,
        normalizer=run.normalizer,
        plan_config=run.plan_config,
        info=run.info,
    )
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


def test_limits_normalizer_and_goal_inpainting(maze_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(maze_run)
    assert pipe.normalizer.observations.kind == "limits" and pipe.obs_dim == 4
    start, goal = np.array([-1.0, -1.0, 0.0, 0.0]), np.array([1.0, 1.0])
    plan = pipe.plan(start, goal=goal, batch_size=3, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(plan.observations[:, 0], np.broadcast_to(start, (3, 4)))
    np.testing.assert_array_equal(plan.observations[:, -1, :2], np.broadcast_to(goal, (3, 2)))


def test_value_free_goal_run(minari_root: Path, tmp_path: Path) -> None:
    """Maze presets train no value network: plans come from inpainting alone."""
    preset = get_preset("maze-umaze-small", denoiser_steps=5, horizon=16, inverse_steps=0)
    preset = replace(
        preset,
        unet=replace(preset.unet, block_out_channels=(16, 32)),
        diffusion=replace(preset.diffusion, num_train_timesteps=8),
    )
    collect(
        env_id="PointMaze_UMaze-v3",
        behavior="waypoint",
        steps=300,
        seed=2,
        dataset_id="test/umaze-vf-v0",
        progress=False,
    )
    train(dataset="test/umaze-vf-v0", out=tmp_path / "run", preset=preset, device="cpu", progress=False)
    assert not (tmp_path / "run" / "value_function").exists()
    pipe = ValueGuidedRLPipeline.from_pretrained(tmp_path / "run")
    assert pipe.value_function is None
    plan = pipe.plan(
        np.zeros(4),
        goal=np.array([1.0, 0.5]),
        batch_size=5,
        goal_arrivals=1,
        generator=torch.Generator().manual_seed(0),
    )
    assert plan.observations.shape == (5, 16, 4)
    np.testing.assert_array_equal(plan.observations[:, -1, :2], np.broadcast_to([1.0, 0.5], (5, 2)))
    # ranked by dynamic consistency: minus the largest jump between consecutive (normalized) states
    states = plan.normalized[..., pipe.act_dim :]
    jumps = (states[:, 1:] - states[:, :-1]).norm(dim=-1).amax(dim=1).numpy()
    np.testing.assert_allclose(plan.values, -jumps, rtol=1e-5)
    assert np.all(np.diff(plan.values) <= 0)


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"batch_size": 0}, r"expected batch_size >= 1, got 0 \(a count: an integer\)"),
        ({"batch_size": -1}, r"expected batch_size >= 1, got -1 \(a count: an integer\)"),
        ({"batch_size": 2.5}, r"expected batch_size >= 1, got 2.5 \(a count: an integer\)"),
        ({"batch_size": True}, r"expected batch_size >= 1, got True \(a count: an integer\)"),
        ({"num_inference_steps": -3}, r"expected num_inference_steps >= 1, got -3 \(a count: an integer\)"),
        ({"num_inference_steps": 0}, r"expected num_inference_steps >= 1, got 0 \(a count: an integer\)"),
        ({"planning_horizon": 0}, r"expected planning_horizon >= 1, got 0 \(a count: an integer\)"),
        ({"n_guide_steps": -1}, r"expected n_guide_steps >= 0, got -1 \(a count: an integer\)"),
        ({"t_stopgrad": -5}, r"expected t_stopgrad >= 0, got -5 \(a count: an integer\)"),
        ({"scale": float("nan")}, r"expected scale >= 0.0, got nan \(a finite number\)"),
        ({"scale": float("inf")}, r"expected scale >= 0.0, got inf \(a finite number\)"),
        ({"scale": -1.0}, r"expected scale >= 0.0, got -1.0 \(a finite number\)"),
        ({"goal_arrivals": 0}, r"expected goal_arrivals >= 1, got 0 \(a count: an integer\)"),
        ({"sampler": "euler"}, r"unknown sampler 'euler'"),
    ],
)
def test_bad_settings_are_refused_the_same_way_everywhere(pipe: ValueGuidedRLPipeline, settings: dict,
                                                          message: str) -> None:  # fmt: skip
    from diffplan.planning.planner import Planner

    for call in (lambda: pipe.plan(_obs(), **settings), lambda: pipe(_obs(), **settings),
                 lambda: Planner(pipe, n_envs=1, settings=pipe.plan_config.override(**settings)).act(_obs()[None]),
                 lambda: PlanConfig(**settings)):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            call()


def test_observations_far_from_the_training_data_are_refused(pipe: ValueGuidedRLPipeline) -> None:
    far = _obs()
    far[4] = 1e6
    with pytest.raises(ValueError, match=r"observation dimensions \[4\] lie more than 100 normalizer units"):
        pipe.plan(far)
    with pytest.raises(ValueError, match=r"goal dimensions \[0\] lie more than 100"):
        pipe.plan(_obs(), goal=np.array([1e9]))
    assert pipe.plan(_obs() + 0.5, batch_size=2).actions.shape == (2, 8, 3)  # near the data: planned
