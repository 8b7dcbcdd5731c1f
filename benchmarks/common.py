"""What the benchmark scripts share: the repository root, the machine description, the fast planner
settings (read from the presets, not written again) and the stand-in pipelines and data of the speed
benchmarks."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OBS_DIM, ACT_DIM = 11, 3  # Hopper's, for the speed benchmarks' random nets


def fast_settings() -> dict[str, Any]:
    """The fast planner settings of the shipped locomotion runs and of ``small-dit`` (16 plans, one
    value-gradient step, DDIM 5 steps, warm starts of 2 steps): ``diffplan.presets.FAST_PLAN``."""
    from diffplan.presets import FAST_PLAN

    return dict(FAST_PLAN)


def machine() -> str:
    """CPU model, cores and torch build of this machine."""
    import torch

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}"


def sync(device: Any) -> None:
    """Wait for a CUDA device's queued work (timing); nothing on a CPU."""
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


class D4RLStandIn:
    """What diffusers' pipeline reads from a D4RL env (spaces and ``get_dataset()``), random Hopper-sized data."""

    def __init__(self) -> None:
        import gymnasium as gym

        rng = np.random.default_rng(0)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,))
        self.action_space = gym.spaces.Box(-1, 1, (ACT_DIM,))
        self.data = {"observations": rng.normal(size=(1000, OBS_DIM)), "actions": rng.uniform(-1, 1, (1000, ACT_DIM))}

    def get_dataset(self) -> dict:
        return self.data


def build_pipes(run: str | None, device: str) -> tuple[Any, Any]:
    """Ours and diffusers' pipeline on the same nets (a trained run's, or random `paper` nets)."""
    import torch
    from diffusers.experimental import ValueGuidedRLPipeline as DiffusersPipeline

    from diffplan.data.normalization import TrajectoryNormalizer
    from diffplan.models import build_denoiser, build_scheduler, build_value_function
    from diffplan.planning import ValueGuidedRLPipeline
    from diffplan.presets import PRESETS

    env = D4RLStandIn()
    if run:
        ours = ValueGuidedRLPipeline.from_pretrained(run)
    else:
        torch.manual_seed(0)
        preset = PRESETS["paper"]
        unet = build_denoiser(config=preset.unet, transition_dim=OBS_DIM + ACT_DIM)
        vf = build_value_function(config=preset.value_net, transition_dim=OBS_DIM + ACT_DIM)
        sched = build_scheduler(num_train_timesteps=20, beta_schedule="squaredcos_cap_v2", prediction_type="sample")
        norm = TrajectoryNormalizer.fit(observations=env.data["observations"], actions=env.data["actions"])
        ours = ValueGuidedRLPipeline(value_function=vf, unet=unet, scheduler=sched, normalizer=norm)
    theirs = DiffusersPipeline(value_function=ours.value_function, unet=ours.unet, scheduler=ours.scheduler, env=env)
    return ours.to(device), theirs.to(device)


def random_hopper_dataset(root: Path, steps: int = 3000) -> str:
    """A random-policy Hopper-v5 Minari dataset in ``root`` (MINARI_DATASETS_PATH is set to it)."""
    from diffplan.collect.collect import collect

    os.environ["MINARI_DATASETS_PATH"] = str(root)
    collect(
        env_id="Hopper-v5", behavior="random", steps=steps, seed=0, dataset_id="bench/hopper-random-v0", progress=False
    )
    return "bench/hopper-random-v0"
