"""Roll out a behaviour policy and write the episodes as a Minari dataset (no jax needed)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffplan.collect.policies import load_sac_actor, resolve_policy
from diffplan.data.episodes import datasets_root
from diffplan.envs.family import family
from diffplan.envs.specs import make_env, reference_scores
from diffplan.io import disk_full_reported

BEHAVIORS = ("random", "sac", "waypoint")


@dataclass(frozen=True)
class CollectResult:
    """What a collection wrote.

    Attributes:
        dataset_id: the Minari id.
        episodes: number of episodes.
        steps: number of environment steps.
        mean_return: mean undiscounted episode return.
        seconds: wall time.
    """

    dataset_id: str
    episodes: int
    steps: int
    mean_return: float
    seconds: float


def _random_policy(env: Any, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    env.action_space.seed(seed)
    return lambda obs: env.action_space.sample()


def dataset_exists(dataset_id: str) -> bool:
    """Whether a local Minari dataset of this id exists (honours ``MINARI_DATASETS_PATH``).

    Raises:
        ValueError: the datasets root is a file.
    """
    import minari

    from diffplan.data.episodes import datasets_root

    datasets_root()

    return dataset_id in minari.list_local_datasets()


def collect(
    *,
    env_id: str,
    behavior: str,
    steps: int,
    seed: int,
    dataset_id: str,
    policy: str | None = None,
    progress: bool = True,
) -> CollectResult:
    """Run ``behavior`` for ``steps`` environment steps and store a Minari dataset.

    Args:
        env_id: Gymnasium id.
        behavior: ``"random"``, ``"sac"`` (needs ``policy``: ``medium``, ``expert`` or a SAC actor
            file) or ``"waypoint"`` (PointMaze only: D4RL's maze2d controller, a new random goal
            each time one is reached).
        steps: total environment steps; the last episode is cut (as a time-out) at the budget.
        seed: seed of the first reset and of the policy's randomness.
        dataset_id: new Minari id, e.g. ``"diffplan/hopper-random-v0"``.
        policy: shipped policy name or policy file for ``sac``.
        progress: show a progress bar.

    Raises:
        ValueError: unknown behaviour, existing dataset id, or bad step count.
    """
    import time

    import minari
    import torch
    from minari.data_collector import EpisodeBuffer
    from tqdm.auto import tqdm

    if behavior not in BEHAVIORS:
        raise ValueError(f"unknown behavior {behavior!r}; expected one of {list(BEHAVIORS)}")
    if steps < 1:
        raise ValueError(f"expected steps >= 1, got {steps}")
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)  # Minari's error names the form (namespace/)name-vN
    except ValueError as err:
        raise ValueError(f"{err} A namespace has at least two characters, e.g. diffplan/hopper-random-v0.") from err
    if dataset_exists(dataset_id):
        raise ValueError(f"dataset {dataset_id!r} already exists; choose a new --dataset-id (nothing was overwritten)")
    fam = family(env_id)
    if behavior not in (fam.behavior, "random"):
        raise ValueError(
            f"behavior {behavior!r} does not apply to {env_id}: use 'waypoint' for PointMaze envs, 'sac' for locomotion"
        )
    env = make_env(env_id, **fam.collect_env_kwargs)
    torch.manual_seed(seed)
    act: Callable[[Any], np.ndarray]
    if behavior == "random":
        act = _random_policy(env, seed)
    elif fam.expert is not None:  # a scripted expert (the mazes' waypoint controller)
        act = fam.expert(env)
    else:
        if policy is None:
            raise ValueError("behavior 'sac' needs --policy medium|expert|PATH")

        act = load_sac_actor(path=resolve_policy(env_id=env_id, policy=policy), env=env)
    started = time.perf_counter()
    buffers: list[Any] = []
    done_steps = 0
    bar = tqdm(total=steps, desc=f"collect {env_id} ({behavior})", unit="step", disable=not progress)
    while done_steps < steps:
        obs, _ = env.reset(seed=seed if not buffers else None)
        observations, actions, rewards, terms, truncs = [obs], [], [], [], []
        finished = False
        while not finished:
            action = np.asarray(act(obs), dtype=env.action_space.dtype)
            obs, reward, terminated, truncated, _ = env.step(action)
            done_steps += 1
            truncated = truncated or done_steps >= steps
            observations.append(obs)
            actions.append(action)
            rewards.append(float(reward))
            terms.append(bool(terminated))
            truncs.append(bool(truncated and not terminated))
            finished = terminated or truncated
            bar.update(1)
        buffers.append(
            EpisodeBuffer(
                id=len(buffers),
                seed=seed if len(buffers) == 0 else None,
                observations=_stack(observations),
                actions=np.stack(actions),
                rewards=rewards,
                terminations=terms,
                truncations=truncs,
                infos={},
            )
        )
        bar.set_postfix(episodes=len(buffers))
    bar.close()
    refs = reference_scores(env_id)
    import warnings

    needed = sum(_nbytes(b.observations) + _nbytes(b.actions) + 8 * len(b.rewards) for b in buffers)
    with (
        warnings.catch_warnings(),
        staged_dataset(dataset_id),
        disk_full_reported(f"the dataset {dataset_id}", datasets_root(), needed=needed),
    ):
        warnings.simplefilter("ignore", UserWarning)
        minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=buffers,
            env=env.spec,
            eval_env=env_id,
            algorithm_name=f"diffplan-{behavior}",
            author="diffplan",
            author_email="diffplan@users.noreply.local",
            code_permalink="https://pypi.org/project/diffplan/",
            description=f"{behavior} behaviour in {env_id}, {steps} steps, seed {seed}, collected by diffplan",
            ref_min_score=refs.random if refs else None,
            ref_max_score=refs.expert if refs else None,
        )
    env.close()
    returns = [sum(b.rewards) for b in buffers]
    return CollectResult(dataset_id, len(buffers), done_steps, float(np.mean(returns)), time.perf_counter() - started)


@contextlib.contextmanager
def staged_dataset(dataset_id: str) -> Iterator[None]:
    """Write a new Minari dataset in a hidden staging folder of the datasets root and rename it into
    place only when it is complete: a collection killed while writing leaves no partial dataset (a
    hidden ``.collect-*`` folder, which Minari does not list and ``diffplan datasets`` reports)."""
    root = datasets_root()
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".collect-"))
    previous = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(staging)
    try:
        yield
        os.environ["MINARI_DATASETS_PATH"] = str(root)
        parts = dataset_id.split("/")
        for depth in range(1, len(parts)):  # namespace folders and their metadata
            namespace = Path(*parts[:depth])
            (root / namespace).mkdir(exist_ok=True)
            meta = staging / namespace / "namespace_metadata.json"
            if meta.is_file() and not (root / namespace / meta.name).exists():
                shutil.copy2(meta, root / namespace / meta.name)
        try:
            os.replace(staging / dataset_id, root / dataset_id)
        except OSError as err:
            raise ValueError(
                f"dataset {dataset_id!r} appeared while collecting; nothing was overwritten ({err})"
            ) from err
    finally:
        if previous is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = previous
        shutil.rmtree(staging, ignore_errors=True)


def _nbytes(array: Any) -> int:
    """Bytes of an array or of a dict of arrays (goal-conditioned observations)."""
    if isinstance(array, dict):
        return sum(_nbytes(a) for a in array.values())
    return int(np.asarray(array).nbytes)


def _stack(observations: list[Any]) -> Any:
    if isinstance(observations[0], dict):
        return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations)
