"""Shared fixtures: a tiny random-policy Hopper-v5 Minari dataset and a tiny trained run.

Everything is generated in temporary folders; nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

DATASET_ID = "test/hopper-random-v0"


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def minari_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private MINARI_DATASETS_PATH for the whole session."""
    root = tmp_path_factory.mktemp("minari")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    return root


@pytest.fixture(scope="session")
def hopper_dataset(minari_root: Path) -> str:
    """A few random-policy Hopper-v5 episodes (800 steps) as a Minari dataset."""
    from diffplan.collect.collect import collect

    collect(env_id="Hopper-v5", behavior="random", steps=800, seed=0, dataset_id=DATASET_ID, progress=False)
    return DATASET_ID


@pytest.fixture(scope="session")
def tiny_run(hopper_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run folder trained for a few steps on ``hopper_dataset``."""
    from diffplan.presets import get_preset
    from diffplan.training import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(
        dataset=hopper_dataset,
        out=out,
        preset=get_preset("tiny", denoiser_steps=300, value_steps=300),
        device="cpu",
        progress=False,
    )
    return out


@pytest.fixture(scope="session")
def maze_run(minari_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny PointMaze U-Maze run (limits normalizer, inverse dynamics) on 900 waypoint steps."""
    from dataclasses import replace

    from diffplan.collect.collect import collect
    from diffplan.presets import get_preset
    from diffplan.training import train

    collect(
        env_id="PointMaze_UMaze-v3",
        behavior="waypoint",
        steps=900,
        seed=0,
        dataset_id="test/umaze-tiny-v0",
        progress=False,
    )
    out = tmp_path_factory.mktemp("maze") / "run"
    preset = replace(get_preset("tiny", denoiser_steps=40, value_steps=20, inverse_steps=300), normalizer="limits")
    train(dataset="test/umaze-tiny-v0", out=out, preset=preset, device="cpu", progress=False)
    return out


TINY_DIT = {"hidden_size": 16, "depth": 1, "num_heads": 2}


@pytest.fixture(scope="session")
def states_run(hopper_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Diffusion-Veteran-style run: a DiT diffusing states only, inverse dynamics, a Q-function."""
    from dataclasses import replace

    from diffplan.config import DiTConfig
    from diffplan.presets import get_preset
    from diffplan.training import train

    tiny = get_preset("tiny", denoiser_steps=60, value_steps=40, inverse_steps=200, critic_steps=200)
    preset = replace(tiny, unet=DiTConfig(**TINY_DIT), diffusion=replace(tiny.diffusion, states_only=True))
    out = tmp_path_factory.mktemp("runs") / "states"
    train(dataset=hopper_dataset, out=out, preset=preset, device="cpu", progress=False)
    return out


@pytest.fixture(scope="session")
def dv_run(hopper_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``dv`` preset at test size: a tiny DiT on states over 4 steps (noise prediction, value-weighted
    loss), inverse dynamics and a TD-learned state value; planned by its own defaults."""
    from dataclasses import replace

    from diffplan.config import DiTConfig
    from diffplan.presets import get_preset
    from diffplan.training import train

    dv = get_preset("dv", batch_size=16, denoiser_steps=40, inverse_steps=100, state_value_steps=200)
    preset = replace(dv, unet=DiTConfig(**TINY_DIT), plan=replace(dv.plan, batch_size=6, num_inference_steps=4))
    out = tmp_path_factory.mktemp("runs") / "dv"
    train(dataset=hopper_dataset, out=out, preset=preset, device="cpu", progress=False)
    return out


@pytest.fixture(scope="session")
def c2f_run(hopper_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny coarse-to-fine run: a U-Net of stride 2 over 8 steps, and a DiT fine level of 3 steps."""
    from dataclasses import replace

    from diffplan.config import DiTConfig
    from diffplan.presets import get_preset
    from diffplan.training import train

    tiny = get_preset("tiny", denoiser_steps=40, value_steps=20, stride=2)
    fine = get_preset("tiny", horizon=3, denoiser_steps=40, value_steps=0, inverse_steps=100)
    fine = replace(
        fine, name="tiny/fine", unet=DiTConfig(**TINY_DIT), diffusion=replace(fine.diffusion, states_only=True)
    )
    out = tmp_path_factory.mktemp("runs") / "c2f"
    train(dataset=hopper_dataset, out=out, preset=replace(tiny, fine=fine), device="cpu", progress=False)
    return out
