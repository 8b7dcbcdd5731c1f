"""config.py and presets.py: typed configs that round-trip through JSON."""

import json
from dataclasses import FrozenInstanceError

import pytest

from diffplan.config import PlanConfig, Preset, TrainConfig, UNetConfig
from diffplan.presets import PRESETS, get_preset


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_json(name: str) -> None:
    preset = PRESETS[name]
    again = Preset.from_dict(json.loads(json.dumps(preset.to_dict())))
    assert again == preset
    assert isinstance(again.value_net.block_out_channels, tuple)  # lists come back as tuples
    assert type(again.unet) is type(preset.unet)  # a DiT stays a DiT


def test_configs_are_frozen_and_reject_unknown_fields() -> None:
    with pytest.raises(FrozenInstanceError):
        PlanConfig().batch_size = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"unknown TrainConfig fields \['batchsize'\]"):
        TrainConfig.from_dict({"batchsize": 3})
    with pytest.raises(ValueError, match=r"unknown UNetConfig fields \['depth'\]"):
        UNetConfig.from_dict({"depth": 3})


def test_preset_records_of_older_versions_are_read() -> None:
    record = PRESETS["small"].to_dict()
    record["value"], record["values"] = record.pop("value_net"), record.pop("value_targets")
    assert Preset.from_dict(record) == PRESETS["small"]


def test_get_preset_overrides_training_and_keeps_the_planner_horizon_in_step() -> None:
    preset = get_preset("tiny", horizon=16, denoiser_steps=7)
    assert preset.train.horizon == 16 and preset.plan.planning_horizon == 16 and preset.train.denoiser_steps == 7
    assert PRESETS["tiny"].train.horizon == 8  # the registry is untouched
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        get_preset("huge")
    with pytest.raises(ValueError, match=r"unknown training settings \['planning_horizon'\]"):
        get_preset("tiny", planning_horizon=4)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"denoiser_steps": -5}, r"expected denoiser_steps >= 1, got -5"),
        ({"denoiser_steps": 0}, r"expected denoiser_steps >= 1, got 0"),
        ({"batch_size": 2.5}, r"expected batch_size >= 1, got 2.5"),
        ({"value_steps": -1}, r"expected value_steps >= 0, got -1"),
        ({"learning_rate": float("nan")}, r"expected 0.0 < learning_rate < inf, got nan"),
        ({"ema_decay": 1.0}, r"expected 0.0 < ema_decay < 1.0, got 1.0"),
    ],
)
def test_training_settings_that_make_no_sense_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        get_preset("tiny", **overrides)


def test_plan_config_is_checked_when_made_and_overridden_by_name() -> None:
    import pytest

    from diffplan.config import PlanConfig

    with pytest.raises(ValueError, match=r"expected batch_size >= 1, got 0 \(a count: an integer\)"):
        PlanConfig(batch_size=0)
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        PlanConfig(sampler="euler")  # type: ignore[arg-type]
    base = PlanConfig(batch_size=8)
    changed = base.override(batch_size=4, sampler="ddim", num_inference_steps=None)  # None: keep
    assert (changed.batch_size, changed.sampler, changed.num_inference_steps) == (4, "ddim", None)
    assert changed.changes_from(base) == {"batch_size": 4, "sampler": "ddim"}
    with pytest.raises(ValueError, match=r"unknown planner settings \['bogus'\]"):
        base.override(bogus=1)
    with pytest.raises(ValueError, match=r"expected scale >= 0.0, got nan \(a finite number\)"):
        base.override(scale=float("nan"))


def test_eval_config_is_checked_when_made_and_overridden_by_name() -> None:
    import pytest

    from diffplan.config import EvalConfig

    with pytest.raises(ValueError, match=r"expected mode among \['replan', 'track'\], got 'loop'"):
        EvalConfig(mode="loop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"expected replan_every >= 1, got 0 \(an integer\)"):
        EvalConfig(replan_every=0)
    with pytest.raises(ValueError, match="expected walls to be True or False, got 1"):
        EvalConfig(walls=1)  # type: ignore[arg-type]
    stored = EvalConfig(episodes=20, seed=5000, num_envs=10, task="single")
    assert stored.override(episodes=3, task=None) == EvalConfig(episodes=3, seed=5000, num_envs=10, task="single")
    assert EvalConfig.from_dict(stored.to_dict()) == stored
    with pytest.raises(ValueError, match=r"unknown evaluation settings \['bogus'\]"):
        stored.override(bogus=1)


def test_replaced_sets_a_none_where_override_keeps_the_stored_value() -> None:
    """``warm_start_steps=None`` turns warm starts off through ``replaced`` but not ``override``: the
    trap that made the benchmarks' "cold" DDPM row warm-started."""
    stored = PlanConfig(warm_start_steps=2, num_inference_steps=5)
    row = {"warm_start_steps": None, "num_inference_steps": 20, "sampler": "ddpm"}
    assert stored.override(**row).warm_start_steps == 2
    cold = stored.replaced(**row)
    assert (cold.warm_start_steps, cold.num_inference_steps, cold.sampler) == (None, 20, "ddpm")
    with pytest.raises(ValueError, match=r"unknown planner settings \['warm_starts'\]"):
        stored.replaced(warm_starts=None)
    with pytest.raises(ValueError, match=r"expected num_inference_steps >= 1, got 0"):
        stored.replaced(num_inference_steps=0)
