"""Copy a trained run into the package (`src/diffplan/runs/NAME`) with its chosen planner defaults.

Keeps the diffusers folders and `diffplan.json`, drops `training/` (resume state) and `logs/`,
writes the planner settings chosen by the benchmarks into the run's `plan` defaults and a note
of where they come from into `extra.shipped_planner`, and copies the loss curves to
`docs/images/losses_NAME.png`.

    python benchmarks/ship_run.py runs/pointmaze-umaze pointmaze-umaze --plan '{"batch_size": 32}' \\
        --note "track: 100 % success on 50 episodes"
    python benchmarks/ship_run.py runs/grid/hopper-medium/diffplan/seed1 hopper-medium \\
        --eval runs/grid/hopper-medium/diffplan/seed1.eval.json

``--eval`` (an evaluation cached by benchmarks/grid.py, made with the planner defaults shipped)
stores the run's score with its 95 % interval in ``extra.score``; ``diffplan runs`` lists it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT  # noqa: E402


def normalized_summary(returns: list[float], info: dict) -> dict:
    """Summary (diffplan.stats) of a run's episode returns normalized by its reference scores."""
    from diffplan.envs.specs import reference_scores
    from diffplan.stats import summarize

    refs = reference_scores(info["env_id"], ref_min=info.get("ref_min_score"), ref_max=info.get("ref_max_score"))
    if refs is None:
        raise SystemExit(f"no reference scores for {info['env_id']}: a normalized score cannot be stored")
    return summarize([[refs.normalize(r) for r in returns]]).to_dict()


def score(evaluation: dict, info: dict) -> dict:
    """``extra.score`` of a shipped run: its normalized episode scores' summary (diffplan.stats)."""
    summary = normalized_summary(evaluation["returns"], info)
    keep = ("eval_seed", "max_episode_steps", "weights_hash", "machine", "date")
    return summary | {k: evaluation[k] for k in keep if k in evaluation} | {"measured_by": "benchmarks/grid.py"}


def main() -> None:
    from diffplan.config import PlanConfig
    from diffplan.io import atomic_write_json, read_json, replace_dir
    from diffplan.planning.runs import RUN_INFO

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="trained run folder")
    parser.add_argument("name", help="shipped run name")
    parser.add_argument("--plan", default="{}", help="JSON planner defaults to store (PlanConfig fields)")
    parser.add_argument("--note", default="", help="where the defaults come from")
    parser.add_argument("--eval", help="the run's evaluation cached by benchmarks/grid.py (seed<k>.eval.json)")
    args = parser.parse_args()

    src = Path(args.run)
    dest = ROOT / "src" / "diffplan" / "runs" / args.name
    staging = dest.with_name(f".{args.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src, staging, ignore=shutil.ignore_patterns("training", "logs", ".writer.*", "*.eval.json"))
    info = read_json(staging / RUN_INFO)
    plan = replace(PlanConfig.from_dict(info["plan"]), **json.loads(args.plan))
    info["plan"] = plan.to_dict()
    info.setdefault("extra", {})["shipped_planner"] = args.note
    if args.eval:
        info["extra"]["score"] = score(read_json(Path(args.eval)), info)
    atomic_write_json(staging / RUN_INFO, info)
    replace_dir(staging, dest)
    losses = src / "training" / "losses.png"
    if losses.is_file():
        (ROOT / "docs" / "images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(losses, ROOT / "docs" / "images" / f"losses_{args.name}.png")
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"shipped {src} as {args.name}: {size / 1e6:.1f} MB in {dest}")


if __name__ == "__main__":
    main()
