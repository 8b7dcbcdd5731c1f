"""The planner choices of later diffusion planners, side by side with Diffuser on the same episodes.

Each row is a trained run (see `diffplan presets`) with planner settings and an execution; every
row of a dataset is evaluated on the same episodes (seeds `--seed` .. `--seed + episodes - 1`).
Rows already in the results file are skipped unless named with `--force`. Merges into
results/planner_choices.json:

    {dataset_id: {row: {"<mode>/<task>": {normalized_score, stderr, success_rate, seconds_per_decision, ...}}}}

    python benchmarks/planner_choices.py --rows hopper-medium:diffuser hopper-medium:dit --episodes 50
    python benchmarks/planner_choices.py --speed [--rows ...]   # ms per decision, 1 env, nothing else running
    python benchmarks/planner_choices.py --report               # the markdown table
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, fast_settings  # noqa: E402

OUT = ROOT / "results" / "planner_choices.json"

# Diffuser's stored fast settings of the shipped locomotion runs (results/plan_speed.json fast_config)
FAST = fast_settings()
COLD = {k: v for k, v in FAST.items() if k != "warm_start_steps"}
# Monte Carlo sampling with selection (the mc and dv presets' stored settings): no value gradients
MC = {"batch_size": 32, "n_guide_steps": 0, "sampler": "ddim", "num_inference_steps": 5}
# maze executions (RESULTS.md "Point mazes"): track = the run's stored settings; replan with DDIM 8
MAZE_REPLAN = {"sampler": "ddim", "num_inference_steps": 8}


@dataclass(frozen=True)
class Row:
    """One evaluated configuration.

    Attributes:
        dataset: the dataset the run was trained on (and whose env is evaluated).
        run: run folder (relative to the repository) or shipped run name.
        what: what the row adds to Diffuser.
        plan: planner settings (keyword arguments of ``pipe.plan``).
        executions: ``(mode, actions, replan_every)`` tuples; mazes are scored on both tasks.
    """

    dataset: str
    run: str
    what: str
    plan: dict[str, Any] = field(default_factory=dict)
    executions: tuple[tuple[str, str, int | None], ...] = (("replan", "plan", 1),)


def maze_executions(every: int) -> tuple[tuple[str, str, int | None], ...]:
    """``track``, and ``replan`` every ``every`` steps with inverse dynamics or the plan's actions
    (as RESULTS.md's maze rows: 16 steps, 8 on U-Maze: two planned steps)."""
    return (("track", "plan", None), ("replan", "inverse", every), ("replan", "plan", every))


MAZE_EXECUTIONS = maze_executions(16)


def _rows() -> dict[str, Row]:
    hop, large = "diffplan/hopper/medium-v0", "diffplan/pointmaze_large/waypoint-v0"
    rows = {
        "hopper-medium:diffuser": Row(hop, "hopper-medium", "Diffuser (shipped run, small preset)"),
        "hopper-medium:dit": Row(hop, "runs/hopper-medium-small-dit", "+ DiT denoiser", FAST),
        "hopper-medium:states": Row(hop, "runs/hopper-medium-small-states", "+ states only, inverse dynamics", FAST),
        "hopper-medium:mc": Row(hop, "hopper-medium", "+ Monte Carlo selection (no guidance)", {"n_guide_steps": 0}),
        "hopper-medium:c2f": Row(hop, "runs/hopper-medium-small-c2f", "+ coarse-to-fine", COLD),
        "hopper-medium:dv": Row(hop, "runs/hopper-medium-dv-small", "dv-small: DiT, states, MC by value", MC),
        "hopper-medium:dv-q": Row(
            hop, "runs/hopper-medium-dv-small", "dv-small: DiT, states, MC by Q", {**MC, "rank_by": "q"}
        ),
        "hopper-medium:dit-mc": Row(
            hop, "runs/hopper-medium-small-dit", "+ DiT, + Monte Carlo selection", {**FAST, "n_guide_steps": 0}
        ),
        "walker2d-medium:diffuser": Row("diffplan/walker2d/medium-v0", "walker2d-medium", "Diffuser (shipped run)"),
        "walker2d-medium:dv": Row("diffplan/walker2d/medium-v0", "runs/walker2d-medium-dv-small", "dv-small", MC),
        "walker2d-medium:dit": Row("diffplan/walker2d/medium-v0", "runs/walker2d-medium-small-dit", "+ DiT", FAST),
    }
    for maze, ds in (("large", large), ("medium", "diffplan/pointmaze_medium/waypoint-v0"),
                     ("umaze", "diffplan/pointmaze_umaze/waypoint-v0")):  # fmt: skip
        every = 8 if maze == "umaze" else 16
        rows[f"pointmaze-{maze}:dv"] = Row(
            ds, f"runs/pointmaze-{maze}-dv", "DiT, states only", {}, maze_executions(every)
        )
    rows["pointmaze-large:dit"] = Row(large, "runs/pointmaze-large-dit", "+ DiT denoiser", {}, MAZE_EXECUTIONS)
    rows["pointmaze-large:states"] = Row(large, "runs/pointmaze-large-states", "+ states only", {}, MAZE_EXECUTIONS)
    return rows


def _pipe(run: str) -> Any:
    from diffplan.planning import ValueGuidedRLPipeline

    path = ROOT / run
    return ValueGuidedRLPipeline.from_pretrained(path if path.is_dir() else run)


def evaluate_row(
    name: str, row: Row, *, episodes: int, seed: int, num_envs: int, modes: list[str] | None = None
) -> dict[str, Any]:
    """Scores of every execution of ``row`` (both tasks on mazes), or of those in ``modes``."""
    from diffplan.envs.family import is_maze
    from diffplan.evaluation import evaluate

    pipe = _pipe(row.run)
    maze = is_maze(pipe.info.env_id)
    out: dict[str, Any] = {}
    for mode, actions, every in row.executions:
        if modes and mode not in modes:
            continue
        for task in ("single", "multi") if maze else ("multi",):
            plan = pipe.plan_config.override(**(row.plan | (MAZE_REPLAN if maze and mode == "replan" else {})))
            res = evaluate(pipe=pipe, episodes=episodes, seed=seed, num_envs=num_envs, plan=plan, mode=mode,
                           replan_every=every, actions=actions, task=task, progress=True)  # fmt: skip
            key = f"{mode}{'-inverse' if actions == 'inverse' else ''}/{task}"
            out[key] = {
                "normalized_score": res.normalized_score,
                "stderr": res.stderr,
                "success_rate": res.success_rate,
                "seconds_per_decision": res.seconds_per_decision,
                "seconds_per_plan": res.seconds_per_plan,
                "episodes": episodes,
                "seed": seed,
                "num_envs": num_envs,
                "plan": plan,
            }
            print(f"{name} {key}: {res.normalized_score:.1f} ± {res.stderr:.1f}"
                  f"{'' if res.success_rate is None else f', success {100 * res.success_rate:.0f} %'}")  # fmt: skip
    return out


def decision_ms(row: Row, *, decisions: int = 40) -> float:
    """Median wall time (ms) of one closed-loop decision for one env (warm starts as the row plans)."""
    import torch

    from diffplan.envs.specs import make_env
    from diffplan.planning.planner import Planner

    pipe = _pipe(row.run)
    env = make_env(pipe.info.env_id)
    obs, _ = env.reset(seed=0)
    state = obs["observation"] if isinstance(obs, dict) else obs
    planner = Planner(pipe, n_envs=1, settings=pipe.plan_config.override(**row.plan))
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(decisions + 5):
        start = time.perf_counter()
        action = planner.act(np.asarray(state)[None], generator=generator)
        times.append(time.perf_counter() - start)
        obs, *_ = env.step(action[0])
        state = obs["observation"] if isinstance(obs, dict) else obs
    env.close()
    return 1000 * float(np.median(times[5:]))


def save(dataset: str, name: str, entry: dict) -> None:
    """Merge one row into the results file (re-read first: other processes may have written)."""
    from diffplan.io import update_json

    update_json(OUT, [dataset, name], entry, merge=True)


def report() -> str:
    """The markdown table of the results file."""
    table = json.loads(OUT.read_text()) if OUT.exists() else {}
    rows = _rows()
    lines = ["| dataset | row | what | execution / task | score | success | ms / decision (1 env) |",
             "| --- | --- | --- | --- | ---: | ---: | ---: |"]  # fmt: skip
    for dataset, entries in table.items():
        for name, entry in entries.items():
            what = rows[name].what if name in rows else ""
            ms = entry.get("ms_per_decision")
            for key, cell in entry.items():
                if not isinstance(cell, dict):
                    continue
                success = "" if cell["success_rate"] is None else f"{100 * cell['success_rate']:.0f} %"
                lines.append(f"| {dataset} | {name} | {what} | {key} | {cell['normalized_score']:.1f} ± "
                             f"{cell['stderr']:.1f} | {success} | {'' if ms is None else f'{ms:.1f}'} |")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="*", help=f"rows to evaluate (default: all); of {sorted(_rows())}")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-envs", type=int, default=10)
    parser.add_argument("--force", action="store_true", help="evaluate rows already in the results file again")
    parser.add_argument("--modes", nargs="*", help="only these executions (track, replan)")
    parser.add_argument("--speed", action="store_true", help="measure ms per decision (1 env) instead")
    parser.add_argument("--report", action="store_true", help="print the table of the results file")
    args = parser.parse_args()
    if args.report:
        print(report())
        return
    rows = _rows()
    unknown = set(args.rows or []) - set(rows)
    if unknown:
        raise SystemExit(f"unknown rows {sorted(unknown)}; expected some of {sorted(rows)}")
    done = json.loads(OUT.read_text()) if OUT.exists() else {}
    for name in args.rows or sorted(rows):
        row = rows[name]
        if args.speed:
            ms = decision_ms(row)
            print(f"{name}: {ms:.1f} ms per decision")
            save(row.dataset, name, {"ms_per_decision": ms, "speed_machine": "2 CPU cores, nothing else running"})
            continue
        if any(isinstance(v, dict) for v in done.get(row.dataset, {}).get(name, {}).values()) and not args.force:
            print(f"{name}: already evaluated (use --force to redo)")
            continue
        entry = evaluate_row(
            name, row, episodes=args.episodes, seed=args.seed, num_envs=args.num_envs, modes=args.modes
        )
        save(row.dataset, name, entry)
    print(report())


if __name__ == "__main__":
    main()
