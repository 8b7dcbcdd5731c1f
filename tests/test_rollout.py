"""rollout.py: the one loop that steps a vector env."""

import gymnasium as gym
import numpy as np

from diffplan.rollout import CallablePolicy, Observer, rollout


def _scripted(state: np.ndarray, goal: np.ndarray | None) -> np.ndarray:
    return np.tanh(state[:, :3])


def _alone(seed: int, steps: int) -> tuple[float, int]:
    """The same episode played on a plain Gymnasium env."""
    env = gym.make("Hopper-v5", max_episode_steps=steps)
    obs, _ = env.reset(seed=seed)
    total, n = 0.0, 0
    while True:
        obs, r, term, trunc, _ = env.step(_scripted(obs[None], None)[0].astype(np.float32))
        total, n = total + r, n + 1
        if term or trunc:
            return total, n


class _Count(Observer):
    def __init__(self) -> None:
        self.started_n, self.acts, self.stepped_n, self.ends = 0, [], 0, []

    def started(self, envs) -> None:  # type: ignore[no-untyped-def]
        self.started_n += 1

    def acted(self, *, env_index, episode, state, goal, policy) -> None:  # type: ignore[no-untyped-def]
        self.acts.append((env_index, episode))

    def stepped(self, envs) -> None:  # type: ignore[no-untyped-def]
        self.stepped_n += 1

    def ended(self, *, env_index, episode) -> None:  # type: ignore[no-untyped-def]
        self.ends.append(episode)


def test_episodes_over_fewer_envs_are_the_episodes_played_alone() -> None:
    count = _Count()
    res = rollout(
        env_id="Hopper-v5",
        policy=CallablePolicy(_scripted, 2),
        episodes=5,
        seed=7,
        num_envs=2,
        env_kwargs={"max_episode_steps": 25},
        observers=[count],
        progress=False,
    )
    for k in range(5):  # episode k is reset with seed 7 + k, whichever env plays it
        ret, length = _alone(7 + k, 25)
        assert res.lengths[k] == length and np.isclose(res.returns[k], ret), k
    assert res.success is None and res.decisions == int(res.lengths.sum()) == res.plans
    assert count.started_n == 1 and sorted(count.ends) == [0, 1, 2, 3, 4]
    assert len(count.acts) == res.decisions and count.stepped_n >= max(res.lengths)
    assert {e for _, e in count.acts} == set(range(5)) and {i for i, _ in count.acts} == {0, 1}


def test_goal_envs_report_success() -> None:
    from diffplan.envs.maze import WaypointController
    from diffplan.envs.specs import make_env

    env = make_env("PointMaze_UMaze-v3")
    controller = WaypointController(env)  # drives the point mass to its goal

    def waypoints(state: np.ndarray, goal: np.ndarray | None) -> np.ndarray:
        return np.stack([controller({"observation": s, "desired_goal": g}) for s, g in zip(state, goal)])

    res = rollout(
        env_id="PointMaze_UMaze-v3",
        policy=CallablePolicy(waypoints, 2),
        episodes=2,
        seed=0,
        num_envs=2,
        env_kwargs={"max_episode_steps": 300},
        progress=False,
    )
    assert res.success is not None and res.success.all() and (res.returns > 0).all()
    idle = rollout(
        env_id="PointMaze_UMaze-v3",
        policy=CallablePolicy(lambda s, g: np.zeros((len(s), 2)), 1),
        episodes=1,
        seed=0,
        env_kwargs={"max_episode_steps": 5},
        progress=False,
    )
    assert idle.success is not None and not idle.success.any() and idle.lengths.tolist() == [5]
