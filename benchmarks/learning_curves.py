"""Learning curves: normalized score on held-out episodes against denoiser steps, one long run per row.

A grid row's run (``runs/grid/<dataset>/<method>/seed<k>``, the folder the grid evaluates) is trained in
stages, raising its denoiser steps to each count of ``--steps`` and resuming from its training state;
after each stage the run folder (without its training state) is copied to
``runs/curves/<dataset>/<method>/seed<k>/step<N>``. Each copy is evaluated on episodes reset with
``--eval-seed + i`` (1000 by default: apart from the grid's 0-49, so that nothing chosen from a curve is
scored on the grid's episodes). The other phases (value network, inverse dynamics, state value) are
trained once, in the first stage, and are the same in every copy.

    python benchmarks/learning_curves.py hopper-medium --method dv --steps 12500 25000 50000 100000
    python benchmarks/learning_curves.py --plot     # docs/images/learning_curves.png from the JSON

results/learning_curves.json: ``{dataset: {method: {"seed<k>": {"<steps>": {"score", "stderr", "returns",
"episodes", "eval_seed", "seconds_per_decision", "train_minutes", "machine", "date"}}}}}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, machine  # noqa: E402
from benchmarks.grid import PLANNERS, GridConfig, grid_datasets, run_dir, train_minutes  # noqa: E402

OUT = ROOT / "results" / "learning_curves.json"
FIGURE = ROOT / "docs" / "images" / "learning_curves.png"


def snapshot_dir(cfg: GridConfig, name: str, method: str, seed: int, steps: int) -> Path:
    """Folder of the copy of a grid run after ``steps`` denoiser steps (``curves/`` beside the grid's root)."""
    return cfg.root.parent / "curves" / name / method / f"seed{seed}" / f"step{steps}"


def train_stage(cfg: GridConfig, name: str, method: str, seed: int, steps: int, *, progress: bool) -> Path:
    """Train the grid run to ``steps`` denoiser steps (resuming) and copy it; returns the copy."""
    from diffplan.presets import get_preset
    from diffplan.training import train

    snap = snapshot_dir(cfg, name, method, seed, steps)
    if (snap / "diffplan.json").is_file():
        return snap
    row = cfg.planners[method]
    train_fields, plan_fields = row.settings(name)
    preset = get_preset(row.preset, **(train_fields | {"seed": seed, "denoiser_steps": steps}))
    preset = dataclasses.replace(preset, plan=dataclasses.replace(preset.plan, **plan_fields))
    out = run_dir(cfg, name, method, seed)
    done = (
        (json.loads((out / "diffplan.json").read_text()) if (out / "diffplan.json").is_file() else {})
        .get("extra", {})
        .get("train_steps", {})
    )
    if done.get("unet", 0) > steps:
        raise ValueError(f"{out} has {done['unet']} denoiser steps, more than {steps}: curves need a fresh run")
    train(dataset=cfg.datasets[name], out=out, preset=preset, device="cpu", resume=out.exists(), progress=progress)
    tmp = snap.with_name(f".{snap.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(out, tmp, ignore=shutil.ignore_patterns("training", "logs", ".writer.*"))
    tmp.rename(snap)
    return snap


def evaluate_snapshot(
    snap: Path,
    *,
    episodes: int,
    eval_seed: int,
    num_envs: int,
    progress: bool,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Score one copy on ``episodes`` episodes from ``eval_seed`` with its stored planner settings
    (``overrides`` replaces some), cached in the copy's folder."""
    from diffplan.evaluation import evaluate
    from diffplan.io import atomic_write_json, read_json
    from diffplan.planning import ValueGuidedRLPipeline

    suffix = "".join(f"-{k}={v}" for k, v in sorted((overrides or {}).items()))
    cache = snap / f"eval-seed{eval_seed}-{episodes}{suffix}.json"
    if cache.is_file():
        return read_json(cache)
    pipe = ValueGuidedRLPipeline.from_pretrained(snap)
    res = evaluate(pipe=pipe, episodes=episodes, seed=eval_seed, num_envs=num_envs, max_episode_steps=1000,
                   plan=pipe.plan_config.override(**(overrides or {})), progress=progress)  # fmt: skip
    record = {
        "score": res.normalized_score,
        "stderr": res.stderr,
        "returns": res.returns,
        "episodes": episodes,
        "eval_seed": eval_seed,
        "seconds_per_decision": res.seconds_per_decision,
        "train_minutes": train_minutes(snap),
        "planner": res.planner,
        "machine": machine(),
        "date": date.today().isoformat(),
    }
    atomic_write_json(cache, record)
    return record


def plot(path: Path = FIGURE) -> None:
    """One panel per dataset: each row's held-out score against denoiser steps (mean ± s.e. over
    episodes; one line per training seed), BC and IQL of the grid as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffplan.plots import save_figure

    table = json.loads(OUT.read_text())
    grid = json.loads((ROOT / "results" / "grid.json").read_text())
    names = sorted(table)
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        for method, seeds in table[name].items():
            for seed, points in seeds.items():
                steps = sorted(points, key=int)
                x = [int(s) for s in steps]
                y = np.array([points[s]["score"] for s in steps])
                e = np.array([points[s]["stderr"] for s in steps])
                line = ax.plot(x, y, marker="o", label=f"{method} ({seed})")[0]
                ax.fill_between(x, y - e, y + e, alpha=0.2, color=line.get_color())
        cell = grid.get(grid_datasets([name])[name], {})
        for base, style in (("bc", ":"), ("iql", "--")):
            if base in cell:
                ax.axhline(cell[base]["mean"], color="gray", linestyle=style, label=f"{base} (grid)")
        ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("denoiser steps")
        ax.set_ylabel("normalized score (held-out episodes)")
        ax.legend(fontsize=7)
    save_figure(fig, path)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", help="grid dataset name, e.g. hopper-medium")
    parser.add_argument("--method", default="dv", choices=sorted(PLANNERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, nargs="+", default=[12_500, 25_000, 50_000, 100_000])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--eval-seed", type=int, default=1000)
    parser.add_argument("--num-envs", type=int, default=10)
    parser.add_argument("--train-only", action="store_true", help="train and copy every stage, evaluate none")
    parser.add_argument("--plot", action="store_true", help="only draw the figure from the JSON")
    parser.add_argument(
        "--plan",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="planner settings replaced at evaluation (JSON values, e.g. n_guide_steps=0); the curve is "
        "recorded as '<method> (NAME=VALUE)'",
    )
    args = parser.parse_args()
    if args.plot:
        plot()
        return
    if args.dataset is None:
        parser.error("expected a dataset name (or --plot)")
    import torch

    from diffplan.io import update_json

    torch.set_num_threads(1)
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.plan)}
    label = args.method + "".join(f" ({k}={v})" for k, v in overrides.items())
    cfg = GridConfig(datasets=grid_datasets([args.dataset]))
    snaps = [train_stage(cfg, args.dataset, args.method, args.seed, s, progress=True) for s in sorted(args.steps)]
    if args.train_only:
        return
    for steps, snap in zip(sorted(args.steps), snaps):
        rec = evaluate_snapshot(snap, episodes=args.episodes, eval_seed=args.eval_seed, num_envs=args.num_envs,
                                progress=True, overrides=overrides or None)  # fmt: skip
        update_json(OUT, [args.dataset, label, f"seed{args.seed}", str(steps)], rec)
        print(f"{args.dataset} {label} seed {args.seed} @ {steps}: {rec['score']:.1f} ± {rec['stderr']:.1f}")


if __name__ == "__main__":
    main()
