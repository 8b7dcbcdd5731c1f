"""What value-gradient guidance does to a locomotion run's plans: predicted value, physical
consistency and falls of the best plan at the first decision, by guidance scale.

For each of `--episodes` start states (reset seeds `--seed` + i) and each scale, the run plans once
(the fast settings of results/plan_speed.json, cold start) and the best plan's actions are executed
open loop in the environment from the same start. Reported per scale: the value network's
prediction for that plan, the reward its actions collect open loop over the horizon, the distance
between the planned and the simulated state after the first action and on average over the plan
(original units; large = the plan is not what its own actions do), and the fraction of plans whose
actions make the body fall within the horizon.

    python benchmarks/guidance_check.py --run runs/grid/walker2d-medium-replay/diffplan/seed0

Merges {run: {scale: {"predicted_value", "open_loop_reward", "first_state_error", "state_error",
"falls"}, ...}} into results/guidance_check.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, machine  # noqa: E402

OUT = ROOT / "results" / "guidance_check.json"


def main() -> None:
    import torch

    from diffplan.envs.specs import make_env
    from diffplan.io import update_json
    from diffplan.planning import ValueGuidedRLPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run folder or shipped run name")
    parser.add_argument("--scales", type=float, nargs="*", default=[0.0, 0.03, 0.1, 1.0])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)

    pipe = ValueGuidedRLPipeline.from_pretrained(args.run)
    if pipe.info is None or pipe.info.env_id is None or pipe.value_function is None:
        raise ValueError(f"{args.run} records no environment or has no value network; expected a locomotion run")
    fast = json.loads((ROOT / "results" / "plan_speed.json").read_text())["fast_config"]
    fast = {k: v for k, v in fast.items() if k != "warm_start_steps"}  # one stateless call per start
    env = make_env(pipe.info.env_id)
    record: dict[str, object] = {}
    for scale in args.scales:
        predicted, rewards, first, errors, falls = [], [], [], [], []
        for i in range(args.episodes):
            obs, _ = env.reset(seed=args.seed + i)
            plan = pipe.plan(obs, **fast, scale=scale, generator=torch.Generator().manual_seed(args.seed + i))
            actions, planned = plan.actions[0], plan.observations[0]  # [H, act_dim], [H, obs_dim]
            env.reset(seed=args.seed + i)
            dist, total, fell = [], 0.0, False
            for k in range(len(actions) - 1):
                sim, reward, fell, _, _ = env.step(actions[k])
                dist.append(float(np.linalg.norm(sim - planned[k + 1])))
                total += float(reward)
                if fell:
                    break
            predicted.append(float(plan.values[0]))
            rewards.append(total)
            first.append(dist[0])
            errors.append(float(np.mean(dist)))
            falls.append(fell)
        record[str(scale)] = {
            "predicted_value": float(np.mean(predicted)),
            "open_loop_reward": float(np.mean(rewards)),
            "first_state_error": float(np.mean(first)),
            "state_error": float(np.mean(errors)),
            "falls": float(np.mean(falls)),
        }
        print(f"scale {scale:<5}: {record[str(scale)]}", flush=True)
    env.close()
    record |= {
        "episodes": args.episodes,
        "seed": args.seed,
        "settings": fast,
        "date": date.today().isoformat(),
        "machine": f"{machine()}, 1 thread",
    }
    update_json(args.out, [str(args.run)], record)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
