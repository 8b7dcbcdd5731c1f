"""evaluate() on two tiny runs in 8 execution modes: returns, lengths, plan counts, as JSON.

Run it on two versions of the code (e.g. a worktree of an older commit with PYTHONPATH=its/src)
and compare the files: a refactoring of the episode layer must give identical numbers.

    python benchmarks/evaluate_equivalence.py OUT.json      (work folder: /tmp/eq, runs trained once)
"""

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(2)
root = Path("/tmp/eq")
os.environ["MINARI_DATASETS_PATH"] = str(root / "datasets")
from diffplan.collect.collect import collect, dataset_exists
from diffplan.evaluation import evaluate
from diffplan.planning import ValueGuidedRLPipeline
from diffplan.presets import get_preset
from diffplan.training import train

if not (root / "hopper" / "diffplan.json").exists():
    if not dataset_exists("eq/hopper-v0"):
        collect(env_id="Hopper-v5", behavior="random", steps=800, seed=0, dataset_id="eq/hopper-v0", progress=False)
    train(
        dataset="eq/hopper-v0",
        out=root / "hopper",
        preset=get_preset("tiny", denoiser_steps=100, value_steps=100),
        device="cpu",
        progress=False,
    )
if not (root / "maze" / "diffplan.json").exists():
    if not dataset_exists("eq/umaze-v0"):
        collect(
            env_id="PointMaze_UMaze-v3",
            behavior="waypoint",
            steps=900,
            seed=0,
            dataset_id="eq/umaze-v0",
            progress=False,
        )
    preset = replace(get_preset("tiny", denoiser_steps=40, value_steps=20, inverse_steps=100), normalizer="limits")
    train(dataset="eq/umaze-v0", out=root / "maze", preset=preset, device="cpu", progress=False)
hop = ValueGuidedRLPipeline.from_pretrained(root / "hopper")
maze = ValueGuidedRLPipeline.from_pretrained(root / "maze")
cases = {
    "hopper replan": dict(
        pipe=hop, episodes=3, seed=1, num_envs=2, max_episode_steps=20, plan_kwargs={"batch_size": 4}
    ),
    "hopper warm": dict(
        pipe=hop,
        episodes=3,
        seed=2,
        num_envs=2,
        max_episode_steps=20,
        plan_kwargs={"batch_size": 4, "sampler": "ddim", "num_inference_steps": 5, "warm_start_steps": 2},
    ),
    "hopper replan_every 3": dict(
        pipe=hop, episodes=2, seed=3, num_envs=2, max_episode_steps=20, replan_every=3, plan_kwargs={"batch_size": 4}
    ),
    "hopper policy": dict(
        policy=lambda s, g: np.tanh(s[:, :3]), episodes=3, seed=4, num_envs=2, env_id="Hopper-v5", max_episode_steps=30
    ),
    "maze track": dict(
        pipe=maze,
        env_id="PointMaze_UMazeDense-v3",
        episodes=3,
        seed=0,
        num_envs=2,
        max_episode_steps=30,
        mode="track",
        plan_kwargs={"batch_size": 3},
    ),
    "maze track walls": dict(
        pipe=maze,
        env_id="PointMaze_UMazeDense-v3",
        episodes=2,
        seed=1,
        num_envs=2,
        max_episode_steps=30,
        mode="track",
        walls=True,
        plan_kwargs={"batch_size": 3},
    ),
    "maze replan inverse": dict(
        pipe=maze,
        env_id="PointMaze_UMazeDense-v3",
        episodes=2,
        seed=2,
        num_envs=2,
        max_episode_steps=20,
        mode="replan",
        actions="inverse",
        replan_every=4,
        plan_kwargs={"batch_size": 2, "goal_arrivals": 2},
    ),
    "maze replan single": dict(
        pipe=maze,
        episodes=2,
        seed=3,
        num_envs=1,
        max_episode_steps=20,
        task="single",
        replan_every=2,
        plan_kwargs={"batch_size": 2},
    ),
}
out = {}
for name, kw in cases.items():
    r = evaluate(progress=False, **kw).to_dict()
    out[name] = {k: r[k] for k in ("returns", "lengths", "success_rate", "planner", "normalized_score")}
    out[name]["plans_ratio"] = r["seconds_per_decision"] / r["seconds_per_plan"] if r["seconds_per_plan"] else None
    print(name, out[name]["returns"])
Path(sys.argv[1]).write_text(json.dumps(out, indent=1))
