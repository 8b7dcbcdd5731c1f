"""Seconds per decision: diffusers' ValueGuidedRLPipeline vs ours on the same `paper` weights.

Identical settings: 64 plans, horizon 32, 20 DDPM steps, 2 guide steps, scale 0.1, Hopper
dimensions. Both pipelines share one randomly initialised denoiser, value network and scheduler
(timing does not depend on training). Also measures training steps/s of the `small` and `paper`
presets on a generated random-policy Hopper-v5 dataset.

    python benchmarks/plan_speed.py [--threads 2] [--decisions 5] [--train-steps 30]

Prints a table and writes results/plan_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

OBS_DIM, ACT_DIM = 11, 3
ROOT = Path(__file__).resolve().parents[1]


class _D4RLStandIn:
    """What diffusers' pipeline reads from a D4RL env (spaces and get_dataset())."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,))
        self.action_space = gym.spaces.Box(-1, 1, (ACT_DIM,))
        self.data = {"observations": rng.normal(size=(1000, OBS_DIM)), "actions": rng.uniform(-1, 1, (1000, ACT_DIM))}

    def get_dataset(self) -> dict:
        return self.data


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def plan_speed(decisions: int) -> dict:
    import tqdm
    from diffusers.experimental import ValueGuidedRLPipeline as DiffusersPipeline

    from diffplan.data.normalization import TrajectoryNormalizer
    from diffplan.models import build_denoiser, build_scheduler, build_value_function
    from diffplan.planning import ValueGuidedRLPipeline
    from diffplan.presets import PRESETS

    preset = PRESETS["paper"]
    torch.manual_seed(0)
    unet = build_denoiser(config=preset.unet, transition_dim=OBS_DIM + ACT_DIM)
    vf = build_value_function(config=preset.value, transition_dim=OBS_DIM + ACT_DIM)
    sched = build_scheduler(num_train_timesteps=20, beta_schedule="squaredcos_cap_v2", prediction_type="sample")
    env = _D4RLStandIn()
    theirs = DiffusersPipeline(value_function=vf, unet=unet, scheduler=sched, env=env)
    norm = TrajectoryNormalizer.fit(observations=env.data["observations"], actions=env.data["actions"])
    ours = ValueGuidedRLPipeline(value_function=vf, unet=unet, scheduler=sched, normalizer=norm)
    obs = env.data["observations"][0]
    settings = dict(batch_size=64, planning_horizon=32, n_guide_steps=2, scale=0.1)
    # diffusers draws a tqdm bar per decision; silence it (its cost is negligible either way)
    orig_tqdm = tqdm.tqdm
    tqdm.tqdm = lambda it, *a, **k: it  # type: ignore[assignment]
    try:
        theirs(obs, **settings)  # warm-up
        ours(obs, **settings)
        t_theirs, t_ours = [], []
        for _ in range(decisions):  # interleaved, so both see the same machine state
            t_theirs += _time(lambda: theirs(obs, **settings), 1)
            t_ours += _time(lambda: ours(obs, **settings), 1)
    finally:
        tqdm.tqdm = orig_tqdm
    med_t, med_o = float(np.median(t_theirs)), float(np.median(t_ours))
    return {
        "settings": settings | {"num_inference_steps": 20, "sampler": "ddpm", "preset": "paper"},
        "diffusers_seconds_per_decision": med_t,
        "ours_seconds_per_decision": med_o,
        "speedup": med_t / med_o,
        "diffusers_all": t_theirs,
        "ours_all": t_ours,
    }


def train_speed(steps: int) -> dict:
    from diffplan.collect.collect import collect
    from diffplan.presets import get_preset
    from diffplan.training import train

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MINARI_DATASETS_PATH"] = str(Path(tmp) / "datasets")
        collect(env_id="Hopper-v5", behavior="random", steps=3000, seed=0, dataset_id="bench/hopper-random-v0",
                progress=False)
        for name in ("small", "paper"):
            preset = get_preset(name, denoiser_steps=steps, value_steps=steps, checkpoint_every=10 * steps)
            res = train(dataset="bench/hopper-random-v0", out=Path(tmp) / name, preset=preset, device="cpu",
                        progress=False)
            out[name] = {"denoiser_steps_per_s": res.steps_per_second["unet"],
                         "value_steps_per_s": res.steps_per_second["value_function"],
                         "batch_size": preset.train.batch_size,
                         "gradient_accumulation_steps": preset.train.gradient_accumulation_steps,
                         "steps_measured": steps}
    return out


def machine() -> str:
    """CPU model, core count and torch version, for the record."""
    model = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decisions", type=int, default=5)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--out", default=str(ROOT / "results" / "plan_speed.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "torch_threads": args.threads,
        "plan": plan_speed(args.decisions),
        "train": train_speed(args.train_steps),
    }
    p, t = result["plan"], result["train"]
    print(f"{'configuration':<44}{'s / decision':>14}")
    print(f"{'diffusers ValueGuidedRLPipeline (paper nets)':<44}{p['diffusers_seconds_per_decision']:>14.3f}")
    print(f"{'diffplan, identical settings':<44}{p['ours_seconds_per_decision']:>14.3f}")
    print(f"speed-up: {p['speedup']:.2f}x")
    for name, row in t.items():
        print(f"train {name:<6} denoiser {row['denoiser_steps_per_s']:.1f} steps/s, value {row['value_steps_per_s']:.1f} "
              f"steps/s (batch {row['batch_size']} x accumulation {row['gradient_accumulation_steps']})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
