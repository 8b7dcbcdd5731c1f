"""envs/specs.py: env creation, dimensions, reference scores."""

import pytest

from diffplan.envs.specs import (
    D4RL_REFERENCES,
    ReferenceScores,
    check_dims,
    env_dims,
    make_env,
    measured_references,
    reference_scores,
)


def test_dimensions_of_locomotion_and_goal_envs() -> None:
    for env_id, dims in (("Hopper-v5", (11, 3)), ("Walker2d-v5", (17, 6)), ("PointMaze_UMaze-v3", (4, 2))):
        env = make_env(env_id)
        assert env_dims(env) == dims, env_id
        env.close()
    with pytest.raises(ValueError, match=r"a run has obs_dim 4, act_dim 2 but Hopper-v5 has obs_dim 11, act_dim 3"):
        check_dims("Hopper-v5", obs_dim=4, act_dim=2, what="a run")
    with pytest.raises(ValueError, match="unknown environment id 'Hopper-v0"):
        make_env("Hopper-v0")


def test_reference_scores_prefer_dataset_metadata_then_measured_then_d4rl() -> None:
    refs = ReferenceScores(10.0, 110.0, "test")
    assert refs.normalize(10.0) == 0.0 and refs.normalize(110.0) == 100.0 and refs.normalize(60.0) == 50.0
    from_data = reference_scores("Hopper-v5", ref_min=1.0, ref_max=3.0)
    assert (from_data.random, from_data.expert, from_data.source) == (1.0, 3.0, "dataset metadata")
    measured = measured_references()
    assert "Hopper-v5" in measured and reference_scores("Hopper-v5") == measured["Hopper-v5"]
    assert reference_scores("HalfCheetah-v5") == measured["HalfCheetah-v5"]
    assert reference_scores("HalfCheetah-v4") == D4RL_REFERENCES["HalfCheetah"]  # not measured: D4RL's
    assert reference_scores("Hopper-v5", ref_min=2.0, ref_max=2.0) == measured["Hopper-v5"]  # degenerate metadata
    assert reference_scores(None) is None and reference_scores("Nope-v1") is None
