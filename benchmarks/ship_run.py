"""Copy a trained run into the package (`src/diffplan/runs/NAME`) with its chosen planner defaults.

Keeps the diffusers folders and `diffplan.json`, drops `training/` (resume state) and `logs/`,
writes the planner settings chosen by the benchmarks into the run's `plan` defaults and a note
of where they come from into `extra.shipped_planner`, and copies the loss curves to
`docs/images/losses_NAME.png`.

    python benchmarks/ship_run.py runs/pointmaze-umaze pointmaze-umaze --plan '{"batch_size": 32}' \\
        --note "track: 100 % success on 50 episodes"
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from diffplan.config import PlanConfig
    from diffplan.io import atomic_write_json, read_json, replace_dir
    from diffplan.planning.runs import RUN_INFO

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="trained run folder")
    parser.add_argument("name", help="shipped run name")
    parser.add_argument("--plan", default="{}", help="JSON planner defaults to store (PlanConfig fields)")
    parser.add_argument("--note", default="", help="where the defaults come from")
    args = parser.parse_args()

    src = Path(args.run)
    dest = ROOT / "src" / "diffplan" / "runs" / args.name
    staging = dest.with_name(f".{args.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(src, staging, ignore=shutil.ignore_patterns("training", "logs"))
    info = read_json(staging / RUN_INFO)
    plan = replace(PlanConfig.from_dict(info["plan"]), **json.loads(args.plan))
    info["plan"] = plan.to_dict()
    info.setdefault("extra", {})["shipped_planner"] = args.note
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
