"""BC and IQL baselines with d3rlpy on an exported dataset: a time budget, an evaluation curve, a final evaluation.

d3rlpy 2.8 pins gymnasium 1.0, which gymnasium-robotics (needed by diffplan) does not accept, so
this script runs in its own environment: `make bench-venv` creates `.venv-bench`.
`benchmarks/grid.py` and `benchmarks/scores.py` export datasets to .npz and call it; by hand:

    .venv-bench/bin/python benchmarks/d3rlpy_baselines.py --data DATA.npz --env-id Hopper-v5 \\
        --algo iql --steps 500000 --minutes 20 --episodes 50 --seed 0 --out iql.json

Configurations (``--config reproduction``, the default): IQL exactly as d3rlpy's own D4RL
reproduction script (reproductions/offline/iql.py): actor and critic learning rates 3e-4, batch 256,
expectile 0.7, temperature 3.0, max weight 100, ``ReturnBasedRewardScaler(multiplier=1000)`` and a
cosine schedule of the actor's learning rate over the planned steps. d3rlpy has no BC reproduction
script; BC keeps the library's learning rate (1e-3) and takes the batch (256) and the
``StandardObservationScaler`` of d3rlpy's D4RL MuJoCo scripts (TD3+BC). ``--config defaults`` is
d3rlpy's bare defaults (what diffplan's first baselines used).

Training stops at the first of: ``--steps``; ``--minutes`` of training (evaluation excluded); an
evaluation curve that has not improved on its best for ``--patience`` evaluations (every
``--eval-every`` steps, ``--eval-episodes`` episodes on seeds of their own, not the final ones).
The planned step count for the cosine schedule is ``--steps`` or, with a budget, the steps the
budget buys at the speed measured over the first ``--eval-every`` steps' worth of a calibration run.

`benchmarks/maze_scores.py` trains with `--episodes 0 --save-policy` and evaluates the TorchScript
policy itself (PointMaze needs gymnasium-robotics, which this environment cannot hold).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np

CURVE_SEED = 100_000  # evaluation-curve episodes use seeds of their own, apart from the final evaluation's


def make_algo(d3rlpy: Any, algo: str, config: str, planned_steps: int) -> Any:
    """The d3rlpy algorithm of ``algo`` in the named configuration (see the module docstring)."""
    if config == "defaults":
        return (d3rlpy.algos.BCConfig() if algo == "bc" else d3rlpy.algos.IQLConfig()).create(device="cpu:0")
    if algo == "bc":
        cfg = d3rlpy.algos.BCConfig(
            learning_rate=1e-3, batch_size=256, observation_scaler=d3rlpy.preprocessing.StandardObservationScaler()
        )
    else:
        cfg = d3rlpy.algos.IQLConfig(
            actor_learning_rate=3e-4,
            critic_learning_rate=3e-4,
            actor_optim_factory=d3rlpy.optimizers.AdamFactory(
                lr_scheduler_factory=d3rlpy.optimizers.CosineAnnealingLRFactory(T_max=planned_steps)
            ),
            batch_size=256,
            weight_temp=3.0,
            max_weight=100.0,
            expectile=0.7,
            reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0),
        )
    return cfg.create(device="cpu:0")


def episode_returns(algo: Any, env: Any, *, episodes: int, seed: int) -> tuple[list[float], float]:
    """Returns of ``episodes`` greedy episodes (episode i reset with ``seed + i``) and seconds per decision."""
    returns, decide, decisions = [], 0.0, 0
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            t0 = time.perf_counter()
            action = algo.predict(np.asarray(obs, dtype=np.float32)[None])[0]
            decide += time.perf_counter() - t0
            decisions += 1
            obs, r, term, trunc, _ = env.step(action)
            total += float(r)
            done = term or trunc
        returns.append(total)
    return returns, decide / max(decisions, 1)


def measured_rate(d3rlpy: Any, dataset: Any, algo: str, config: str, steps: int) -> float:
    """Training steps per second of a throwaway instance over ``steps`` steps (after a warm-up of 50)."""
    probe = make_algo(d3rlpy, algo, config, planned_steps=10 * steps)
    probe.fit(dataset, n_steps=50, n_steps_per_epoch=50, show_progress=False,
              logger_adapter=d3rlpy.logging.NoopAdapterFactory())  # fmt: skip
    started = time.perf_counter()
    probe.fit(dataset, n_steps=steps, n_steps_per_epoch=steps, show_progress=False,
              logger_adapter=d3rlpy.logging.NoopAdapterFactory())  # fmt: skip
    return steps / (time.perf_counter() - started)


def main() -> None:
    import d3rlpy
    import gymnasium as gym
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help=".npz with observations, actions, rewards, terminals, timeouts")
    parser.add_argument("--env-id", required=True)
    parser.add_argument("--algo", choices=["bc", "iql"], required=True)
    parser.add_argument("--config", choices=["reproduction", "defaults"], default="reproduction")
    parser.add_argument("--steps", type=int, default=500_000, help="most training steps")
    parser.add_argument("--minutes", type=float, default=0.0, help="wall-clock training budget (0: none)")
    parser.add_argument("--eval-every", type=int, default=5_000, help="steps between curve evaluations (0: none)")
    parser.add_argument("--eval-episodes", type=int, default=5, help="episodes per curve evaluation")
    parser.add_argument("--patience", type=int, default=0, help="stop after this many evaluations without a new best")
    parser.add_argument(
        "--plateau-after",
        type=float,
        default=0.5,
        help="the patience stop applies only after this fraction of the planned steps (an early dip is no plateau)",
    )
    parser.add_argument("--episodes", type=int, default=20, help="final evaluation episodes")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--eval-seed", type=int, default=0, help="final evaluation episode i is reset with seed + i")
    parser.add_argument("--max-episode-steps", type=int, default=1000)
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--save-policy",
        help="also write the greedy policy as TorchScript (evaluated elsewhere, "
        "e.g. in goal envs that need gymnasium-robotics); --episodes 0 skips the evaluation here",
    )
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    d3rlpy.seed(args.seed)
    data = np.load(args.data)
    dataset = d3rlpy.dataset.MDPDataset(
        observations=data["observations"].astype(np.float32),
        actions=data["actions"].astype(np.float32),
        rewards=data["rewards"].astype(np.float32),
        terminals=data["terminals"].astype(np.float32),
        timeouts=data["timeouts"].astype(np.float32),
    )
    budget = args.minutes * 60.0
    planned, rate = args.steps, None
    if budget > 0:
        rate = measured_rate(d3rlpy, dataset, args.algo, args.config, steps=min(max(args.eval_every, 200), 2_000))
        planned = max(1, min(args.steps, int(budget * rate)))
        d3rlpy.seed(args.seed)  # the calibration does not shift the run's random numbers
    epoch = min(args.eval_every, planned) if args.eval_every > 0 else planned
    planned -= planned % epoch  # d3rlpy trains whole epochs
    algo = make_algo(d3rlpy, args.algo, args.config, planned)
    env = gym.make(args.env_id, max_episode_steps=args.max_episode_steps)
    curve: list[list[float]] = []
    best, since_best, stopped, done, train_seconds = -np.inf, 0, "steps", 0, 0.0
    started = time.perf_counter()
    fitter = algo.fitter(dataset, n_steps=planned, n_steps_per_epoch=epoch, show_progress=True,
                         logger_adapter=d3rlpy.logging.NoopAdapterFactory())  # fmt: skip
    for _epoch, _metrics in fitter:
        train_seconds += time.perf_counter() - started
        done = min(done + epoch, planned)
        if args.eval_every > 0 and args.eval_episodes > 0:
            returns, _ = episode_returns(algo, env, episodes=args.eval_episodes, seed=CURVE_SEED)
            curve.append([done, round(train_seconds, 1), float(np.mean(returns))])
            since_best = 0 if curve[-1][2] > best else since_best + 1
            best = max(best, curve[-1][2])
            print(f"{args.algo} step {done}: {train_seconds / 60:.1f} min, curve return {curve[-1][2]:.1f}", flush=True)
        if budget > 0 and train_seconds >= budget:
            stopped = "budget"
            break
        if args.patience > 0 and since_best >= args.patience and done >= args.plateau_after * planned:
            stopped = "plateau"
            break
        started = time.perf_counter()
    if args.save_policy:
        algo.save_policy(args.save_policy)
    returns, per_decision = episode_returns(algo, env, episodes=args.episodes, seed=args.eval_seed)
    result = {
        "algo": args.algo,
        "env_id": args.env_id,
        "config": args.config,
        "returns": returns,
        "steps": done,
        "planned_steps": planned,
        "calibrated_steps_per_second": rate,
        "train_seconds": train_seconds,
        "stopped": stopped,
        "plateau_after": args.plateau_after,
        "curve": curve,
        "seed": args.seed,
        "eval_seed": args.eval_seed,
        "seconds_per_decision": per_decision,
        "d3rlpy": d3rlpy.__version__,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(
        f"{args.algo}: {done} steps in {train_seconds:.0f} s ({stopped}), mean return "
        f"{np.mean(returns) if returns else float('nan'):.1f} over {len(returns)} episodes -> {args.out}"
    )


if __name__ == "__main__":
    main()
