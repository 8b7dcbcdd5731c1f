"""PointMaze goal reaching: success rate and normalized score per maze, execution mode and task.

For one trained maze run: diffplan in `track` mode (plan once, PD-follow the planned states) and
in `replan` mode (replan every k steps, execute the planner's own actions: the plan's sampled
actions, row `replan`, and/or the run's learned inverse dynamics towards the next planned state,
row `replan-inverse`; `--walls` adds `+walls`: plans through the maze's walls ranked last), each on the
single-task (fixed goal cell) and multi-task (random goal per episode) protocol; optionally d3rlpy
IQL (library defaults, trained in `.venv-bench`, the goal concatenated to the observation) on the
same data, episodes and seeds. Merges into results/scores_maze.json:

    {dataset_id: {"<method>/<mode>/<task>": {success_rate, mean, stderr, n, seconds_per_plan, ...}}}

    python benchmarks/maze_scores.py --run runs/pointmaze-umaze --episodes 50 [--actions plan inverse]
        [--iql-steps 30000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT  # noqa: E402


def export_goal_npz(dataset_id: str, path: Path) -> None:
    """D4RL-style arrays with observations ``[x, y, vx, vy, goal_x, goal_y]`` (goal concatenated)."""
    import minari

    obs, act, rew, term, tout = [], [], [], [], []
    for ep in minari.load_dataset(dataset_id).iterate_episodes():
        n = len(ep.rewards)
        obs.append(np.concatenate([ep.observations["observation"][:n], ep.observations["desired_goal"][:n]], axis=1))
        act.append(ep.actions)
        rew.append(ep.rewards)
        last = np.arange(n) == n - 1
        term.append(last & bool(ep.terminations[-1]))
        tout.append(last & (not bool(ep.terminations[-1])))
    np.savez(
        path,
        observations=np.concatenate(obs),
        actions=np.concatenate(act),
        rewards=np.concatenate(rew),
        terminals=np.concatenate(term),
        timeouts=np.concatenate(tout),
    )


def save(out_path: Path, dataset_id: str, key: str, entry: dict) -> None:
    """Merge one row into the results file right away (other runs may have written meanwhile)."""
    from diffplan.io import update_json

    update_json(out_path, [dataset_id, key], entry)


def row(res: object) -> dict:
    return {
        "success_rate": res.success_rate,
        "mean": res.normalized_score,
        "stderr": res.stderr,
        "n": res.episodes,
        "mean_return": res.mean_return,
        "seconds_per_plan": res.seconds_per_plan,
        "seconds_per_decision": res.seconds_per_decision,
        "planner": res.planner,
    }


def main() -> None:
    import torch

    from diffplan.evaluation import evaluate
    from diffplan.planning import ValueGuidedRLPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="maze run folder or shipped name")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-envs", type=int, default=10)
    parser.add_argument("--modes", nargs="*", default=["track", "replan"])
    parser.add_argument("--tasks", nargs="*", default=["single", "multi"])
    parser.add_argument(
        "--actions",
        nargs="*",
        default=["inverse"],
        choices=["plan", "inverse"],
        help="replan mode: which actions to execute (one row each)",
    )
    parser.add_argument(
        "--walls", action="store_true", help="rank plans through the maze's walls last (rows named `<mode>+walls`)"
    )
    parser.add_argument("--label", default="", help="suffix of the row names (e.g. a planner variant)")
    parser.add_argument("--replan-every", type=int, help="replan mode: steps between plans (default: the run's stride)")
    parser.add_argument("--plan-kwargs", default="{}", help="JSON keyword arguments of pipe.plan")
    parser.add_argument("--iql-steps", type=int, default=0, help="also train and evaluate d3rlpy IQL (0: skip)")
    parser.add_argument("--bench-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--plots", help="write the maze pictures of the first episodes here")
    args = parser.parse_args()

    pipe = ValueGuidedRLPipeline.from_pretrained(args.run)
    dataset_id = pipe.info.dataset_id
    out_path = ROOT / "results" / "scores_maze.json"
    plan = pipe.plan_config.override(**json.loads(args.plan_kwargs))
    variants = [(mode, actions) for mode in args.modes for actions in (args.actions if mode == "replan" else ["plan"])]
    for mode, actions in variants:
        name = (f"{mode}-inverse" if actions == "inverse" else mode) + ("+walls" if args.walls else "") + args.label
        for task in args.tasks:
            plots = Path(args.plots) / f"{name}_{task}" if args.plots else None
            res = evaluate(
                pipe=pipe,
                episodes=args.episodes,
                seed=args.seed,
                num_envs=args.num_envs,
                mode=mode,
                replan_every=args.replan_every,
                task=task,
                plan=plan,
                plots_dir=plots,
                actions=actions,
                walls=args.walls,
            )
            save(out_path, dataset_id, f"diffplan/{name}/{task}", row(res) | {"run": str(args.run)})
            print(
                f"diffplan {name:<14} {task:<6} success {100 * res.success_rate:5.1f} %  "
                f"score {res.normalized_score:6.1f} ± {res.stderr:.1f}  {res.seconds_per_plan:.3f} s/plan"
            )
            if plots is not None:  # keep the pictures of the first few episodes only
                for extra in sorted(plots.glob("episode_*.png"))[4:]:
                    extra.unlink()
    if args.iql_steps:
        with tempfile.TemporaryDirectory() as tmp:
            npz, policy_file = Path(tmp) / "data.npz", Path(tmp) / "iql.pt"
            export_goal_npz(dataset_id, npz)
            subprocess.run(
                [
                    args.bench_python,
                    str(ROOT / "benchmarks" / "d3rlpy_baselines.py"),
                    "--data",
                    str(npz),
                    "--env-id",
                    pipe.info.env_id,
                    "--algo",
                    "iql",
                    "--steps",
                    str(args.iql_steps),
                    "--episodes",
                    "0",
                    "--seed",
                    str(args.seed),
                    "--out",
                    str(Path(tmp) / "iql.json"),
                    "--save-policy",
                    str(policy_file),
                ],
                check=True,
            )
            net = torch.jit.load(str(policy_file))

            def iql(states: np.ndarray, goals: np.ndarray | None) -> np.ndarray:
                x = np.concatenate([states, goals], axis=1).astype(np.float32)
                with torch.no_grad():
                    return net(torch.as_tensor(x)).numpy()

            for task in args.tasks:
                res = evaluate(
                    policy=iql,
                    env_id=pipe.info.env_id,
                    episodes=args.episodes,
                    seed=args.seed,
                    num_envs=args.num_envs,
                    task=task,
                )
                save(
                    out_path,
                    dataset_id,
                    f"iql/policy/{task}",
                    row(res) | {"train_steps": args.iql_steps, "config": "d3rlpy defaults"},
                )
                print(
                    f"iql      policy {task:<6} success {100 * res.success_rate:5.1f} %  "
                    f"score {res.normalized_score:6.1f} ± {res.stderr:.1f}"
                )
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
