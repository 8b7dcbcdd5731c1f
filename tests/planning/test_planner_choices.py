"""States-only plans with inverse dynamics actions, ranking by a critic, coarse-to-fine planning."""

from pathlib import Path

import numpy as np
import pytest
import torch

from diffplan.planning import ValueGuidedRLPipeline
from diffplan.planning.planner import Planner


def _obs(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.array([1.25] + [0.0] * 10) + 0.01 * rng.normal(size=(n, 11))


def _seeded() -> torch.Generator:
    return torch.Generator().manual_seed(3)


def test_states_only_plans_act_by_inverse_dynamics(states_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(states_run)
    assert pipe.plan_act_dim == 0 and pipe.act_dim == 3
    obs = _obs(2)
    plan = pipe.plan(obs, batch_size=4, generator=_seeded())
    assert plan.actions.shape == (2, 4, 8, 3) and plan.observations.shape == (2, 4, 8, 11)
    assert plan.normalized.shape == (2, 4, 8, 11)  # what the denoiser made: states only
    np.testing.assert_allclose(plan.observations[:, :, 0], np.repeat(obs[:, None], 4, 1))
    states = plan.observations.reshape(-1, 8, 11)
    expected = pipe.inverse_action(
        state=states[:, :-1].reshape(-1, 11), target=states[:, 1:].reshape(-1, 11), lookahead=np.ones(8 * 7)
    ).reshape(8, 7, 3)
    np.testing.assert_allclose(plan.actions.reshape(-1, 8, 3)[:, :-1], expected, atol=1e-4)
    np.testing.assert_allclose(plan.actions[..., -1, :], plan.actions[..., -2, :])  # the last step repeats
    action = pipe(obs[0], generator=_seeded())
    assert action.shape == (3,) and np.all(np.abs(action) <= 1)


def test_states_only_warm_starts_use_state_channels(states_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(states_run)
    planner = Planner(
        pipe,
        n_envs=2,
        settings=pipe.plan_config.override(batch_size=4, warm_start_steps=3, replan_threshold=float("inf")),
    )
    obs = _obs(2)
    first = planner.act(obs, generator=_seeded())
    second = planner.act(obs, generator=_seeded())
    assert first.shape == second.shape == (2, 3) and planner.stats.warm == 2


def test_ranking_by_the_critic(states_run: Path, tiny_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(states_run)
    assert pipe.critic is not None
    plan = pipe.plan(_obs(1)[0], batch_size=6, n_guide_steps=0, rank_by="q", generator=_seeded())
    assert np.all(np.diff(plan.values) <= 0)
    norm = pipe.normalizer
    with torch.no_grad():
        q = pipe.critic(
            torch.as_tensor(norm.observations.normalize(plan.observations[:, 0]), dtype=torch.float32),
            torch.as_tensor(norm.actions.normalize(plan.actions[:, 0]), dtype=torch.float32),
        )
    np.testing.assert_allclose(plan.values, q.numpy(), rtol=1e-4, atol=1e-3)
    by_value = pipe.plan(_obs(1)[0], batch_size=6, n_guide_steps=0, rank_by="value", generator=_seeded())
    assert not np.allclose(by_value.values, plan.values)  # another critic, other scores
    plain = ValueGuidedRLPipeline.from_pretrained(tiny_run)
    with pytest.raises(ValueError, match="rank_by='q' needs a run with a Q-function"):
        plain.plan(_obs(1)[0], rank_by="q")
    with pytest.raises(ValueError, match="unknown rank_by 'best'"):
        plain.plan(_obs(1)[0], rank_by="best")


def test_states_only_denoiser_needs_inverse_dynamics(states_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(states_run)
    with pytest.raises(ValueError, match="diffuses states only"):
        ValueGuidedRLPipeline(value_function=None, unet=pipe.unet, scheduler=pipe.scheduler, normalizer=pipe.normalizer)


def test_coarse_to_fine_refines_the_first_coarse_step(c2f_run: Path, tmp_path: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(c2f_run)
    assert pipe.fine is not None and pipe.info is not None and pipe.info.stride == 2
    obs = _obs(2)
    fine = pipe.plan(obs, batch_size=4, generator=_seeded())
    coarse = pipe.plan(obs, batch_size=4, coarse_to_fine=False, generator=_seeded())
    assert coarse.observations.shape[2] == 8 and fine.observations.shape[2] == 3
    # the fine plans start at the observation and end at the best coarse plan's second state
    np.testing.assert_allclose(fine.observations[:, :, 0], np.repeat(obs[:, None], fine.observations.shape[1], 1))
    np.testing.assert_allclose(
        fine.observations[:, :, -1], np.repeat(coarse.observations[:, :1, 1], fine.observations.shape[1], 1)
    )
    np.testing.assert_allclose(pipe(obs, 4, generator=_seeded()), np.clip(fine.actions[:, 0, 0], -1, 1))
    with pytest.raises(ValueError, match="coarse-to-fine planning starts from noise"):
        planner = Planner(
            pipe, n_envs=2, settings=pipe.plan_config.override(warm_start_steps=2, replan_threshold=float("inf"))
        )
        planner.act(obs)
        planner.act(obs)
    pipe.save_pretrained(tmp_path / "copy")
    again = ValueGuidedRLPipeline.from_pretrained(tmp_path / "copy")
    np.testing.assert_allclose(again.plan(obs, batch_size=4, generator=_seeded()).actions, fine.actions)


def test_coarse_to_fine_plans_are_executed_at_the_fine_stride(c2f_run: Path) -> None:
    from diffplan.planning.execution import PlannerPolicy

    pipe = ValueGuidedRLPipeline.from_pretrained(c2f_run)
    assert pipe.plan_stride() == 1 and pipe.plan_stride(coarse_to_fine=False) == 2
    assert PlannerPolicy(pipe, n_envs=1).replan_every == 1
    assert PlannerPolicy(pipe, n_envs=1, settings=pipe.plan_config.override(coarse_to_fine=False)).replan_every == 2


def test_ranking_by_the_summed_state_value(dv_run: Path, states_run: Path) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(dv_run)
    assert pipe.state_value is not None and pipe.value_function is None
    assert pipe.plan_config.rank_by == "state_value" and pipe.plan_config.n_guide_steps == 0
    plan = pipe.plan(_obs(1)[0], generator=_seeded())  # the run's own defaults: 6 plans of 4 states
    assert plan.observations.shape == (6, 4, 11) and np.all(np.diff(plan.values) <= 0)
    with torch.no_grad():
        states = torch.as_tensor(pipe.normalizer.observations.normalize(plan.observations), dtype=torch.float32)
        summed = pipe.state_value(states[:, 1:]).sum(dim=1)  # the planned states after the start
    np.testing.assert_allclose(plan.values, summed.numpy(), rtol=1e-4, atol=1e-4)
    # the first action goes from the start to the best plan's second state
    first = pipe.inverse_action(state=plan.observations[:1, 0], target=plan.observations[:1, 1], lookahead=np.ones(1))
    np.testing.assert_allclose(pipe(_obs(1)[0], generator=_seeded()), np.clip(first[0], -1, 1), atol=1e-4)
    other = ValueGuidedRLPipeline.from_pretrained(states_run)
    with pytest.raises(ValueError, match="rank_by='state_value' needs a run with a state value V"):
        other.plan(_obs(1)[0], rank_by="state_value")


@pytest.mark.parametrize(
    ("name", "steps", "at_least"),
    [("hopper-medium-dv", 10, 60), ("walker2d-medium-dv", 10, 60), ("halfcheetah-medium-dv", 20, 40)],
)
def test_shipped_dv_runs_plan_with_their_stored_settings_and_carry_their_figures(
    name: str, steps: int, at_least: float
) -> None:
    pipe = ValueGuidedRLPipeline.from_pretrained(name)
    cfg = pipe.plan_config
    # DDIM steps chosen per run on held-out episodes (benchmarks/grid.py DV_CHOSEN)
    assert (cfg.rank_by, cfg.batch_size, cfg.sampler, cfg.num_inference_steps, cfg.n_guide_steps) == (
        "state_value",
        50,
        "ddim",
        steps,
        0,
    )
    assert pipe.info is not None and pipe.info.preset["name"] == "dv"
    score, ev = pipe.info.extra["score"], pipe.info.evaluation
    # the figure on 20 episodes no choice has seen, measured by `diffplan evaluate NAME` with no flags
    assert score["unseen"] and (score["episodes"], score["eval_seed"]) == (ev.episodes, ev.seed) == (20, 5000)
    assert score["mean"] > at_least and pipe.info.extra["chosen_on"]["episodes"].startswith("reset seeds ")
    obs = pipe.normalizer.observations.shift  # the dataset's mean state
    plan = pipe.plan(obs, generator=_seeded())
    assert plan.observations.shape == (50, 4, obs.shape[0]) and np.all(np.diff(plan.values) <= 0)
