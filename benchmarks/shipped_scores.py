"""Every shipped run's figure on episodes it has never seen, with the settings it ships with.

For each shipped run the script stores as its defaults (``plan`` and ``evaluation`` in its
``diffplan.json``) the planner settings and the execution chosen for it on other episodes (the
table below names where: the grid's reset seeds 0-49 or the planner-choice tables of RESULTS.md),
then runs exactly what ``diffplan evaluate NAME`` runs with no flags — 20 episodes reset with seeds
5000-5019, which no choice ever used, 10 envs planned together — and stores the outcome in
``extra.score`` (``diffplan runs`` prints it). A figure reported on the choice episodes is kept in
``extra.chosen_on``. Results also go to ``results/shipped_scores.json``.

    python benchmarks/shipped_scores.py                    # every shipped run
    python benchmarks/shipped_scores.py pointmaze-large    # some
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, fast_settings, machine  # noqa: E402
from benchmarks.ship_run import normalized_summary  # noqa: E402

OUT = ROOT / "results" / "shipped_scores.json"
UNSEEN = {"episodes": 20, "seed": 5000, "num_envs": 10}  # reset seeds no choice has used


@dataclass(frozen=True)
class Choice:
    """Settings chosen for a shipped run on other episodes, and the figure they had there.

    Attributes:
        plan: planner settings replacing the stored ones (PlanConfig fields).
        evaluation: execution (EvalConfig fields; the episodes are always :data:`UNSEEN`).
        chosen_on: the figure on the choice episodes and where it is reported.
    """

    plan: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    chosen_on: dict[str, Any] = field(default_factory=dict)


def _grid(score: float) -> dict[str, Any]:
    return {"normalized_score": score, "episodes": "reset seeds 0-49", "where": "results/grid.json"}


def _maze(success: float, table: str) -> dict[str, Any]:
    return {"success_rate": success, "episodes": "reset seeds 0-49", "where": f"RESULTS.md {table}"}


# Closed loop with the run's own actions, DDIM 8, replanning every 16 steps (8 on U-Maze), the maze's
# fixed goal: the best cell of the states-only runs in RESULTS.md "Planner choices" (own-action replan).
MAZE_REPLAN = {"sampler": "ddim", "num_inference_steps": 8}
# Diffuser's maze runs at their best: plan once, PD-follow, plans through walls ranked last.
TRACK_WALLS = {"mode": "track", "walls": True, "task": "single"}


def choices() -> dict[str, Choice]:
    """The chosen settings of every shipped run."""
    fast = fast_settings()
    return {
        "hopper-medium": Choice(fast, chosen_on=_grid(57.0)),
        "walker2d-medium": Choice(fast, chosen_on=_grid(54.4)),
        "halfcheetah-medium": Choice({**fast, "scale": 0.001, "planning_horizon": 4}, chosen_on=_grid(41.9)),
        "hopper-medium-dit": Choice(
            fast,
            chosen_on={"normalized_score": 87.2, "episodes": "reset seeds 0-49", "where": "RESULTS.md Planner choices"},
        ),  # fmt: skip
        # DDIM 10 steps, not the preset's 20: the best of 20 / 10 / 5 on held-out episodes (grid.DV_CHOSEN)
        "hopper-medium-dv": Choice(
            {"num_inference_steps": 10},
            chosen_on={
                "normalized_score": 109.2,
                "episodes": "reset seeds 1000-1009",
                "where": "results/sweep_hopper-medium-dv.json",
            },
        ),  # fmt: skip
        # DDIM 10 as for hopper-medium-dv: chosen on held-out episodes of the three training seeds (grid.DV_CHOSEN)
        "walker2d-medium-dv": Choice(
            {"num_inference_steps": 10},
            chosen_on={
                "normalized_score": 94.6,
                "episodes": "reset seeds 1000-1009",
                "where": "results/sweep_walker2d-medium-dv.json",
            },
        ),  # fmt: skip
        "halfcheetah-medium-dv": Choice(chosen_on=_grid(50.3)),
        "pointmaze-large": Choice(
            MAZE_REPLAN, {"replan_every": 16, "task": "single"}, _maze(0.86, "Planner choices, PointMaze Large")
        ),  # fmt: skip
        "pointmaze-medium": Choice(
            MAZE_REPLAN, {"replan_every": 16, "task": "single"}, _maze(1.0, "Planner choices, PointMaze Medium")
        ),  # fmt: skip
        "pointmaze-umaze": Choice(
            MAZE_REPLAN, {"replan_every": 8, "task": "single"}, _maze(1.0, "Planner choices, PointMaze U-Maze")
        ),  # fmt: skip
        "pointmaze-large-diffuser": Choice({}, TRACK_WALLS, _maze(1.0, "track+walls, results/scores_maze.json")),
        "pointmaze-medium-diffuser": Choice({}, TRACK_WALLS, _maze(1.0, "track+walls, results/scores_maze.json")),
        "pointmaze-umaze-diffuser": Choice({}, TRACK_WALLS, _maze(1.0, "track+walls, results/scores_maze.json")),
    }


def store_defaults(name: str, choice: Choice) -> Path:
    """Write the chosen planner and evaluation defaults into the shipped run's ``diffplan.json``."""
    from diffplan.config import EvalConfig, PlanConfig
    from diffplan.io import atomic_write_json, read_json
    from diffplan.planning.runs import RUN_INFO, resolve_run

    path = resolve_run(name) / RUN_INFO
    info = read_json(path)
    info["plan"] = PlanConfig.from_dict(info["plan"]).override(**choice.plan).to_dict()
    info["evaluation"] = EvalConfig().override(**choice.evaluation, **UNSEEN).to_dict()
    info.setdefault("extra", {})["chosen_on"] = choice.chosen_on
    atomic_write_json(path, info)
    return path


def measure(name: str) -> dict[str, Any]:
    """What ``diffplan evaluate NAME`` with no flags measures (the CLI function itself is called)."""
    import tempfile

    from diffplan.cli import evaluate
    from diffplan.io import read_json

    with tempfile.TemporaryDirectory() as tmp:
        evaluate(name, json=f"{tmp}/eval.json")
        return read_json(Path(tmp) / "eval.json")


def score_of(result: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """``extra.score``: the normalized episode scores' summary (diffplan.stats) and the protocol."""
    return normalized_summary(result["returns"], info) | {
        "eval_seed": result["seed"],
        "success_rate": result["success_rate"],
        "seconds_per_decision": result["seconds_per_decision"],
        "unseen": True,
        "measured_by": "benchmarks/shipped_scores.py",
        "machine": machine(),
        "date": date.today().isoformat(),
    }


def main() -> None:
    from diffplan.io import atomic_write_json, read_json
    from diffplan.planning.runs import list_runs

    table = choices()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="shipped runs (default: all)")
    args = parser.parse_args()
    names = args.names or [n for n in list_runs() if n in table]
    missing = sorted(set(list_runs()) - set(table))
    if missing:
        print(f"no chosen settings for {missing}: add them to choices()")
    results = read_json(OUT) if OUT.is_file() else {}
    for name in names:
        if name not in table:
            raise SystemExit(f"no chosen settings for {name!r}; known: {sorted(table)}")
        path = store_defaults(name, table[name])
        result = measure(name)
        info = read_json(path)
        info["extra"]["score"] = score_of(result, info)
        atomic_write_json(path, info)
        results[name] = {"result": result, "score": info["extra"]["score"], "chosen_on": table[name].chosen_on}
        atomic_write_json(OUT, results)
        s = info["extra"]["score"]
        rate = "" if s["success_rate"] is None else f", success {100 * s['success_rate']:.0f} %"
        print(f"{name}: {s['mean']:.1f} (IQM {s['iqm']:.1f}){rate} on 20 unseen episodes; "
              f"chosen on {table[name].chosen_on}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
