"""Environment facts: creation, dimensions and reference scores for normalized scores."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class ReferenceScores:
    """Returns that map to normalized scores 0 (random) and 100 (expert).

    Attributes:
        random: random-policy return.
        expert: expert return.
        source: where the numbers come from.
    """

    random: float
    expert: float
    source: str

    def normalize(self, ret: float) -> float:
        """Normalized score of a return, on the 0-100 scale of D4RL."""
        return 100.0 * (ret - self.random) / (self.expert - self.random)


# D4RL's published reference returns (d4rl/infos.py) for the v2 locomotion tasks, used until our
# own v5 references (measured by benchmarks) are stored in a dataset's metadata.
D4RL_REFERENCES: dict[str, ReferenceScores] = {
    "Hopper": ReferenceScores(-20.272305, 3234.3, "D4RL hopper"),
    "Walker2d": ReferenceScores(1.629008, 4592.3, "D4RL walker2d"),
    "HalfCheetah": ReferenceScores(-280.178953, 12135.0, "D4RL halfcheetah"),
    # maze2d-*-v1 (sparse reward, 300 / 600 / 800 steps)
    "PointMaze_UMaze": ReferenceScores(23.85, 161.86, "D4RL maze2d-umaze"),
    "PointMaze_Medium": ReferenceScores(13.13, 277.39, "D4RL maze2d-medium"),
    "PointMaze_Large": ReferenceScores(6.7, 273.99, "D4RL maze2d-large"),
}


def _register_robotics(env_id: str) -> None:
    if env_id.startswith(("PointMaze", "AntMaze")):
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` with gymnasium-robotics registered when needed and a clear error for unknown ids.

    Raises:
        ValueError: the id is not registered.
    """
    _register_robotics(env_id)
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as err:
        raise ValueError(f"unknown environment id {env_id!r} ({err})") from err


def env_dims(env: gym.Env) -> tuple[int, int]:
    """``(obs_dim, act_dim)`` of a Box-action env (dict observations: their ``observation`` part)."""
    space = env.observation_space
    if isinstance(space, gym.spaces.Dict):
        space = space["observation"]
    obs_shape, act_shape = space.shape, env.action_space.shape
    if obs_shape is None or act_shape is None:
        raise ValueError(f"expected Box observation and action spaces, got {space} and {env.action_space}")
    return int(obs_shape[0]), int(act_shape[0])


@functools.cache
def action_bounds(env_id: str) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` ``[act_dim]`` of an environment's Box action space (read once per id).

    Raises:
        ValueError: an unknown id, or actions that are not a Box.
    """
    env = make_env(env_id)
    space = env.action_space
    env.close()
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"expected a Box action space in {env_id}, got {space}")
    low, high = np.asarray(space.low, dtype=np.float64), np.asarray(space.high, dtype=np.float64)
    low.flags.writeable = high.flags.writeable = False  # shared by every caller of the cache
    return low, high


def check_dims(env_id: str, *, obs_dim: int, act_dim: int, what: str) -> None:
    """Raise a ValueError naming both sides when ``what`` (a dataset, a run) does not fit ``env_id``."""
    env = make_env(env_id)
    dims = env_dims(env)
    env.close()
    if dims != (obs_dim, act_dim):
        raise ValueError(
            f"{what} has obs_dim {obs_dim}, act_dim {act_dim} but {env_id} has obs_dim {dims[0]}, act_dim {dims[1]}"
        )


def measured_references() -> dict[str, ReferenceScores]:
    """Reference returns measured by ``benchmarks/reference_scores.py`` and shipped in the package."""
    import json
    from importlib import resources

    path = resources.files("diffplan") / "envs" / "reference_scores.json"
    if not path.is_file():
        return {}
    table = json.loads(path.read_text())
    return {
        k: ReferenceScores(v["random"], v["expert"], f"diffplan measured ({v['episodes']} episodes)")
        for k, v in table.items()
    }


def reference_scores(
    env_id: str | None, *, ref_min: float | None = None, ref_max: float | None = None
) -> ReferenceScores | None:
    """Reference scores: dataset metadata when given, else ours measured for the env, else D4RL's."""
    if ref_min is not None and ref_max is not None and ref_max != ref_min:
        return ReferenceScores(float(ref_min), float(ref_max), "dataset metadata")
    if env_id is None:
        return None
    measured = measured_references()
    if env_id in measured:
        return measured[env_id]
    return D4RL_REFERENCES.get(env_id.split("-")[0])
