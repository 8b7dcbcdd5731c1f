"""Named presets: ``tiny`` (tests), ``small`` (trains on 2 CPU cores), ``paper`` (published Hopper H32)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from diffplan.config import DiffusionConfig, PlanConfig, Preset, TrainConfig, UNetConfig


def _maze(
    name: str, *, horizon: int, steps: int, channels: tuple[int, ...], train_steps: int, stride: int = 1
) -> Preset:
    """Maze2D-style preset: limits normalizer, no value network (goals by inpainting), an inverse
    dynamics model for ``replan`` with ``actions="inverse"``, 8 goal arrival steps."""
    return Preset(
        name=name,
        unet=UNetConfig(block_out_channels=channels),
        value_net=UNetConfig(block_out_channels=channels),
        diffusion=DiffusionConfig(num_train_timesteps=steps, action_weight=1.0),
        train=TrainConfig(
            horizon=horizon,
            stride=stride,
            batch_size=32,
            denoiser_steps=train_steps,
            value_steps=0,
            inverse_steps=4_000,
            gradient_accumulation_steps=1,
            ema_start=1_000,
        ),
        plan=PlanConfig(batch_size=32, planning_horizon=horizon, n_guide_steps=0, goal_arrivals=8),
        normalizer="limits",
    )


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        unet=UNetConfig(block_out_channels=(16, 32)),
        value_net=UNetConfig(block_out_channels=(16, 32)),
        train=TrainConfig(
            horizon=8,
            batch_size=16,
            learning_rate=1e-3,
            denoiser_steps=200,
            value_steps=200,
            gradient_accumulation_steps=1,
            ema_start=20,
            checkpoint_every=100,
            log_every=10,
        ),
        plan=PlanConfig(batch_size=8, planning_horizon=8),
    ),
    "small": Preset(
        name="small",
        unet=UNetConfig(block_out_channels=(32, 64, 128)),
        value_net=UNetConfig(block_out_channels=(32, 64, 128)),
        train=TrainConfig(
            horizon=32,
            batch_size=64,
            learning_rate=2e-4,
            denoiser_steps=20_000,
            value_steps=10_000,
            gradient_accumulation_steps=1,
            ema_start=1_000,
            checkpoint_every=1_000,
        ),
    ),
    # The published Hopper H32 configuration (jannerm/diffuser config/locomotion.py; the
    # diffusers hub checkpoint hopper-medium-v2 hor32): 4 blocks (32, 64, 128, 256).
    "paper": Preset(
        name="paper",
        unet=UNetConfig(block_out_channels=(32, 64, 128, 256)),
        value_net=UNetConfig(block_out_channels=(32, 64, 128, 256)),
        train=TrainConfig(horizon=32, batch_size=32, denoiser_steps=1_000_000, value_steps=200_000),
    ),
    # Maze2D sizes of the paper (jannerm/diffuser config/maze2d.py: dim_mults (1, 4, 8)).
    "maze-umaze": _maze("maze-umaze", horizon=128, steps=64, channels=(32, 128, 256), train_steps=2_000_000),
    "maze-medium": _maze("maze-medium", horizon=256, steps=256, channels=(32, 128, 256), train_steps=2_000_000),
    "maze-large": _maze("maze-large", horizon=384, steps=256, channels=(32, 128, 256), train_steps=2_000_000),
    # Train on CPU cores: a smaller net, 32 diffusion steps, and a stride (one planned step per 4 or 8
    # environment steps) so that 48-64 planned steps span the paper's 128-384 environment steps.
    "maze-umaze-small": _maze(
        "maze-umaze-small", horizon=48, stride=4, steps=32, channels=(32, 64, 128), train_steps=10_000
    ),
    "maze-medium-small": _maze(
        "maze-medium-small", horizon=48, stride=8, steps=32, channels=(32, 64, 128), train_steps=10_000
    ),
    "maze-large-small": _maze(
        "maze-large-small", horizon=64, stride=8, steps=32, channels=(32, 64, 128), train_steps=10_000
    ),
}


def get_preset(name: str, **train_overrides: Any) -> Preset:
    """Look up a preset by name, optionally overriding ``TrainConfig`` fields.

    Args:
        name: one of :data:`PRESETS` (``tiny``, ``small``, ``paper``, ``maze-*``).
        **train_overrides: ``TrainConfig`` fields to replace (e.g. ``denoiser_steps=500``).

    Raises:
        ValueError: unknown preset name or unknown override field.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    preset = PRESETS[name]
    if train_overrides:
        unknown = set(train_overrides) - set(TrainConfig.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}")
        train = replace(preset.train, **train_overrides)
        preset = replace(preset, train=train, plan=replace(preset.plan, planning_horizon=train.horizon))
    return preset
