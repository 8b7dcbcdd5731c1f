"""Generate diffplan's D4RL-style datasets and measure them: generation time and return statistics.

Locomotion (needs the shipped SAC policies): random, medium, expert, medium-replay (the SAC
replay buffer up to the medium snapshot of the behaviour run folder; where no folder holds a buffer,
SAC is trained again as the shipped policy's run was, until its return reaches the shipped medium
policy's, which takes 40,000-160,000 steps: minutes to an hour of one core) and medium-expert (the
union of medium and expert). Mazes: the waypoint controller with a new goal each time one is
reached.

    python benchmarks/make_datasets.py Hopper-v5 --behavior-run behavior_runs/hopper-v5 [--steps 200000]
    python benchmarks/make_datasets.py PointMaze_UMaze-v3 --steps 200000

Datasets go to MINARI_DATASETS_PATH (default ~/.minari/datasets) as diffplan/<env>/<kind>-v0;
figures are merged into results/datasets.json (or --out) and printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, machine  # noqa: E402

# learning_starts of the shipped policies' SAC runs (RESULTS.md, "Behaviour policies"): RL Zoo's 10,000
# for Walker2d and HalfCheetah, SB3's default for Hopper
BEHAVIOR_LEARNING_STARTS = {"Hopper-v5": 100, "Walker2d-v5": 10_000, "HalfCheetah-v5": 10_000}


def stats(dataset_id: str, seconds: float) -> dict:
    from diffplan.data.episodes import load_minari
    from diffplan.envs.specs import reference_scores

    eps = load_minari(dataset_id)
    ret = eps.returns()
    refs = reference_scores(eps.env_id, ref_min=eps.ref_min_score, ref_max=eps.ref_max_score)
    norm = np.array([refs.normalize(r) for r in ret]) if refs else None
    return {
        "env_id": eps.env_id,
        "episodes": len(eps.episodes),
        "steps": eps.num_steps,
        "mean_return": float(ret.mean()),
        "std_return": float(ret.std()),
        "normalized_mean": float(norm.mean()) if norm is not None else None,
        "seconds": seconds,
        "date": date.today().isoformat(),
        "sha256": eps.fingerprint(),  # the same recipe made elsewhere can differ: RESULTS.md "The datasets made again"
        "versions": versions(),
        # MKL's code branch (chosen by the CPU unless MKL_CBWR fixes it) changes the episodes:
        # results/collection_kernels.json
        "machine": machine(),
        "mkl_cbwr": os.environ.get("MKL_CBWR", "AUTO"),
    }


def versions() -> dict[str, str]:
    """Versions of the libraries a collection's episodes depend on."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("mujoco", "gymnasium", "stable-baselines3", "torch", "numpy", "minari"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def main() -> None:
    import minari

    from diffplan.collect.behavior import REPLAY_BUFFER, export_replay, make_medium_replay
    from diffplan.collect.collect import collect, dataset_exists
    from diffplan.envs.family import is_maze
    from diffplan.io import update_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_id")
    parser.add_argument("--steps", type=int, default=200_000, help="steps of each collected dataset")
    parser.add_argument("--random-steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--behavior-run", help="SAC behaviour run folder (for medium-replay; default "
                        "behavior_runs/ENV_ID, trained to the medium level when it holds no buffer)")  # fmt: skip
    parser.add_argument("--kinds", nargs="*", help="subset of kinds to make")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "datasets.json",
                        help="table the figures are merged into (e.g. results/datasets_remade.json for datasets "
                        "made again, whose rows must not replace the originals)")  # fmt: skip
    args = parser.parse_args()
    family = args.env_id.split("-")[0].lower()
    maze = is_maze(args.env_id)
    kinds = args.kinds or (["waypoint"] if maze else ["random", "medium", "expert", "medium-replay", "medium-expert"])
    out_path = args.out
    table = json.loads(out_path.read_text()) if out_path.exists() else {}
    for kind in kinds:
        dataset_id = f"diffplan/{family}/{kind}-v0"
        if dataset_exists(dataset_id):
            print(f"{dataset_id} exists, measuring it as it is")
            table[dataset_id] = stats(dataset_id, table.get(dataset_id, {}).get("seconds", float("nan")))
            update_json(out_path, [dataset_id], table[dataset_id])  # several envs may be generated at once
            continue
        started = time.perf_counter()
        if kind == "random":
            collect(
                env_id=args.env_id, behavior="random", steps=args.random_steps, seed=args.seed, dataset_id=dataset_id
            )
        elif kind in ("medium", "expert"):
            collect(
                env_id=args.env_id, behavior="sac", policy=kind, steps=args.steps, seed=args.seed, dataset_id=dataset_id
            )
        elif kind == "waypoint":
            collect(env_id=args.env_id, behavior="waypoint", steps=args.steps, seed=args.seed, dataset_id=dataset_id)
        elif kind == "medium-replay":
            run = Path(args.behavior_run or ROOT / "behavior_runs" / args.env_id.lower())
            if (run / REPLAY_BUFFER).is_file():
                export_replay(run_dir=run, dataset_id=dataset_id)
            else:  # no behaviour run kept: SAC again, as the shipped policy's run was trained, until medium
                make_medium_replay(env_id=args.env_id, run_dir=run, dataset_id=dataset_id, seed=args.seed,
                                   learning_starts=BEHAVIOR_LEARNING_STARTS.get(args.env_id, 100))  # fmt: skip
        elif kind == "medium-expert":
            parts = [minari.load_dataset(f"diffplan/{family}/{k}-v0") for k in ("medium", "expert")]
            minari.combine_datasets(parts, dataset_id)
        table[dataset_id] = stats(dataset_id, time.perf_counter() - started)
        update_json(out_path, [dataset_id], table[dataset_id])
    print(f"\n{'dataset':<36}{'episodes':>9}{'steps':>9}{'mean return':>13}{'normalized':>12}{'seconds':>9}")
    for dataset_id, row in sorted(table.items()):
        if row["env_id"] != args.env_id:
            continue
        norm = "n/a" if row["normalized_mean"] is None else f"{row['normalized_mean']:.1f}"
        print(
            f"{dataset_id:<36}{row['episodes']:>9}{row['steps']:>9}{row['mean_return']:>13.1f}{norm:>12}"
            f"{row['seconds']:>9.0f}"
        )
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
