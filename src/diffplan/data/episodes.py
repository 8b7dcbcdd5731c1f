"""Episodes from a local Minari dataset or a D4RL-style HDF5 file, as plain numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Episode:
    """One episode, aligned by decision step.

    Attributes:
        observations: ``[T, obs_dim]``, the observation at which each action was taken.
        actions: ``[T, act_dim]``.
        rewards: ``[T]``.
        terminated: whether the last step ended in a terminal state (not a time-out).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool

    def __len__(self) -> int:
        return int(self.rewards.shape[0])


@dataclass(frozen=True)
class EpisodeSet:
    """The episodes of one dataset and what is known about where they came from.

    Attributes:
        episodes: the episodes, in dataset order.
        dataset_id: Minari id or HDF5 path.
        env_id: Gymnasium id of the environment that produced them, when recorded.
        ref_min_score: return that normalizes to 0 (random policy), when recorded.
        ref_max_score: return that normalizes to 100 (expert policy), when recorded.
    """

    episodes: list[Episode]
    dataset_id: str
    env_id: str | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None

    @property
    def obs_dim(self) -> int:
        """Observation dimensions S."""
        return int(self.episodes[0].observations.shape[1])

    @property
    def act_dim(self) -> int:
        """Action dimensions A."""
        return int(self.episodes[0].actions.shape[1])

    @property
    def num_steps(self) -> int:
        """Total steps over all episodes."""
        return sum(len(e) for e in self.episodes)

    def returns(self) -> np.ndarray:
        """Undiscounted return of every episode, ``[n_episodes]``."""
        return np.array([float(e.rewards.sum()) for e in self.episodes])

    def fingerprint(self) -> str:
        """SHA-256 of the episodes (observations, actions, rewards, terminations as float64, in order):
        the same for the same data wherever it was made, recorded by every run it trains."""
        import hashlib

        digest = hashlib.sha256()
        for ep in self.episodes:
            for arr in (ep.observations, ep.actions, ep.rewards, np.array([ep.terminated])):
                digest.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
        return digest.hexdigest()


def _flat_observations(obs: Any, obs_key: str) -> np.ndarray:
    """Dict observations (goal envs) are reduced to ``obs[obs_key]``."""
    if isinstance(obs, dict):
        if obs_key not in obs:
            raise ValueError(f"dict observations have keys {sorted(obs)}; expected {obs_key!r}")
        obs = obs[obs_key]
    return np.asarray(obs, dtype=np.float64)


def _check_episode(ep: Episode, where: str) -> Episode:
    n = len(ep)
    if ep.observations.ndim != 2 or ep.actions.ndim != 2 or ep.observations.shape[0] != n or ep.actions.shape[0] != n:
        raise ValueError(
            f"{where}: expected observations [T, obs_dim], actions [T, act_dim] and rewards [T] with equal T, "
            f"got {ep.observations.shape}, {ep.actions.shape}, {ep.rewards.shape}"
        )
    for name in ("observations", "actions", "rewards"):
        if not np.all(np.isfinite(getattr(ep, name))):
            raise ValueError(f"{where}: {name} contain NaN or inf")
    return ep


def datasets_root() -> Path:
    """The folder of the local Minari datasets (MINARI_DATASETS_PATH or ~/.minari/datasets), made when missing.

    Raises:
        ValueError: that path is a file.
    """
    import os

    root = Path(os.environ.get("MINARI_DATASETS_PATH") or Path.home() / ".minari" / "datasets")
    if root.exists() and not root.is_dir():
        raise ValueError(f"MINARI_DATASETS_PATH={root} is a file; expected the folder of the local datasets")
    root.mkdir(parents=True, exist_ok=True)
    return root


def load_minari(dataset_id: str, *, obs_key: str = "observation") -> EpisodeSet:
    """Load a local Minari dataset (honours ``MINARI_DATASETS_PATH``).

    Args:
        dataset_id: e.g. ``"mujoco/hopper/medium-v0"``, as written by ``minari download`` or
            ``diffplan collect``.
        obs_key: key used when observations are dicts.

    Raises:
        FileNotFoundError: no local dataset of that id (the message lists the local ones).
    """
    import minari

    try:
        dataset = minari.load_dataset(dataset_id)
    except FileNotFoundError as err:
        local = sorted(minari.list_local_datasets())
        raise FileNotFoundError(
            f"no local Minari dataset {dataset_id!r}; local datasets: {local or 'none'} "
            "(run `minari download ID` or `diffplan collect`)"
        ) from err
    meta = dataset.storage.metadata
    episodes = []
    for i, data in enumerate(dataset.iterate_episodes()):
        obs = _flat_observations(data.observations, obs_key)
        n = len(data.rewards)
        ep = Episode(
            observations=obs[:n],
            actions=np.asarray(data.actions, dtype=np.float64).reshape(n, -1),
            rewards=np.asarray(data.rewards, dtype=np.float64),
            terminated=bool(np.asarray(data.terminations)[-1]) if n else False,
        )
        episodes.append(_check_episode(ep, f"{dataset_id} episode {i}"))
    if not episodes:
        raise ValueError(f"Minari dataset {dataset_id!r} holds no episodes")
    env_spec = dataset.spec.env_spec
    return EpisodeSet(
        episodes=episodes,
        dataset_id=dataset_id,
        env_id=env_spec.id if env_spec is not None else None,
        ref_min_score=meta.get("ref_min_score"),
        ref_max_score=meta.get("ref_max_score"),
    )


def load_hdf5(path: str | Path, *, env_id: str | None = None) -> EpisodeSet:
    """Load a D4RL-style HDF5 file of flat arrays split into episodes by terminals and timeouts.

    Args:
        path: file with ``observations [N, S]``, ``actions [N, A]``, ``rewards [N]``,
            ``terminals [N]`` and ``timeouts [N]`` (D4RL's ``get_dataset()`` layout).
        env_id: Gymnasium id to record (the file's ``env_id`` attribute is used when absent).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a required array is missing or the lengths differ.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a D4RL-style HDF5 file at {path}, found nothing")
    keys = ("observations", "actions", "rewards", "terminals", "timeouts")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in keys if k not in f]
            if missing:
                raise ValueError(f"{path} lacks {missing}; a D4RL-style file holds {list(keys)}")
            arrays = {k: np.asarray(f[k]) for k in keys}
            env_id = env_id or (f.attrs["env_id"] if "env_id" in f.attrs else None)
    except OSError as err:
        raise ValueError(f"{path} is not a readable HDF5 file ({err})") from err
    n = arrays["rewards"].shape[0]
    if any(a.shape[0] != n for a in arrays.values()):
        raise ValueError(f"{path}: arrays differ in length: { {k: a.shape for k, a in arrays.items()} }")
    ends = np.flatnonzero(arrays["terminals"].astype(bool) | arrays["timeouts"].astype(bool))
    if ends.size == 0 or ends[-1] != n - 1:
        ends = np.append(ends, n - 1)  # an unfinished last episode is kept as a time-out
    episodes: list[Episode] = []
    start = 0
    for end in ends:
        sl = slice(start, end + 1)
        ep = Episode(
            observations=arrays["observations"][sl].astype(np.float64),
            actions=arrays["actions"][sl].astype(np.float64),
            rewards=arrays["rewards"][sl].astype(np.float64),
            terminated=bool(arrays["terminals"][end]),
        )
        episodes.append(_check_episode(ep, f"{path} episode {len(episodes)}"))
        start = end + 1
    return EpisodeSet(episodes=episodes, dataset_id=str(path), env_id=str(env_id) if env_id else None)


def load_episodes(source: str | Path, *, env_id: str | None = None) -> EpisodeSet:
    """Load episodes from a Minari id or, when ``source`` ends in ``.hdf5``/``.h5``, an HDF5 file."""
    if str(source).endswith((".hdf5", ".h5")):
        return load_hdf5(source, env_id=env_id)
    return load_minari(str(source))
