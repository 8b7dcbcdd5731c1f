"""BC and IQL baselines with d3rlpy (library defaults) on an exported dataset, evaluated in Gymnasium.

d3rlpy 2.8 pins gymnasium 1.0, which gymnasium-robotics (needed by diffplan) does not accept, so
this script runs in its own environment: `make bench-venv` creates `.venv-bench`.
`benchmarks/scores.py` exports datasets to .npz and calls it; by hand:

    .venv-bench/bin/python benchmarks/d3rlpy_baselines.py --data DATA.npz --env-id Hopper-v5 \\
        --algo iql --steps 100000 --episodes 20 --seed 0 --out iql.json

`benchmarks/maze_scores.py` trains with `--episodes 0 --save-policy` and evaluates the TorchScript
policy itself (PointMaze needs gymnasium-robotics, which this environment cannot hold).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    import d3rlpy
    import gymnasium as gym

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help=".npz with observations, actions, rewards, terminals, timeouts")
    parser.add_argument("--env-id", required=True)
    parser.add_argument("--algo", choices=["bc", "iql"], required=True)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-episode-steps", type=int, default=1000)
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--save-policy",
        help="also write the greedy policy as TorchScript (evaluated elsewhere, "
        "e.g. in goal envs that need gymnasium-robotics); --episodes 0 skips the evaluation here",
    )
    args = parser.parse_args()

    d3rlpy.seed(args.seed)
    data = np.load(args.data)
    dataset = d3rlpy.dataset.MDPDataset(
        observations=data["observations"].astype(np.float32),
        actions=data["actions"].astype(np.float32),
        rewards=data["rewards"].astype(np.float32),
        terminals=data["terminals"].astype(np.float32),
        timeouts=data["timeouts"].astype(np.float32),
    )
    config = d3rlpy.algos.BCConfig() if args.algo == "bc" else d3rlpy.algos.IQLConfig()
    algo = config.create(device="cpu:0")
    started = time.perf_counter()
    algo.fit(
        dataset,
        n_steps=args.steps,
        n_steps_per_epoch=args.steps,
        show_progress=True,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
    )
    train_seconds = time.perf_counter() - started
    if args.save_policy:
        algo.save_policy(args.save_policy)
    env = gym.make(args.env_id, max_episode_steps=args.max_episode_steps) if args.episodes else None
    returns, decide = [], 0.0
    decisions = 0
    for i in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + i)
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
    result = {
        "algo": args.algo,
        "env_id": args.env_id,
        "returns": returns,
        "steps": args.steps,
        "train_seconds": train_seconds,
        "seconds_per_decision": decide / max(decisions, 1),
        "d3rlpy": d3rlpy.__version__,
        "config": "library defaults",
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(
        f"{args.algo}: {args.steps} steps in {train_seconds:.0f} s, mean return "
        f"{np.mean(returns) if returns else float('nan'):.1f} over {len(returns)} episodes -> {args.out}"
    )


if __name__ == "__main__":
    main()
