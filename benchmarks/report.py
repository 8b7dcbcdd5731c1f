"""Markdown tables of the measured scores (results/*.json), for RESULTS.md and the README.

python benchmarks/report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT  # noqa: E402

METHODS = ("behavior", "bc", "iql", "diffplan")


def _cell(r: dict | None, bold: bool = False) -> str:
    if not r:
        return "—"
    text = f"{r['mean']:.1f} ± {r['stderr']:.1f}"
    return f"**{text}**" if bold else text


def locomotion() -> str:
    lines = [
        "| dataset | behaviour (dataset) | BC | IQL | diffplan | diffplan s / decision |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for family in ("hopper", "walker2d"):
        path = ROOT / "results" / f"scores_{family}.json"
        if not path.exists():
            continue
        for dataset, row in json.loads(path.read_text()).items():
            best = max((m for m in METHODS if m in row), key=lambda m: row[m]["mean"])
            cells = [_cell(row.get(m), m == best) for m in METHODS]
            spd = row.get("diffplan", {}).get("seconds_per_decision")
            lines.append(f"| {dataset} | " + " | ".join(cells) + f" | {f'{spd:.3f}' if spd else '—'} |")
    return "\n".join(lines)


MAZES = ("umaze", "medium", "large")
EXECUTIONS = ("track", "track+walls", "replan-inverse", "replan", "policy")


def maze() -> str:
    """One row per maze and method / execution, the single- and multi-task columns side by side."""
    path = ROOT / "results" / "scores_maze.json"
    if not path.exists():
        return ""
    lines = [
        "| maze | method / execution | single: success | single: score | multi: success | multi: score | s / plan |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    table = json.loads(path.read_text())
    order = {m: i for i, m in enumerate(MAZES)}
    for dataset in sorted(table, key=lambda d: next((order[m] for m in MAZES if f"_{m}/" in d), len(MAZES))):
        variants = sorted(
            {tuple(k.split("/")[:2]) for k in table[dataset]},
            key=lambda v: (EXECUTIONS.index(v[1]) if v[1] in EXECUTIONS else len(EXECUTIONS), v),
        )
        for method, execution in variants:
            cells, speeds = [], []
            for task in ("single", "multi"):
                r = table[dataset].get(f"{method}/{execution}/{task}")
                cells += (
                    [f"{100 * r['success_rate']:.0f} %", f"{r['mean']:.1f} ± {r['stderr']:.1f}"] if r else ["—", "—"]
                )
                if r and method != "iql":
                    speeds.append(r["seconds_per_plan"])
            speed = f"{np.mean(speeds):.2f}" if speeds else "—"
            lines.append(f"| {dataset.split('/')[1]} | {method} {execution} | " + " | ".join(cells) + f" | {speed} |")
    return "\n".join(lines)


def sweep(name: str = "hopper-medium") -> str:
    path = ROOT / "results" / f"sweep_{name}.json"
    if not path.exists():
        return ""
    data = json.loads(path.read_text())
    lines = [
        "| setting (changed from fast_config) | normalized score | episodes | ms / decision |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row, r in data["rows"].items():
        lines.append(
            f"| {row} | {r['mean']:.1f} ± {r['stderr']:.1f} | {r['n']} | {1e3 * r['seconds_per_decision']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    for title, table in (("locomotion", locomotion()), ("maze", maze()), ("sweep", sweep())):
        print(f"## {title}\n\n{table}\n")
