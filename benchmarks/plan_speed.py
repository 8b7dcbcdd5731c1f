"""Planning speed: diffusers' ValueGuidedRLPipeline vs ours, then our fast configurations.

One run, one table:

* diffusers' pipeline and ours at identical settings (`paper` nets, 64 plans, horizon 32,
  20 DDPM steps, 2 guide steps, scale 0.1), same weights and scheduler;
* ours in fast configurations (DDIM / DPM-Solver++ with few steps, warm starts, fewer plans):
  seconds per decision over a sequence of decisions in Hopper-v5 (warm starts need one);
* decisions/s with K = 1, 8, 32 envs planned in one call, for the recommended fast setting;
* with `--run RUN`, the normalized score of each configuration (`--episodes`, 1000 steps max).

Timing uses randomly initialised `paper` nets unless `--run` is given (cost does not depend on
the weights). Also measures training steps/s of the `small` and `paper` presets.

    python benchmarks/plan_speed.py [--threads 2] [--decisions 20] [--run RUN --episodes 20]
    python benchmarks/plan_speed.py --runs hopper-medium-dv --envs 1,10   # trained runs at their own settings

Writes results/plan_speed.json (with `fast_config`: the keyword arguments of
`pipe(obs, **fast_config)` for the recommended fast setting).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, build_pipes, fast_settings, machine, sync  # noqa: E402

# name -> keyword arguments of pipe.plan / Planner (None: identical settings)
CONFIGS: dict[str, dict[str, Any]] = {
    "ddpm-20 (identical settings)": dict(batch_size=64, n_guide_steps=2, sampler="ddpm", num_inference_steps=20),
    "ddim-5": dict(batch_size=64, n_guide_steps=2, sampler="ddim", num_inference_steps=5),
    "dpmsolver++-5": dict(batch_size=64, n_guide_steps=2, sampler="dpmsolver++", num_inference_steps=5),
    "ddpm-20, warm start 2": dict(
        batch_size=64, n_guide_steps=2, sampler="ddpm", num_inference_steps=20, warm_start_steps=2
    ),
    "ddim-5, warm start 1, 1 guide": dict(
        batch_size=64, n_guide_steps=1, sampler="ddim", num_inference_steps=5, warm_start_steps=1
    ),
    "ddim-4, 16 plans, 1 guide": dict(batch_size=16, n_guide_steps=1, sampler="ddim", num_inference_steps=4),
}
FAST = "ddim-5, 16 plans, warm start 2, 1 guide"
CONFIGS[FAST] = fast_settings()


def diffusers_speed(theirs: Any, decisions: int, device: str) -> float:
    """Median seconds per decision of diffusers' pipeline (its tqdm bar silenced)."""
    import tqdm

    obs = theirs.data["observations"][0]
    orig = tqdm.tqdm
    tqdm.tqdm = lambda it, *a, **k: it  # type: ignore[assignment]
    try:
        theirs(obs, batch_size=64, planning_horizon=32, n_guide_steps=2, scale=0.1)
        times = []
        for _ in range(decisions):
            t0 = time.perf_counter()
            theirs(obs, batch_size=64, planning_horizon=32, n_guide_steps=2, scale=0.1)
            sync(device)
            times.append(time.perf_counter() - t0)
    finally:
        tqdm.tqdm = orig
    return float(np.median(times))


def episode_speed(
    pipe: Any, config: dict[str, Any], decisions: int, n_envs: int, device: str, env_id: str = "Hopper-v5"
) -> dict[str, float]:
    """Seconds per decision over ``decisions`` consecutive decisions in ``env_id`` envs.

    Warm starts are forced (``replan_threshold=inf``): with untrained nets the states jump.
    Envs that fall are reset; the first (cold) decision is excluded as warm-up.
    """
    import gymnasium as gym

    from diffplan.planning.planner import Planner

    envs = [gym.make(env_id) for _ in range(n_envs)]
    obs = np.stack([e.reset(seed=i)[0] for i, e in enumerate(envs)])
    settings = pipe.plan_config.replaced(**{"replan_threshold": float("inf")} | config)
    planner = Planner(pipe, n_envs=n_envs, settings=settings)
    g = torch.Generator(device=pipe.device).manual_seed(0)  # noise drawn where the plans are
    times = []
    for step in range(decisions + 1):
        t0 = time.perf_counter()
        actions = planner.act(obs, generator=g)
        sync(device)
        if step:
            times.append(time.perf_counter() - t0)
        for i, e in enumerate(envs):
            o, _, term, trunc, _ = e.step(actions[i])
            if term or trunc:
                o, _ = e.reset()
            obs[i] = o
    for e in envs:
        e.close()
    per_call = float(np.median(times))
    return {
        "seconds_per_call": per_call,
        "seconds_per_decision": per_call / n_envs,
        "decisions_per_second": n_envs / per_call,
        "warm": planner.stats.warm,
        "cold": planner.stats.cold,
    }


def score(pipe: Any, config: dict[str, Any], episodes: int, num_envs: int) -> dict[str, float]:
    from diffplan.evaluation import evaluate

    res = evaluate(pipe=pipe, episodes=episodes, seed=0, num_envs=num_envs,
                   plan=pipe.plan_config.replaced(**config), progress=True)  # fmt: skip
    return {
        "normalized_score": res.normalized_score,
        "stderr": res.stderr,
        "mean_return": res.mean_return,
        "episodes": episodes,
        "eval_seconds_per_decision": res.seconds_per_decision,
    }


def train_speed(steps: int, device: str) -> dict:
    """Training steps/s of the `small` and `paper` presets (denoiser phase, random Hopper data)."""
    from benchmarks.common import random_hopper_dataset
    from benchmarks.profile_split import train_rate

    train_device = "cpu" if device == "cpu" else None
    with tempfile.TemporaryDirectory() as tmp:
        dataset = random_hopper_dataset(Path(tmp))
        return {
            name: train_rate(dataset, preset_name=name, steps=steps, device=train_device) for name in ("small", "paper")
        }


def run_speeds(runs: list[str], decisions: int, envs: list[int], device: str, out: Path) -> None:
    """Seconds per decision of trained runs at their own stored planner settings, with each of
    ``envs`` envs planned in one call; merged into ``out`` under ``"runs"``."""
    from diffplan.io import update_json
    from diffplan.planning import ValueGuidedRLPipeline

    print(f"{'run':<44}{'envs':>6}{'s / decision':>14}{'s / call':>10}")
    for run in runs:
        pipe = ValueGuidedRLPipeline.from_pretrained(run).to(device)
        rows = {str(k): episode_speed(pipe, {}, decisions, k, device, pipe.info.env_id) for k in envs}
        for k, row in rows.items():
            print(f"{run:<44}{k:>6}{row['seconds_per_decision']:>14.4f}{row['seconds_per_call']:>10.4f}")
        record = {"plan": pipe.plan_config.to_dict(), "envs": rows, "date": date.today().isoformat(),
                  "machine": machine(), "device": device, "torch_threads": torch.get_num_threads()}  # fmt: skip
        update_json(out, ["runs", Path(run).name if Path(run).exists() else run], record)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--decisions", type=int, default=20, help="timed decisions per configuration")
    parser.add_argument("--diffusers-decisions", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=30, help="0 skips the training-speed part")
    parser.add_argument("--run", help="trained run: time its nets and measure each configuration's score")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--compile", action="store_true", help="also time the fast setting with torch.compile")
    parser.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="CUDA: also time identical settings and the fast setting with CUDA graphs",
    )
    parser.add_argument("--envs", default="1,8,32", help="env counts planned in one call (fast setting)")
    parser.add_argument("--out", default=str(ROOT / "results" / "plan_speed.json"))
    parser.add_argument(
        "--runs",
        nargs="+",
        help="only time these trained runs (folders or shipped names) at their own planner settings, with "
        "--envs envs per call; merged into --out under 'runs' (e.g. --runs hopper-medium-dv --envs 1,10)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.runs:
        run_speeds(args.runs, args.decisions, [int(k) for k in args.envs.split(",")], args.device, Path(args.out))
        return
    ours, theirs = build_pipes(args.run, args.device)
    rows: dict[str, dict[str, Any]] = {}
    t_diffusers = diffusers_speed(theirs, args.diffusers_decisions, args.device)
    for name, config in CONFIGS.items():
        rows[name] = {"config": config} | episode_speed(ours, config, args.decisions, 1, args.device)
        print(f"{name:<44}{rows[name]['seconds_per_decision']:>10.4f} s", flush=True)
    envs = [int(k) for k in args.envs.split(",")]
    batched = {k: episode_speed(ours, CONFIGS[FAST], args.decisions, k, args.device) for k in envs}
    if args.cuda_graphs:
        ours.use_cuda_graphs()
        for name in ("ddpm-20 (identical settings)", FAST):
            rows[name + ", CUDA graphs"] = {"config": CONFIGS[name]} | episode_speed(
                ours, CONFIGS[name], args.decisions, 1, args.device
            )
        batched_graphs = {k: episode_speed(ours, CONFIGS[FAST], args.decisions, k, args.device) for k in envs}
        capture = ours.graph_capture_seconds
        ours.use_cuda_graphs(False)
    if args.compile:
        ours.compile(mode="reduce-overhead" if args.device.startswith("cuda") else None)
        rows[FAST + ", torch.compile"] = {"config": CONFIGS[FAST]} | episode_speed(
            ours, CONFIGS[FAST], args.decisions, 1, args.device
        )
    if args.run:
        for row in rows.values():
            row.update(score(ours, row["config"], args.episodes, num_envs=min(args.episodes, 10)))
    result = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "device": args.device,
        "torch_threads": args.threads,
        "nets": args.run or "paper preset, random init",
        "diffusers_seconds_per_decision": t_diffusers,
        "ours_identical_seconds_per_decision": rows["ddpm-20 (identical settings)"]["seconds_per_decision"],
        "speedup_identical": t_diffusers / rows["ddpm-20 (identical settings)"]["seconds_per_decision"],
        "configs": rows,
        "batched_envs": batched,
        **({"batched_envs_cuda_graphs": batched_graphs, "graph_capture_seconds": capture} if args.cuda_graphs else {}),
        "fast_config": {k: v for k, v in CONFIGS[FAST].items()},
        "fast_config_name": FAST,
    }
    if args.train_steps:
        result["train"] = train_speed(args.train_steps, args.device)
    print()
    print(f"{'configuration':<48}{'s / decision':>13}{'vs diffusers':>14}{'score':>14}")
    print(f"{'diffusers ValueGuidedRLPipeline':<48}{t_diffusers:>13.4f}{1.0:>13.1f}x{'':>14}")
    for name, row in rows.items():
        sc = f"{row['normalized_score']:.1f} ± {row['stderr']:.1f}" if "normalized_score" in row else "-"
        print(
            f"{name:<48}{row['seconds_per_decision']:>13.4f}{t_diffusers / row['seconds_per_decision']:>13.1f}x{sc:>14}"
        )
    for label, table in (("", batched), (", CUDA graphs", result.get("batched_envs_cuda_graphs", {}))):
        if table:
            print(f"\nbatched envs ({FAST}{label}):")
        for k, row in table.items():
            print(
                f"  K={k:<3} {row['decisions_per_second']:8.1f} decisions/s  "
                f"({row['seconds_per_call']:.4f} s per call, "
                f"{row['decisions_per_second'] / table[envs[0]]['decisions_per_second']:.1f}x K={envs[0]})"
            )
    for name, row in result.get("train", {}).items():
        if isinstance(row, dict):
            print(
                f"train {name:<12} {row['steps_per_s']:7.1f} steps/s, {row['samples_per_s']:8.0f} samples/s "
                f"(batch {row['batch_size']} x accumulation {row['gradient_accumulation_steps']})"
            )
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    if "runs" in previous:  # the --runs timings stay
        result["runs"] = previous["runs"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
