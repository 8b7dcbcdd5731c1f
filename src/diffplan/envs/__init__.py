"""Environments: creation, dimensions, reference scores."""

from diffplan.envs.specs import ReferenceScores, env_dims, is_maze, make_env, reference_scores

__all__ = ["ReferenceScores", "env_dims", "is_maze", "make_env", "reference_scores"]
