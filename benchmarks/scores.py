"""Normalized scores on the same data and protocol: behaviour (the dataset), BC, IQL, diffplan.

For each dataset: the dataset's own mean normalized return ("behavior"); BC and IQL trained with
d3rlpy's library defaults (run in `.venv-bench`, see `make bench-venv`) on the same episodes; and
a trained diffplan run. Every method is evaluated on the same episode seeds (seed + i, 1000 steps
max) with the same reference scores.

    python benchmarks/scores.py --dataset diffplan/hopper/medium-v0 --run runs/hopper-medium \\
        [--episodes 20] [--bc-steps 100000] [--iql-steps 100000] [--plan-kwargs '{"batch_size": 16}']

Merges {dataset_id: {method: {mean, stderr, n}}} into results/scores_<family>.json and prints
a table.
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
from benchmarks.grid import export_npz  # noqa: E402


def summary(normalized: list[float]) -> dict:
    x = np.asarray(normalized, dtype=float)
    return {
        "mean": float(x.mean()),
        "stderr": float(x.std(ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0,
        "n": int(len(x)),
    }


def main() -> None:
    from diffplan.data.episodes import load_minari
    from diffplan.envs.specs import reference_scores
    from diffplan.evaluation import evaluate
    from diffplan.io import update_json
    from diffplan.planning import ValueGuidedRLPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--run", help="trained diffplan run folder or shipped name")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-envs", type=int, default=10)
    parser.add_argument("--bc-steps", type=int, default=100_000)
    parser.add_argument("--iql-steps", type=int, default=100_000)
    parser.add_argument("--baselines", nargs="*", default=["bc", "iql"])
    parser.add_argument("--bench-python", default=str(ROOT / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--plan-kwargs", default="{}", help="JSON keyword arguments of pipe.plan")
    parser.add_argument("--method", default="diffplan", help="row name of the run's score (e.g. diffplan-paper)")
    args = parser.parse_args()

    eps = load_minari(args.dataset)
    refs = reference_scores(eps.env_id, ref_min=eps.ref_min_score, ref_max=eps.ref_max_score)
    if refs is None:
        sys.exit(f"no reference scores for {eps.env_id}")
    family = eps.env_id.split("-")[0].lower()
    out_path = ROOT / "results" / f"scores_{family}.json"
    row: dict = {}
    row["behavior"] = summary([refs.normalize(r) for r in eps.returns()])
    with tempfile.TemporaryDirectory() as tmp:
        npz = Path(tmp) / "data.npz"
        export_npz(args.dataset, npz)
        for algo in args.baselines:
            if not Path(args.bench_python).exists():
                print(f"{algo}: {args.bench_python} missing (make bench-venv), skipped")
                continue
            out = Path(tmp) / f"{algo}.json"
            subprocess.run(
                [
                    args.bench_python,
                    str(ROOT / "benchmarks" / "d3rlpy_baselines.py"),
                    "--data",
                    str(npz),
                    "--env-id",
                    eps.env_id,
                    "--algo",
                    algo,
                    "--steps",
                    str(getattr(args, f"{algo}_steps")),
                    "--episodes",
                    str(args.episodes),
                    "--seed",
                    str(args.seed),
                    "--eval-seed",  # the same episodes as diffplan's (seed + i)
                    str(args.seed),
                    "--config",  # this script's table is the bare-defaults one; benchmarks/grid.py runs the tuned ones
                    "defaults",
                    "--eval-every",
                    "0",
                    "--out",
                    str(out),
                ],
                check=True,
            )
            res = json.loads(out.read_text())
            row[algo] = summary([refs.normalize(r) for r in res["returns"]]) | {
                "seconds_per_decision": res["seconds_per_decision"],
                "train_steps": res["steps"],
            }
    if args.run:
        pipe = ValueGuidedRLPipeline.from_pretrained(args.run)
        res = evaluate(
            pipe=pipe,
            episodes=args.episodes,
            seed=args.seed,
            num_envs=args.num_envs,
            max_episode_steps=1000,
            plan=pipe.plan_config.override(**json.loads(args.plan_kwargs)),
        )
        row[args.method] = summary([refs.normalize(r) for r in res.returns]) | {
            "seconds_per_decision": res.seconds_per_decision,
            "run": str(args.run),
            "planner": res.planner,
        }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    row = update_json(out_path, [args.dataset], row, merge=True)[args.dataset]
    print(f"\n{args.dataset} ({eps.env_id}, references {refs.random:.1f} / {refs.expert:.1f}, {refs.source})")
    for method, r in row.items():
        print(f"  {method:<10} {r['mean']:7.1f} ± {r['stderr']:.1f}  (n={r['n']})")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
