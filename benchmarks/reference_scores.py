"""Reference returns for normalized scores: random policy (0) and expert (100), per env.

Locomotion: uniform random actions and the shipped SAC "expert" policy (stochastic actions, as
in collection). Mazes: uniform random actions and D4RL's waypoint controller, on the default
PointMaze-v3 task (a random goal each episode, continuing, 300 / 600 / 800 steps).

    python benchmarks/reference_scores.py [--episodes 100] [--envs Hopper-v5 ...]

Writes src/diffplan/envs/reference_scores.json (read by diffplan) and results/reference_scores.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT  # noqa: E402

LOCOMOTION = ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5"]
MAZES = ["PointMaze_UMaze-v3", "PointMaze_Medium-v3", "PointMaze_Large-v3"]


def main() -> None:
    import torch

    from diffplan.collect.behavior import evaluate_policy_returns
    from diffplan.collect.policies import load_sac_actor, resolve_policy
    from diffplan.envs.maze import WaypointController

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--envs", nargs="*", default=LOCOMOTION + MAZES)
    args = parser.parse_args()
    torch.set_num_threads(1)
    package_file = ROOT / "src" / "diffplan" / "envs" / "reference_scores.json"
    table = json.loads(package_file.read_text()) if package_file.exists() else {}
    for env_id in args.envs:

        def random_policy(env):
            env.action_space.seed(args.seed)
            return lambda obs: env.action_space.sample()

        if env_id in MAZES:
            expert_policy, expert_name = WaypointController, "waypoint controller (D4RL maze2d)"
        else:
            try:
                path = resolve_policy(env_id=env_id, policy="expert")
            except FileNotFoundError:
                print(f"{env_id}: no shipped expert policy, skipped")
                continue
            expert_policy, expert_name = (
                (lambda env, p=path: load_sac_actor(path=p, env=env)),
                f"SAC expert ({path.name})",
            )
        started = time.perf_counter()
        rand = evaluate_policy_returns(policy=random_policy, env_id=env_id, episodes=args.episodes, seed=args.seed)
        expert = evaluate_policy_returns(policy=expert_policy, env_id=env_id, episodes=args.episodes, seed=args.seed)
        table[env_id] = {
            "random": float(np.mean(rand)),
            "random_stderr": float(np.std(rand, ddof=1) / np.sqrt(len(rand))),
            "expert": float(np.mean(expert)),
            "expert_stderr": float(np.std(expert, ddof=1) / np.sqrt(len(expert))),
            "episodes": args.episodes,
            "seed": args.seed,
            "expert_policy": expert_name,
            "date": date.today().isoformat(),
            "seconds": time.perf_counter() - started,
        }
        row = table[env_id]
        print(
            f"{env_id:<22} random {row['random']:9.2f} ± {row['random_stderr']:.2f}   "
            f"expert {row['expert']:9.2f} ± {row['expert_stderr']:.2f}   ({row['seconds']:.0f} s)"
        )
    for path in (package_file, ROOT / "results" / "reference_scores.json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(table, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
