"""The one check of planner settings, shared by ``pipe()``, ``pipe.plan``, ``Planner`` and the CLI.

A setting left out (``None``) takes the run's stored value; a given one must make sense: counts are
integers (not booleans or floats) in their range, numbers finite and not negative, the sampler a
known one. A bad value is a ``ValueError`` naming the setting, what was expected and what arrived,
with the same words whichever entry point it came through.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any

from diffplan.config import PlanConfig

SAMPLER_NAMES = ("ddpm", "ddim", "dpmsolver++")
RANKINGS = ("value", "q", "state_value")

# setting -> (kind, least value); "count?" may also be None (the run's "unset")
_RULES: dict[str, tuple[str, float]] = {
    "batch_size": ("count", 1),
    "planning_horizon": ("count", 1),
    "n_guide_steps": ("count", 0),
    "t_stopgrad": ("count", 0),
    "num_inference_steps": ("count?", 1),
    "warm_start_steps": ("count?", 1),
    "goal_arrivals": ("count?", 1),
    "scale": ("number", 0.0),
    "replan_threshold": ("threshold", 0.0),
}


def _check(name: str, value: Any) -> None:
    if name == "sampler":
        if value not in SAMPLER_NAMES:
            raise ValueError(f"unknown sampler {value!r}; expected one of {sorted(SAMPLER_NAMES)}")
        return
    if name == "rank_by":
        if value not in RANKINGS:
            raise ValueError(f"unknown rank_by {value!r}; expected one of {list(RANKINGS)}")
        return
    if name in ("scale_grad_by_var", "coarse_to_fine"):
        if not isinstance(value, bool):
            raise ValueError(f"expected {name} to be True or False, got {value!r}")
        return
    kind, least = _RULES[name]
    if kind == "count?" and value is None:
        return
    if kind.startswith("count"):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"expected {name} >= {int(least)}, got {value!r} (a count: an integer)")
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    allowed_inf = kind == "threshold"  # inf: always warm-start
    if not number or math.isnan(value) or (math.isinf(value) and not allowed_inf) or value < least:
        finite = "a number" if allowed_inf else "a finite number"
        raise ValueError(f"expected {name} >= {least}, got {value!r} ({finite})")


def resolve_settings(defaults: PlanConfig, **given: Any) -> PlanConfig:
    """The settings of one call: ``given`` (``None``: the default) over ``defaults``, each checked.

    Raises:
        ValueError: an unknown setting, or a value out of its range (see the module docstring).
    """
    names = {f.name for f in fields(PlanConfig)}
    unknown = set(given) - names
    if unknown:
        raise ValueError(f"unknown planner settings {sorted(unknown)}; expected some of {sorted(names)}")
    settings = replace(defaults, **{k: v for k, v in given.items() if v is not None})
    for name in names:
        _check(name, getattr(settings, name))
    return settings
