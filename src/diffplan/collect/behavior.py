"""Behaviour policies that generate offline data.

SAC from stable-baselines3 (optional extra ``collect``) is trained once per environment. Every
``snapshot_every`` steps the actor is evaluated and its weights saved as safetensors next to a
JSON of evaluated returns, so that "medium" (about a third of the final return, as D4RL) and
"expert" (the final policy) can be picked afterwards and shipped without pickles. Training is
resumable: the SB3 model and replay buffer are saved in ``OUT/state`` at every snapshot.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from diffplan.collect.policies import load_sac_actor, policies_dir, require_sb3
from diffplan.io import atomic_path, atomic_write_json, read_json

SNAPSHOT_INDEX = "snapshots.json"
REPLAY_BUFFER = Path("state") / "replay.pkl"  # a behaviour run's resumable buffer, inside its folder


@dataclass(frozen=True)
class BehaviorTrainConfig:
    """Settings of one SAC behaviour-policy training run.

    Attributes:
        env_id: Gymnasium id, e.g. ``"Hopper-v5"``.
        total_steps: environment steps to train for.
        seed: seed of the environment, the network initialisation and the evaluation episodes.
        snapshot_every: steps between evaluated, saved snapshots.
        eval_episodes: deterministic episodes per snapshot evaluation.
        learning_starts: random-action steps before SAC updates begin (RL Zoo uses 10,000 for
            the MuJoCo tasks; SB3's default is 100).
    """

    env_id: str
    total_steps: int
    seed: int = 0
    snapshot_every: int = 10_000
    eval_episodes: int = 5
    learning_starts: int = 100


def evaluate_policy_returns(*, policy: Any, env_id: str, episodes: int, seed: int) -> list[float]:
    """Undiscounted returns of ``episodes`` episodes of a policy, played by :func:`diffplan.rollout.rollout`.

    Args:
        policy: ``policy(env)`` returns the callable ``obs -> action`` that acts in ``env`` (an env of
            ``env_id`` for its spaces; goal envs get observation dicts).
        env_id: Gymnasium id.
        episodes: number of episodes.
        seed: the i-th episode is reset with ``seed + i``.

    Returns:
        One return per episode.
    """
    from diffplan.envs.specs import make_env
    from diffplan.rollout import CallablePolicy, rollout

    env = make_env(env_id)
    act = policy(env)

    def actions(states: np.ndarray, goals: np.ndarray | None) -> np.ndarray:
        if goals is None:
            return np.stack([act(s) for s in states])
        return np.stack([act({"observation": s, "desired_goal": g}) for s, g in zip(states, goals)])

    result = rollout(env_id=env_id, policy=CallablePolicy(actions, 1), episodes=episodes, seed=seed, progress=False)
    env.close()
    return [float(r) for r in result.returns]


def train_sac(*, config: BehaviorTrainConfig, out_dir: str | Path, until_return: float | None = None) -> Path:
    """Train (or resume training) a SAC behaviour policy with snapshots.

    Args:
        config: the run's settings; must match those stored in ``out_dir`` when resuming.
        out_dir: folder for ``snapshots/``, ``snapshots.json`` and the resumable ``state/``.
        until_return: stop at the first snapshot whose evaluated mean return reaches this (D4RL's
            medium-replay: "until the policy reaches the medium level"); ``None`` trains all steps.

    Returns:
        The path of ``snapshots.json``.
    """
    sb3 = require_sb3()
    import gymnasium as gym
    import torch
    from safetensors.torch import save_file
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm.auto import tqdm

    out = Path(out_dir)
    (out / "snapshots").mkdir(parents=True, exist_ok=True)
    index_path = out / SNAPSHOT_INDEX
    index: dict[str, Any] = {"config": asdict(config), "snapshots": []}
    if index_path.exists():
        index = read_json(index_path)
        stored = {"learning_starts": 100} | {k: v for k, v in index["config"].items() if k != "total_steps"}
        wanted = {k: v for k, v in asdict(config).items() if k != "total_steps"}
        if stored != wanted:
            raise ValueError(f"{out} holds a run with config {stored}, not {wanted}; use another --out folder")
        index["config"] = asdict(config)
    state_model = out / "state" / "sac.zip"
    state_buffer = out / REPLAY_BUFFER
    env = gym.make(config.env_id)
    if state_model.exists() and state_buffer.exists():
        model = sb3.SAC.load(state_model, env=env)  # loading resets the env: a new episode begins
        model.load_replay_buffer(state_buffer)
        buf = model.replay_buffer
        if buf is not None and (buf.full or buf.pos > 0):  # so the stored one ends there, cut by the time limit
            last = (buf.pos - 1) % buf.buffer_size
            buf.dones[last], buf.timeouts[last] = 1.0, 1.0
    else:
        model = sb3.SAC("MlpPolicy", env, seed=config.seed, learning_starts=config.learning_starts, verbose=0)
    done_steps = int(model.num_timesteps)

    class _Snapshot(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.bar = tqdm(total=config.total_steps, initial=done_steps, desc=f"SAC {config.env_id}", unit="step")
            self.reached = False

        def _on_step(self) -> bool:
            self.bar.update(1)
            return not self.reached

        def _on_rollout_end(self) -> None:
            # SB3 stores a step's transition after on_step, before on_rollout_end: the buffer saved here
            # holds every step so far
            step = self.model.num_timesteps
            if step % config.snapshot_every == 0 or step == config.total_steps:
                mean_return = self._snapshot(step)
                self.reached = until_return is not None and mean_return >= until_return

        def _snapshot(self, step: int) -> float:
            actor = model.policy.actor  # the SAC being trained (self.model is the same object)

            def act(obs: np.ndarray) -> np.ndarray:
                return model.predict(obs, deterministic=True)[0]

            returns = evaluate_policy_returns(
                policy=lambda env: act, env_id=config.env_id, episodes=config.eval_episodes, seed=10_000 + step
            )
            name = f"step_{step:08d}.safetensors"
            tensors = {k: v.detach().cpu().contiguous() for k, v in actor.state_dict().items()}
            with atomic_path(out / "snapshots" / name) as tmp:
                save_file(tensors, str(tmp), metadata={"env_id": config.env_id, "step": str(step)})
            index["snapshots"] = [s for s in index["snapshots"] if s["step"] != step] + [
                {
                    "step": step,
                    "file": f"snapshots/{name}",
                    "mean_return": float(np.mean(returns)),
                    "std_return": float(np.std(returns)),
                    "episodes": len(returns),
                }
            ]
            with atomic_path(state_model) as tmp:
                model.save(tmp)
            with atomic_path(state_buffer) as tmp:
                model.save_replay_buffer(tmp)
            atomic_write_json(index_path, index)
            self.bar.set_postfix(step=step, ret=f"{np.mean(returns):.0f}")
            return float(np.mean(returns))

    torch.set_num_threads(1)
    remaining = config.total_steps - done_steps
    if until_return is not None and any(s["mean_return"] >= until_return for s in index["snapshots"]):
        remaining = 0  # a resumed run that already reached the level
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=_Snapshot(), reset_num_timesteps=False)
    return index_path


def select_snapshots(
    *, index_path: str | Path, medium_fraction: float = 1 / 3, expert_window: float = 0.25
) -> dict[str, Any]:
    """Pick the "medium" and "expert" snapshots of a behaviour run.

    Expert is the best-evaluated snapshot of the last ``expert_window`` of training (SAC's
    returns swing between snapshots, so the very last one can be a dip); medium is the snapshot
    whose return is closest to ``medium_fraction`` of the expert's (D4RL's recipe), the earliest
    on ties.

    Args:
        index_path: ``snapshots.json`` written by :func:`train_sac`.
        medium_fraction: the medium policy's target fraction of the expert return.
        expert_window: fraction of the run, counted from its end, searched for the expert.

    Returns:
        ``{"medium": snapshot, "expert": snapshot}`` entries of the index.
    """
    snaps = sorted(read_json(index_path)["snapshots"], key=lambda s: s["step"])
    if not snaps:
        raise ValueError(f"{index_path} lists no snapshots yet")
    last_step = snaps[-1]["step"]
    late = [s for s in snaps if s["step"] >= (1 - expert_window) * last_step]
    expert = max(late, key=lambda s: (s["mean_return"], s["step"]))
    target = medium_fraction * expert["mean_return"]
    medium = min(snaps, key=lambda s: (abs(s["mean_return"] - target), s["step"]))
    return {"medium": medium, "expert": expert}


def ship_policies(
    *,
    run_dir: str | Path,
    dest: str | Path | None = None,
    episodes: int = 20,
    seed: int = 0,
    medium_fraction: float = 1 / 3,
) -> dict[str, Any]:
    """Pick medium and expert snapshots of a behaviour run, re-evaluate them, and store them.

    Writes ``DEST/<env_id>/{medium,expert}.safetensors`` (with ``env_id`` in the file metadata)
    and records their measured returns in ``DEST/policies.json``.

    Args:
        run_dir: folder written by :func:`train_sac`.
        dest: destination (default: the package's ``policies`` folder).
        episodes: evaluation episodes per policy (stochastic actions, as collection uses them).
        seed: seed of the evaluation episodes.
        medium_fraction: medium's target fraction of the expert return.

    Returns:
        The ``policies.json`` entry of this environment.
    """
    from safetensors.torch import load_file, save_file

    run_dir = Path(run_dir)
    index = read_json(run_dir / SNAPSHOT_INDEX)
    env_id = index["config"]["env_id"]
    chosen = select_snapshots(index_path=run_dir / SNAPSHOT_INDEX, medium_fraction=medium_fraction)
    dest = Path(dest) if dest is not None else policies_dir()
    (dest / env_id).mkdir(parents=True, exist_ok=True)
    entry: dict[str, Any] = {}
    for name, snap in chosen.items():
        target = dest / env_id / f"{name}.safetensors"
        with atomic_path(target) as tmp:
            save_file(
                load_file(str(run_dir / snap["file"])), str(tmp), metadata={"env_id": env_id, "step": str(snap["step"])}
            )
        returns = evaluate_policy_returns(
            policy=lambda env, p=target: load_sac_actor(path=p, env=env), env_id=env_id, episodes=episodes, seed=seed
        )
        entry[name] = {
            "file": f"{env_id}/{name}.safetensors",
            "train_step": snap["step"],
            "mean_return": float(np.mean(returns)),
            "std_return": float(np.std(returns)),
            "episodes": episodes,
            "seed": seed,
            "deterministic": False,
        }
    registry_path = dest / "policies.json"
    registry = read_json(registry_path) if registry_path.exists() else {}
    registry[env_id] = entry
    atomic_write_json(registry_path, registry)
    return entry


def _shipped_medium(env_id: str) -> dict[str, Any]:
    """The ``policies.json`` entry of the shipped medium policy of ``env_id`` (empty if none)."""
    registry = policies_dir() / "policies.json"
    return read_json(registry).get(env_id, {}).get("medium", {}) if registry.is_file() else {}


def _shipped_medium_step(env_id: str) -> int | None:
    """The training step of the shipped medium policy of ``env_id`` (``policies.json``), if any."""
    return _shipped_medium(env_id).get("train_step")


def make_medium_replay(
    *,
    env_id: str,
    run_dir: str | Path,
    dataset_id: str,
    seed: int = 0,
    learning_starts: int = 100,
    snapshot_every: int = 10_000,
    max_steps: int | None = None,
) -> int:
    """D4RL's medium-replay made from nothing: SAC is trained (resumably, in ``run_dir``) until a snapshot
    reaches the shipped medium policy's mean return, and its replay buffer up to that snapshot is exported.

    The shipped medium policy's level is its ``policies.json`` return (the return of the medium dataset's
    sampled actions). SAC is not bit-reproducible, so a run made again reaches that level at another step
    than the shipped policy's run did: the dataset differs from one made earlier (RESULTS.md, "Datasets").

    Args:
        env_id: Gymnasium id with a shipped medium policy.
        run_dir: the behaviour run's folder (created, or resumed).
        dataset_id: new Minari id.
        seed: SAC seed.
        learning_starts: random-action steps before SAC updates begin (as the shipped policy's run).
        snapshot_every: steps between evaluated snapshots: the buffer ends at one of them.
        max_steps: steps after which SAC gives up (default: three times the shipped policy's step).

    Returns:
        The number of transitions written.

    Raises:
        ValueError: no shipped medium policy for ``env_id``, or SAC did not reach its level in ``max_steps``.
    """
    shipped = _shipped_medium(env_id)
    if "mean_return" not in shipped:
        raise ValueError(
            f"expected a shipped medium policy of {env_id} in {policies_dir() / 'policies.json'}, found none"
        )
    level = float(shipped["mean_return"])
    max_steps = max_steps if max_steps is not None else 3 * int(shipped["train_step"])
    cfg = BehaviorTrainConfig(
        env_id=env_id, total_steps=max_steps, seed=seed, snapshot_every=snapshot_every, learning_starts=learning_starts
    )
    index = read_json(train_sac(config=cfg, out_dir=run_dir, until_return=level))
    snaps = sorted(index["snapshots"], key=lambda s: s["step"])
    reached = [s for s in snaps if s["mean_return"] >= level]
    if not reached:
        best = max(snaps, key=lambda s: s["mean_return"]) if snaps else {"mean_return": float("nan"), "step": 0}
        raise ValueError(
            f"SAC on {env_id} did not reach the medium level {level:.1f} in {max_steps} steps (best "
            f"{best['mean_return']:.1f} at step {best['step']}); pass a larger max_steps: {run_dir} resumes"
        )
    return export_replay(run_dir=run_dir, dataset_id=dataset_id, until_step=int(reached[0]["step"]))


def export_replay(*, run_dir: str | Path, dataset_id: str, until_step: int | None = None) -> int:
    """Write the replay buffer of a behaviour run up to a step as a Minari dataset (D4RL's medium-replay).

    Args:
        run_dir: folder written by :func:`train_sac` (its ``state/replay.pkl``).
        dataset_id: new Minari id.
        until_step: last environment step to include (default: the "medium" snapshot's step; a
            warning names the shipped medium policy's step when that differs).

    Returns:
        The number of transitions written.

    Raises:
        FileNotFoundError: the run holds no replay buffer.
        ValueError: the dataset id exists, or the buffer holds fewer steps than asked for.
    """
    import warnings

    import minari
    from minari.data_collector import EpisodeBuffer
    from stable_baselines3.common.save_util import load_from_pkl

    from diffplan.collect.collect import dataset_exists, staged_dataset
    from diffplan.envs.specs import reference_scores

    run_dir = Path(run_dir)
    path = run_dir / REPLAY_BUFFER
    if not path.is_file():
        raise FileNotFoundError(f"expected the replay buffer of a behaviour run at {path}, found nothing")
    if dataset_exists(dataset_id):
        raise ValueError(f"dataset {dataset_id!r} already exists; choose a new id (nothing was overwritten)")
    env_id = read_json(run_dir / SNAPSHOT_INDEX)["config"]["env_id"]
    if until_step is None:
        until_step = int(select_snapshots(index_path=run_dir / SNAPSHOT_INDEX)["medium"]["step"])
        shipped = _shipped_medium_step(env_id)
        if shipped is not None and shipped != until_step:
            # the rule picks among the run's snapshots so far: a run stopped at another step picks another one
            warnings.warn(
                f"this run's medium snapshot is step {until_step}, the shipped {env_id} medium policy is step "
                f"{shipped}: pass --until-step {shipped} for the replay of the shipped policy's run",
                stacklevel=2,
            )
    buf = load_from_pkl(path)
    stored = buf.buffer_size if buf.full else buf.pos
    if buf.full or stored < until_step:
        raise ValueError(f"{path} holds {stored} ordered transitions, fewer than the {until_step} asked for")
    obs, nxt = buf.observations[:until_step, 0], buf.next_observations[:until_step, 0]
    acts, rews = buf.actions[:until_step, 0], buf.rewards[:until_step, 0]
    dones, timeouts = buf.dones[:until_step, 0].astype(bool), buf.timeouts[:until_step, 0].astype(bool)
    ends = np.flatnonzero(dones)
    if ends.size == 0 or ends[-1] != until_step - 1:
        ends = np.append(ends, until_step - 1)
    episodes: list[Any] = []
    start = 0
    for end in ends:
        sl = slice(start, end + 1)
        terminated = bool(dones[end] and not timeouts[end])
        n = end + 1 - start
        episodes.append(
            EpisodeBuffer(
                id=len(episodes),
                observations=np.concatenate([obs[sl], nxt[end : end + 1]]),
                actions=acts[sl],
                rewards=rews[sl].tolist(),
                terminations=[False] * (n - 1) + [terminated],
                truncations=[False] * (n - 1) + [not terminated],
                infos={},
            )
        )
        start = end + 1
    refs = reference_scores(env_id)
    with warnings.catch_warnings(), staged_dataset(dataset_id):
        warnings.simplefilter("ignore", UserWarning)
        minari.create_dataset_from_buffers(
            dataset_id=dataset_id,
            buffer=episodes,
            env=env_id,
            eval_env=env_id,
            algorithm_name="diffplan-sac-replay",
            author="diffplan",
            author_email="diffplan@users.noreply.local",
            code_permalink="https://pypi.org/project/diffplan/",
            description=f"SAC replay buffer of {env_id} up to step {until_step} (D4RL medium-replay recipe)",
            ref_min_score=refs.random if refs else None,
            ref_max_score=refs.expert if refs else None,
        )
    return until_step
