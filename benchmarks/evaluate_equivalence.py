"""evaluate() on two tiny runs in 8 execution modes: returns, lengths, plan counts, as JSON.

Run it on two versions of the code (e.g. a worktree of an older commit with PYTHONPATH=its/src)
and compare the files: a refactoring of the episode layer must give identical numbers.

    python benchmarks/evaluate_equivalence.py OUT.json [--work /tmp/eq]   (the runs are trained once)
    python benchmarks/evaluate_equivalence.py --compare A.json B.json

``--compare`` says whether two such files hold the same values. ``plans_ratio`` (plans per decision)
is read off two wall-clock times, so its last digits vary from run to run; it is compared to 9
significant digits, everything else exactly.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _runs(root: Path) -> tuple[Path, Path]:
    """A tiny Hopper run and a tiny U-Maze run (with inverse dynamics), trained once in ``root``."""
    from diffplan.collect.collect import collect, dataset_exists
    from diffplan.presets import get_preset
    from diffplan.training import train

    hopper, maze = root / "hopper", root / "maze"
    if not (hopper / "diffplan.json").exists():
        if not dataset_exists("eq/hopper-v0"):
            collect(env_id="Hopper-v5", behavior="random", steps=800, seed=0, dataset_id="eq/hopper-v0", progress=False)
        preset = get_preset("tiny", denoiser_steps=100, value_steps=100)
        train(dataset="eq/hopper-v0", out=hopper, preset=preset, device="cpu", progress=False)
    if not (maze / "diffplan.json").exists():
        if not dataset_exists("eq/umaze-v0"):
            collect(env_id="PointMaze_UMaze-v3", behavior="waypoint", steps=900, seed=0, dataset_id="eq/umaze-v0",
                    progress=False)  # fmt: skip
        preset = replace(get_preset("tiny", denoiser_steps=40, value_steps=20, inverse_steps=100), normalizer="limits")
        train(dataset="eq/umaze-v0", out=maze, preset=preset, device="cpu", progress=False)
    return hopper, maze


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Where two outputs of this script differ (``plans_ratio`` to 9 significant digits)."""

    def ratio(x: float | None) -> str | None:
        return None if x is None else f"{x:.9g}"

    out = [f"{name}: only in one file" for name in sorted(set(a) ^ set(b))]
    for name in sorted(set(a) & set(b)):
        for key in sorted(set(a[name]) | set(b[name])):
            x, y = a[name].get(key), b[name].get(key)
            same = ratio(x) == ratio(y) if key == "plans_ratio" else x == y
            if not same:
                out.append(f"{name} {key}: {x} != {y}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?")
    parser.add_argument("--work", default="/tmp/eq", help="folder of the datasets and runs")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two outputs instead")
    args = parser.parse_args()
    if args.compare:
        a, b = (json.loads(Path(f).read_text()) for f in args.compare)
        found = differences(a, b)
        print("\n".join(found) if found else f"identical: {len(a)} cases")
        raise SystemExit(1 if found else 0)
    if not args.out:
        parser.error("expected OUT.json (or --compare A B)")
    torch.set_num_threads(2)
    root = Path(args.work)
    os.environ["MINARI_DATASETS_PATH"] = str(root / "datasets")
    from diffplan.evaluation import evaluate
    from diffplan.planning import ValueGuidedRLPipeline

    hopper_dir, maze_dir = _runs(root)
    hop, maze = ValueGuidedRLPipeline.from_pretrained(hopper_dir), ValueGuidedRLPipeline.from_pretrained(maze_dir)
    dense = "PointMaze_UMazeDense-v3"  # dense rewards: returns that tell trajectories apart
    fast = {"batch_size": 4, "sampler": "ddim", "num_inference_steps": 5, "warm_start_steps": 2}
    cases: dict[str, dict[str, Any]] = {
        "hopper replan": dict(pipe=hop, episodes=3, seed=1, num_envs=2, plan_kwargs={"batch_size": 4}),
        "hopper warm": dict(pipe=hop, episodes=3, seed=2, num_envs=2, plan_kwargs=fast),
        "hopper replan_every 3": dict(pipe=hop, episodes=2, seed=3, num_envs=2, replan_every=3,
                                      plan_kwargs={"batch_size": 4}),
        "hopper policy": dict(policy=lambda s, g: np.tanh(s[:, :3]), episodes=3, seed=4, num_envs=2,
                              env_id="Hopper-v5", max_episode_steps=30),
        "maze track": dict(pipe=maze, env_id=dense, episodes=3, seed=0, num_envs=2, max_episode_steps=30,
                           mode="track", plan_kwargs={"batch_size": 3}),
        "maze track walls": dict(pipe=maze, env_id=dense, episodes=2, seed=1, num_envs=2, max_episode_steps=30,
                                 mode="track", walls=True, plan_kwargs={"batch_size": 3}),
        "maze replan inverse": dict(pipe=maze, env_id=dense, episodes=2, seed=2, num_envs=2, max_episode_steps=20,
                                    actions="inverse", replan_every=4,
                                    plan_kwargs={"batch_size": 2, "goal_arrivals": 2}),
        "maze replan single": dict(pipe=maze, episodes=2, seed=3, num_envs=1, max_episode_steps=20, task="single",
                                   replan_every=2, plan_kwargs={"batch_size": 2}),
    }  # fmt: skip
    out = {}
    settings_object = "plan" in inspect.signature(evaluate).parameters  # since one PlanConfig goes end to end
    for name, kwargs in cases.items():
        kwargs.setdefault("max_episode_steps", 20)
        if settings_object and "plan_kwargs" in kwargs:
            kwargs["plan"] = kwargs["pipe"].plan_config.override(**kwargs.pop("plan_kwargs"))
        res = evaluate(progress=False, **kwargs).to_dict()
        out[name] = {k: res[k] for k in ("returns", "lengths", "success_rate", "planner", "normalized_score")}
        ratio = res["seconds_per_decision"] / res["seconds_per_plan"] if res["seconds_per_plan"] else None
        out[name]["plans_ratio"] = ratio
        print(name, out[name]["returns"])
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
