from pathlib import Path

import numpy as np
import pytest

from diffplan.evaluation import evaluate
from diffplan.planning import ValueGuidedRLPipeline


@pytest.fixture(scope="module")
def pipe(tiny_run: Path) -> ValueGuidedRLPipeline:
    return ValueGuidedRLPipeline.from_pretrained(tiny_run)


def test_batched_evaluation_fields(pipe: ValueGuidedRLPipeline) -> None:
    res = evaluate(pipe=pipe, episodes=3, seed=4, num_envs=2, max_episode_steps=15, progress=False,
                   plan_kwargs={"batch_size": 4})
    d = res.to_dict()
    for key in ("env_id", "episodes", "seed", "returns", "mean_return", "normalized_score", "stderr",
                "success_rate", "seconds_per_decision"):
        assert key in d
    assert d["env_id"] == "Hopper-v5" and d["episodes"] == 3 and len(d["returns"]) == 3
    assert all(1 <= n <= 15 for n in d["lengths"])
    assert d["mean_return"] == pytest.approx(np.mean(d["returns"]))
    ref = d["reference"]
    expected = np.mean([100 * (r - ref["random"]) / (ref["expert"] - ref["random"]) for r in d["returns"]])
    assert d["normalized_score"] == pytest.approx(expected)
    assert d["seconds_per_decision"] > 0 and d["num_envs"] == 2


def test_same_seed_same_returns(pipe: ValueGuidedRLPipeline) -> None:
    a = evaluate(pipe=pipe, episodes=2, seed=1, max_episode_steps=10, progress=False, plan_kwargs={"batch_size": 2})
    b = evaluate(pipe=pipe, episodes=2, seed=1, max_episode_steps=10, progress=False, plan_kwargs={"batch_size": 2})
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

    res = evaluate(policy=policy, env_id="Hopper-v5", episodes=2, seed=3, num_envs=2, max_episode_steps=5,
                   progress=False)
    assert res.lengths == [5, 5] and len(seen) == 5 and res.normalized_score is not None
    # the same seeds give the same first observations as a planner's evaluation would meet
    import gymnasium as gym

    first, _ = gym.make("Hopper-v5").reset(seed=3)
    np.testing.assert_allclose(seen[0][0], first)
    with pytest.raises(ValueError, match="exactly one of pipe= .* and policy="):
        evaluate(pipe=pipe, policy=policy, episodes=1, seed=0, progress=False)
    with pytest.raises(ValueError, match="a policy acts every step"):
        evaluate(policy=policy, env_id="Hopper-v5", episodes=1, seed=0, mode="track", progress=False)
