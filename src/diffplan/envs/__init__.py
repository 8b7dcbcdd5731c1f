"""Environments: creation, dimensions, reference scores."""

from diffplan.envs.family import EnvFamily, family, is_maze
from diffplan.envs.specs import ReferenceScores, action_bounds, env_dims, make_env, reference_scores

__all__ = [
    "EnvFamily",
    "ReferenceScores",
    "action_bounds",
    "env_dims",
    "family",
    "is_maze",
    "make_env",
    "reference_scores",
]
