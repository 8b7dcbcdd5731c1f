"""Named presets: ``tiny`` (tests), ``small`` (trains on 2 CPU cores), ``paper`` (published Hopper H32)."""

from __future__ import annotations

from dataclasses import replace

from diffplan.config import PlanConfig, Preset, TrainConfig, UNetConfig

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        unet=UNetConfig(block_out_channels=(16, 32)),
        value=UNetConfig(block_out_channels=(16, 32)),
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
        value=UNetConfig(block_out_channels=(32, 64, 128)),
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
        value=UNetConfig(block_out_channels=(32, 64, 128, 256)),
        train=TrainConfig(horizon=32, batch_size=32, denoiser_steps=1_000_000, value_steps=200_000),
    ),
}


def get_preset(name: str, **train_overrides: int | float) -> Preset:
    """Look up a preset by name, optionally overriding ``TrainConfig`` fields.

    Args:
        name: ``tiny``, ``small`` or ``paper``.
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
