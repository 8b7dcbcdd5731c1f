"""Environment facts: creation, dimensions and reference scores for normalized scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym


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
    return int(space.shape[0]), int(env.action_space.shape[0])


def reference_scores(env_id: str | None, *, ref_min: float | None = None,
                     ref_max: float | None = None) -> ReferenceScores | None:
    """Reference scores from dataset metadata when given, else D4RL's for the env family."""
    if ref_min is not None and ref_max is not None and ref_max != ref_min:
        return ReferenceScores(float(ref_min), float(ref_max), "dataset metadata")
    if env_id is None:
        return None
    return D4RL_REFERENCES.get(env_id.split("-")[0])
