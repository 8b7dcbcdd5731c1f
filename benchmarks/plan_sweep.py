"""Planning-settings sweep: normalized score and seconds per decision of one run, one setting at a time.

Starts from the fast configuration of `results/plan_speed.json` (`fast_config`) and changes one
setting per row (guide scale, t_stopgrad, plans per decision, guide steps, warm-start steps,
sampler and its steps); the row `stored` is the run's own defaults (the settings of its reported
figures); the reference row is our own 20-step DDPM configuration (the paper's planner: 64 plans,
2 guide steps, DDPM over all 20 steps, the run's guide scale). Every row uses the same
episode seeds (seed + i, 1000 steps max) and envs planned together in one batched call.

    python benchmarks/plan_sweep.py --run hopper-medium --episodes 10 [--ddpm-episodes 5] [--rows NAME ...]
        [--seed 1000] [--out results/sweep_NAME.json]
    python benchmarks/plan_sweep.py --run hopper-medium-dv --rows-of dv --seed 1000     # Monte Carlo runs
    python benchmarks/plan_sweep.py --run hopper-medium-dv --rows-of dv --speed-only --threads 2
    python benchmarks/plan_sweep.py --run hopper-medium --rows "ddpm-20, 64 plans, 2 guides (reference)" \
        --device cuda --episodes 10 --ddpm-episodes 10 --seed 5000 --out results/gpu/paper_settings_hopper-medium.json

``--rows-of dv`` sweeps a Monte Carlo run (the ``dv`` preset) from its stored settings: fewer
denoising steps and fewer candidates, the two costs of a decision. ``--speed-only`` times each row's
decision with one env (20 decisions after a warm-up, ``plan_speed.episode_speed``) without scoring;
time it with nothing else running.

Merges rows into results/sweep_<run>.json after each row (a re-run of some rows keeps the others).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, machine  # noqa: E402

DDPM = "ddpm-20, 64 plans, 2 guides (reference)"
STORED = "stored (the run's defaults)"  # the settings of the run's reported figures


def rows(fast: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Row name -> planner keyword arguments (the fast configuration with one setting changed)."""
    out: dict[str, dict[str, Any]] = {STORED: {}, "fast_config": dict(fast)}
    for name, change in {
        "scale 0 (no guidance)": {"scale": 0.0},
        "scale 0.03": {"scale": 0.03},
        "scale 0.3": {"scale": 0.3},
        "scale 1.0": {"scale": 1.0},
        "scale 3.0": {"scale": 3.0},
        "gradient not scaled by variance": {"scale_grad_by_var": False},
        "scale 1.0, 64 plans": {"scale": 1.0, "batch_size": 64},
        "t_stopgrad 0": {"t_stopgrad": 0},
        "4 plans": {"batch_size": 4},
        "64 plans": {"batch_size": 64},
        "2 guide steps": {"n_guide_steps": 2},
        "cold start (no warm start)": {"warm_start_steps": None},
        "warm start 1": {"warm_start_steps": 1},
        "ddim-10": {"num_inference_steps": 10},
        "dpmsolver++-5": {"sampler": "dpmsolver++"},
    }.items():
        out[name] = dict(fast) | change
    out[DDPM] = {
        "batch_size": 64,
        "n_guide_steps": 2,
        "sampler": "ddpm",
        "num_inference_steps": 20,
        "warm_start_steps": None,
    }
    return out


def dv_rows() -> dict[str, dict[str, Any]]:
    """Row name -> DDIM steps and candidates of a Monte Carlo run (both given: a run may store other ones)."""

    def row(steps: int, candidates: int) -> dict[str, Any]:
        return {"num_inference_steps": steps, "batch_size": candidates}

    return {
        "stored (DDIM 20, 50 candidates)": row(20, 50),  # the dv preset's settings
        "DDIM 10": row(10, 50),
        "DDIM 5": row(5, 50),
        "25 candidates": row(20, 25),
        "10 candidates": row(20, 10),
        "DDIM 10, 25 candidates": row(10, 25),
        "DDIM 5, 10 candidates": row(5, 10),
        "1 candidate (no selection)": row(20, 1),
    }


def main() -> None:
    import numpy as np
    import torch

    from diffplan.envs.specs import ReferenceScores
    from diffplan.evaluation import evaluate
    from diffplan.io import atomic_write_json
    from diffplan.planning import ValueGuidedRLPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="hopper-medium")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--ddpm-episodes", type=int, default=5, help="episodes of the (slow) 20-step DDPM row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", nargs="*", help="only these rows (default: all)")
    parser.add_argument("--out", type=Path, help="results file (default: results/sweep_<run folder name>.json)")
    parser.add_argument("--rows-of", choices=("fast", "dv"), default="fast", help="the fast U-Net rows or dv's")
    parser.add_argument("--speed-only", action="store_true", help="only time each row with one env")
    parser.add_argument("--compile", action="store_true", help="with --speed-only: torch.compiled networks too")
    parser.add_argument("--device", default="cpu", help="where the networks plan (e.g. cuda); envs step on the CPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pipe = ValueGuidedRLPipeline.from_pretrained(args.run, device=args.device)
    name = Path(str(args.run)).name
    out_path = args.out or ROOT / "results" / f"sweep_{name}.json"
    table = json.loads(out_path.read_text()) if out_path.exists() else {"rows": {}}
    compiled_pipes: list[ValueGuidedRLPipeline] = []

    def compiled_pipe() -> ValueGuidedRLPipeline:
        """The run loaded a second time with compiled networks, so that ``pipe`` stays eager for the other rows."""
        if not compiled_pipes:
            compiled_pipes.append(ValueGuidedRLPipeline.from_pretrained(args.run, device=args.device).compile())
        return compiled_pipes[0]

    if args.rows_of == "dv":
        sweep = dv_rows()
    else:
        sweep = rows(json.loads((ROOT / "results" / "plan_speed.json").read_text())["fast_config"])
    for row, config in sweep.items():
        if args.rows and row not in args.rows:
            continue
        if args.speed_only:
            from benchmarks.plan_speed import episode_speed

            speed = episode_speed(pipe, config, 20, 1, args.device, pipe.info.env_id)["seconds_per_decision"]
            table["rows"].setdefault(row, {}).update(config=config, seconds_per_decision_1_env=speed)
            print(f"{row:<40} {speed * 1e3:7.1f} ms/decision (1 env, {args.threads} threads)")
            if args.compile:
                compiled = episode_speed(compiled_pipe(), config, 20, 1, args.device, pipe.info.env_id)
                table["rows"][row]["seconds_per_decision_1_env_compiled"] = compiled["seconds_per_decision"]
                print(f"{row:<40} {compiled['seconds_per_decision'] * 1e3:7.1f} ms/decision compiled")
            table["speed"] = {"threads": args.threads, "machine": machine(), "date": date.today().isoformat()}
            atomic_write_json(out_path, table)
            continue
        episodes = args.ddpm_episodes if row == DDPM else args.episodes
        res = evaluate(
            pipe=pipe,
            episodes=episodes,
            seed=args.seed,
            num_envs=episodes,
            max_episode_steps=1000,
            plan=pipe.plan_config.replaced(**config),
        )
        table["rows"][row] = table["rows"].get(row, {}) | {
            "config": config,
            "mean": res.normalized_score,
            "stderr": res.stderr,
            "n": episodes,
            "seconds_per_decision": res.seconds_per_decision,
            "returns": res.returns,
        }
        # the fast and the stored configurations on exactly the DDPM row's seeds, for a paired comparison
        if row in ("fast_config", STORED):
            refs = ReferenceScores(**res.reference)
            table["rows"][row]["mean_first_ddpm_seeds"] = float(
                np.mean([refs.normalize(r) for r in res.returns[: args.ddpm_episodes]])
            )
        print(
            f"{row:<40} {res.normalized_score:6.1f} ± {res.stderr:4.1f}  (n={episodes})  "
            f"{res.seconds_per_decision * 1e3:7.1f} ms/decision"
        )
        table |= {
            "run": str(args.run),
            "seed": args.seed,
            "threads": args.threads,
            "date": date.today().isoformat(),
            "machine": machine(),
            "device": str(pipe.device) if pipe.device.type == "cpu" else torch.cuda.get_device_name(pipe.device),
        }
        atomic_write_json(out_path, table)  # after every row: an interrupted sweep keeps what it measured
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
