"""Named presets: ``tiny`` (tests), ``small`` (trains on 2 CPU cores), ``paper`` (published Hopper H32),
the maze presets, and the planner choices of later diffusion planners on top of ``small`` (a
transformer denoiser, states-only plans with inverse dynamics actions, Monte Carlo selection by a
critic, coarse-to-fine planning), each alone and combined (``diffplan presets`` lists them)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from diffplan.config import DiffusionConfig, DiTConfig, PlanConfig, Preset, TrainConfig, UNetConfig, ValueConfig

# the transformer of the DiT presets: 4 blocks of width 64 (0.32 M weights for Hopper, the small U-Net
# has 1.0 M): it trains at 19 steps/s on one CPU core, the U-Net at 22 (width 128: 7 steps/s)
SMALL_DIT = DiTConfig(hidden_size=64, depth=4, num_heads=4)
# the transformer of the ``dv`` preset: Diffusion Veteran's depth 2 and 32-unit heads at width 96 (its own is
# 256): a horizon-4 step at batch 128 trains at ~46 steps/s on one core (width 128: ~31, width 64 x depth 4:
# ~38; measured beside another job, RESULTS.md "The dv preset"), so 100,000 steps take ~37 minutes
DV_DIT = DiTConfig(hidden_size=96, depth=2, num_heads=3)


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


def _with(base: Preset, name: str, description: str, **parts: Any) -> Preset:
    """``base`` with some parts replaced; ``train``/``plan``/``diffusion`` given as dicts of changed fields."""
    for key in ("train", "plan", "diffusion"):
        if isinstance(parts.get(key), dict):
            parts[key] = replace(getattr(base, key), **parts[key])
    return replace(base, name=name, description=description, **parts)


def _fine_level(base: Preset, *, horizon: int) -> Preset:
    """The fine level of a coarse-to-fine preset: stride 1, ``horizon`` steps (the coarse stride + 1),
    a transformer (any horizon) without a value network, ranked by dynamic consistency, and
    inverse dynamics; it is trained for a quarter of the coarse level's denoiser steps."""
    return _with(
        base,
        f"{base.name}/fine",
        "fine level",
        unet=SMALL_DIT,
        diffusion={"states_only": True},
        train={"horizon": horizon, "stride": 1, "denoiser_steps": base.train.denoiser_steps // 4,
               "value_steps": 0, "inverse_steps": 4_000, "critic_steps": 0},
        plan={"batch_size": 16, "planning_horizon": horizon, "n_guide_steps": 0, "sampler": "ddim",
              "num_inference_steps": 5, "warm_start_steps": None, "rank_by": "value"},
        fine=None,
    )  # fmt: skip


# the shipped locomotion runs' planner defaults (results/plan_speed.json fast_config): 16 plans, one
# value-gradient step, DDIM 5 steps, warm starts of 2 steps; the benchmarks read them from here
FAST_PLAN: dict[str, Any] = {
    "batch_size": 16, "n_guide_steps": 1, "sampler": "ddim", "num_inference_steps": 5, "warm_start_steps": 2
}  # fmt: skip


def _add_planner_choices(presets: dict[str, Preset]) -> None:
    """The later planners' choices on top of ``small``, alone (ablations) and combined."""
    small = presets["small"]
    fast = FAST_PLAN
    # Monte Carlo sampling with selection: no value gradients, DDIM 5 steps, 32 plans, the best by a critic
    mc = {"n_guide_steps": 0, "batch_size": 32, "sampler": "ddim", "num_inference_steps": 5, "warm_start_steps": None}
    states = {"states_only": True}
    inverse = {"inverse_steps": 4_000, "critic_steps": 4_000}
    presets["small-dit"] = _with(
        small,
        "small-dit",
        "small with a transformer denoiser (DiT) instead of the U-Net, planned with the fast settings; the "
        "locomotion preset of choice on CPU cores (RESULTS.md: Planner choices)",
        unet=SMALL_DIT,
        plan=fast,
    )
    presets["small-states"] = _with(
        small,
        "small-states",
        "small diffusing states only; actions from a learned inverse dynamics model",
        diffusion=states,
        train=inverse,
    )
    presets["small-mc"] = _with(
        small,
        "small-mc",
        "small planned by Monte Carlo selection: 32 unguided plans, the best by the value network (or a "
        "Q-function: --plan.rank-by q)",
        train={"critic_steps": 4_000},
        plan=mc,
    )
    coarse = _with(small, "small-c2f", "", train={"horizon": 16, "stride": 4})
    presets["small-c2f"] = _with(
        coarse,
        "small-c2f",
        "small planned coarse-to-fine: 16 steps of stride 4 (61 env steps), the first refined by a fine level",
        fine=_fine_level(coarse, horizon=5),
        plan={"warm_start_steps": None},
    )
    presets["dv-small"] = _with(
        small,
        "dv-small",
        "the choices of Diffusion Veteran at small size: a DiT diffusing states only, inverse dynamics "
        "actions, Monte Carlo selection by a critic",
        unet=SMALL_DIT,
        diffusion=states,
        train=inverse,
        plan=mc,
    )
    presets["dv"] = Preset(
        name="dv",
        description="Diffusion Veteran's locomotion recipe sized for one CPU core: a DiT (width 96, depth 2) "
        "diffusing states only over 4 steps (noise prediction, value-weighted loss, EMA 0.9999), 50 unguided "
        "candidates (DDIM 20 steps), the one with the largest sum of a TD-learned V(s) over its planned states "
        "kept, actions from inverse dynamics",
        unet=DV_DIT,
        value_net=small.value_net,  # unused: no value network (value_steps 0)
        diffusion=DiffusionConfig(prediction_type="epsilon", states_only=True, value_weight=2.0),
        value_targets=ValueConfig(discount=0.997, termination_penalty=-100.0, expectile=0.5),
        train=TrainConfig(
            horizon=4,
            batch_size=128,
            learning_rate=2e-4,
            denoiser_steps=100_000,
            value_steps=0,
            inverse_steps=20_000,
            state_value_steps=50_000,
            gradient_accumulation_steps=1,
            ema_decay=0.9999,
            ema_start=1_000,
            checkpoint_every=5_000,
            log_every=500,
        ),
        plan=PlanConfig(
            batch_size=50,
            planning_horizon=4,
            n_guide_steps=0,
            sampler="ddim",
            num_inference_steps=20,
            rank_by="state_value",
        ),
    )
    for maze in ("maze-umaze-small", "maze-medium-small", "maze-large-small"):
        base = presets[maze]  # already unguided, ranked by dynamic consistency, with inverse dynamics
        presets[f"{maze}-dit"] = _with(base, f"{maze}-dit", f"{maze} with a DiT denoiser", unet=SMALL_DIT)
        presets[f"{maze}-states"] = _with(
            base, f"{maze}-states", f"{maze} diffusing positions and velocities only", diffusion=states
        )
        presets[f"{maze}-dv"] = _with(
            base,
            f"{maze}-dv",
            f"{maze} with the choices of Diffusion Veteran: a DiT diffusing states only, inverse dynamics actions",
            unet=SMALL_DIT,
            diffusion=states,
        )


_add_planner_choices(PRESETS)


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
