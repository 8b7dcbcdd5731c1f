"""Typed, frozen configuration dataclasses shared by training, planning and the CLI.

Every config round-trips through plain JSON (``to_dict`` / ``from_dict``) so that it can be stored
in a run folder's ``diffplan.json`` without pickling anything.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, get_args

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build a dataclass from a dict, turning lists back into tuples and rejecting unknown keys."""
    names = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; expected {sorted(names)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return cls(**values)


def _overridden(config: T, given: dict[str, Any], what: str, *, none_keeps: bool = True) -> T:
    """``config`` with the ``given`` fields replaced (``None``: keep, unless ``none_keeps`` is false);
    unknown names are a ValueError."""
    names = {f.name for f in fields(config)}
    unknown = set(given) - names
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)}; expected some of {sorted(names)}")
    return replace(config, **{k: v for k, v in given.items() if v is not None or not none_keeps})


class JsonConfig:
    """``to_dict`` / ``from_dict`` for flat frozen config dataclasses (lists come back as tuples)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of this object."""
        return asdict(cast("DataclassInstance", self))

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Rebuild from :meth:`to_dict` output (ValueError on a malformed record)."""
        return _from_dict(cls, data)


@dataclass(frozen=True)
class UNetConfig(JsonConfig):
    """Size of a temporal U-Net (denoiser or value network), a diffusers ``UNet1DModel``.

    Attributes:
        block_out_channels: channels of each down block; every entry a multiple of 8 (group norm).
        layers_per_block: residual layers per block.
        act_fn: activation of the time embedding and the output blocks.
    """

    block_out_channels: tuple[int, ...] = (32, 64, 128, 256)
    layers_per_block: int = 1
    act_fn: str = "mish"


@dataclass(frozen=True)
class DiTConfig(JsonConfig):
    """Size of a 1-D diffusion transformer denoiser (:class:`diffplan.transformer.DiT1DModel`).

    Attributes:
        hidden_size: width of the token embeddings (a multiple of ``num_heads``).
        depth: transformer blocks.
        num_heads: attention heads.
        mlp_ratio: hidden units of each feed-forward layer per embedding unit.
        kind: ``"dit"``: tells this record from a :class:`UNetConfig` in a stored preset.
    """

    hidden_size: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: int = 4
    kind: Literal["dit"] = "dit"

    def __post_init__(self) -> None:
        for name in ("hidden_size", "depth", "num_heads", "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"expected DiTConfig.{name} >= 1 (an integer), got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"expected hidden_size divisible by num_heads, got {self.hidden_size} and {self.num_heads}"
            )


DenoiserConfig = UNetConfig | DiTConfig


def denoiser_config_from_dict(data: dict[str, Any]) -> DenoiserConfig:
    """A stored denoiser record: a :class:`DiTConfig` when it says ``kind: "dit"``, else a :class:`UNetConfig`."""
    if data.get("kind") == "dit":
        return DiTConfig.from_dict(data)
    return UNetConfig.from_dict(data)


@dataclass(frozen=True)
class DiffusionConfig(JsonConfig):
    """The noise schedule and the denoiser's training objective.

    Attributes:
        num_train_timesteps: diffusion steps T.
        beta_schedule: diffusers beta schedule name (cosine = ``squaredcos_cap_v2``).
        prediction_type: what the denoiser predicts: ``"sample"`` (x0) or ``"epsilon"``.
        action_weight: loss weight of the first action's dimensions.
        states_only: diffuse the observations alone (Decision Diffuser, Diffusion Veteran); the
            plans' actions then come from the run's inverse dynamics model (which needs
            ``TrainConfig.inverse_steps > 0``).
        value_weight: weight each window's loss by ``exp(value_weight * (v - 1))``, where ``v`` is
            the window's discounted return-to-go mapped from the dataset's ``[min, max]`` to
            ``[-1, 1]`` (advantage-weighted regression, as Diffusion Veteran's planner: the best
            windows weigh 1, the worst ``exp(-2 * value_weight)``). ``0``: every window weighs 1.

    Raises:
        ValueError: ``value_weight`` negative or not finite.
    """

    num_train_timesteps: int = 20
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "sample"
    action_weight: float = 10.0
    states_only: bool = False
    value_weight: float = 0.0

    def __post_init__(self) -> None:
        w = self.value_weight
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0 <= w < math.inf:
            raise ValueError(f"expected value_weight >= 0 (a finite number), got {w!r}")


@dataclass(frozen=True)
class ValueConfig(JsonConfig):
    """How value targets are made from rewards.

    Attributes:
        discount: gamma of the discounted return-to-go.
        termination_penalty: added to the reward of a terminal (not truncated) last step.
        expectile: of the state value ``V(s)`` learned by temporal differences
            (``TrainConfig.state_value_steps``): ``0.5`` is plain TD (the value of the data's
            behaviour, Diffusion Veteran's), above it an optimistic expectile of the TD targets
            (IQL's asymmetric squared loss, applied to ``r + gamma V'(s')``).
        target_decay: Polyak decay of the TD target network ``V'`` (the EMA of ``V``).

    Raises:
        ValueError: ``expectile`` outside ``(0, 1)`` or ``target_decay`` outside ``[0, 1)``.
    """

    discount: float = 0.997
    termination_penalty: float = -100.0
    expectile: float = 0.5
    target_decay: float = 0.995

    def __post_init__(self) -> None:
        for name, lo, closed in (("expectile", 0.0, False), ("target_decay", 0.0, True)):
            v = getattr(self, name)
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            if not number or not (lo <= v < 1 if closed else lo < v < 1):
                raise ValueError(f"expected {lo} {'<=' if closed else '<'} {name} < 1, got {v!r}")


# the optimiser step counts of the trained phases: what a resumed run may raise
STEP_COUNTS = ("denoiser_steps", "value_steps", "inverse_steps", "critic_steps", "state_value_steps")


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """Optimisation settings, shared by the denoiser and value phases.

    Attributes:
        horizon: window length H (planned steps).
        stride: environment steps between consecutive planned steps (1: every step). A stride
            ``s`` lets a plan of H steps cover ``(H - 1) * s`` environment steps; executed plans
            hold each planned action for ``s`` steps (the long-horizon maze presets use 4-8).
        batch_size: windows per micro-batch.
        learning_rate: Adam learning rate (constant).
        denoiser_steps: optimiser steps of the denoiser.
        value_steps: optimiser steps of the value network.
        inverse_steps: optimiser steps of the inverse dynamics model (0: none), which turns
            planned states into actions in ``replan`` mode with ``actions="inverse"`` (and
            always, for ``states_only`` runs).
        critic_steps: optimiser steps of the Q-function ``Q(s, a)`` fitted to the discounted
            returns of the dataset (0: none), which ranks plans with ``PlanConfig.rank_by="q"``.
        state_value_steps: optimiser steps of the state value ``V(s)`` learned by temporal
            differences on the dataset's transitions (0: none; see :class:`ValueConfig`), which
            ranks plans by the sum of ``V`` over their planned states with
            ``PlanConfig.rank_by="state_value"`` (Diffusion Veteran's selection).
        gradient_accumulation_steps: micro-batches per optimiser step.
        ema_decay: EMA decay of the weights used for planning.
        ema_start: optimiser step after which the EMA starts averaging (before it copies).
        checkpoint_every: optimiser steps between resumable checkpoints.
        log_every: optimiser steps between TensorBoard scalars.
        seed: seed of initialisation, batches and noise.

    Raises:
        ValueError: a count below its least value (or not an integer), a learning rate not > 0, or
            an EMA decay outside ``[0, 1)``.
    """

    horizon: int = 32
    stride: int = 1
    batch_size: int = 32
    learning_rate: float = 2e-4
    denoiser_steps: int = 200_000
    value_steps: int = 200_000
    inverse_steps: int = 0
    critic_steps: int = 0
    state_value_steps: int = 0
    gradient_accumulation_steps: int = 2
    ema_decay: float = 0.995
    ema_start: int = 2_000
    checkpoint_every: int = 1_000
    log_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        least = {"horizon": 1, "stride": 1, "batch_size": 1, "denoiser_steps": 1, "value_steps": 0,
                 "inverse_steps": 0, "critic_steps": 0, "state_value_steps": 0, "gradient_accumulation_steps": 1,
                 "ema_start": 0, "checkpoint_every": 1, "log_every": 1, "seed": 0}  # fmt: skip
        for name, low in least.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"expected {name} >= {low}, got {value!r} (a count: an integer)")
        for name, lo, hi in (("learning_rate", 0.0, math.inf), ("ema_decay", 0.0, 1.0)):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and lo < value < hi
            if not ok and not (name == "ema_decay" and value == 0.0):
                raise ValueError(f"expected {lo} < {name} < {hi}, got {value!r}")


Sampler = Literal["ddpm", "ddim", "dpmsolver++"]
Ranking = Literal["value", "q", "state_value"]
SAMPLER_NAMES: tuple[str, ...] = get_args(Sampler)
RANKINGS: tuple[str, ...] = get_args(Ranking)

# planner setting -> (kind, least value); "count?" may also be None (the run's "unset")
_PLAN_RULES: dict[str, tuple[str, float]] = {
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


def _check_plan_setting(name: str, value: Any) -> None:
    """One planner setting's rule: counts are integers (not booleans or floats) in their range,
    numbers finite and not negative, names among the known ones."""
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
    kind, least = _PLAN_RULES[name]
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


@dataclass(frozen=True)
class PlanConfig(JsonConfig):
    """Planner settings (the keyword arguments of ``ValueGuidedRLPipeline.plan``), checked when made:
    a bad value is a ``ValueError`` naming the setting, what was expected and what arrived.

    Attributes:
        batch_size: plans sampled per decision.
        planning_horizon: plan length; must equal the trained horizon.
        n_guide_steps: value-gradient steps per denoising step.
        scale: guidance step size.
        t_stopgrad: no guidance at diffusion steps below this.
        scale_grad_by_var: multiply the gradient by the posterior variance (paper); else by 1.
        num_inference_steps: denoising steps (``None``: all training steps).
        sampler: ``"ddpm"``, ``"ddim"`` or ``"dpmsolver++"``.
        warm_start_steps: denoising steps of a warm-started decision (``None``: no warm start).
        replan_threshold: a warm start is abandoned (plan from scratch) when the observed state
            differs from the one the previous plan predicted by more than this (max abs,
            normalized units).
        goal_arrivals: with a goal, spread the plans over this many arrival steps: plan ``j``
            reaches the goal at step ``k_j`` (at most ``H - 1`` and ``batch_size`` steps, evenly
            spaced up to the last step; plan ``j`` uses arrival ``j % n``) and stays there,
            and the earliest arrival among the dynamically consistent plans is taken (``None``:
            every plan reaches the goal at its last step).
        rank_by: what orders the finished plans: ``"value"`` (the value network on the clean
            plans; dynamic consistency for runs without one) or ``"q"`` (the run's Q-function on
            each plan's first state and action). With ``n_guide_steps=0`` this is Monte Carlo
            sampling with selection (Diffusion Veteran): plans sampled without value gradients,
            the one the critic scores best kept. ``"state_value"``: the sum of the run's
            TD-learned state value ``V(s)`` over each plan's planned states after the first (the
            selection of Diffusion Veteran's locomotion planner).
        coarse_to_fine: for runs with a fine level (``fine/``): plan at the coarse stride, then
            plan the first coarse step again at full resolution with the fine level, its end
            inpainted to the coarse plan's second state (DiffuserLite); the fine plans are
            returned. The other settings apply to the coarse level; the fine level plans with its
            own. ``False``: the coarse level alone.
    """

    batch_size: int = 64
    planning_horizon: int = 32
    n_guide_steps: int = 2
    scale: float = 0.1
    t_stopgrad: int = 2
    scale_grad_by_var: bool = True
    num_inference_steps: int | None = None
    sampler: Sampler = "ddpm"
    warm_start_steps: int | None = None
    replan_threshold: float = 1.0
    goal_arrivals: int | None = None
    rank_by: Ranking = "value"
    coarse_to_fine: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_plan_setting(f.name, getattr(self, f.name))

    def override(self, **given: Any) -> PlanConfig:
        """These settings with ``given`` ones replaced (``None``: keep this object's value).

        Raises:
            ValueError: an unknown setting, or a value out of its range (same words for every entry
                point: ``pipe()``, ``pipe.plan``, ``Planner``, ``evaluate`` and the CLI).
        """
        return _overridden(self, given, "planner settings")

    def replaced(self, **given: Any) -> PlanConfig:
        """These settings with ``given`` ones replaced, a ``None`` included (``warm_start_steps=None``:
        no warm start, also where this object has warm starts; :meth:`override` keeps them).

        Raises:
            ValueError: as :meth:`override`.
        """
        return _overridden(self, given, "planner settings", none_keeps=False)

    def changes_from(self, base: PlanConfig) -> dict[str, Any]:
        """The settings that differ from ``base`` (field order), e.g. to record what a caller chose."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(base, f.name)}


Mode = Literal["replan", "track"]
Actions = Literal["plan", "inverse"]
Task = Literal["multi", "single"]


@dataclass(frozen=True)
class EvalConfig(JsonConfig):
    """How a run is evaluated when a caller leaves it out: the execution and the episodes of the
    figure the run reports (stored in its ``diffplan.json``, so that ``diffplan evaluate NAME`` with
    no flags measures that figure again), checked when made.

    Attributes:
        mode: ``"replan"`` (closed loop) or ``"track"`` (plan once, PD-follow the plan; mazes).
        actions: ``replan`` mode: the plan's actions or the run's inverse dynamics.
        replan_every: steps between plans in ``replan`` mode (``None``: the run's stride).
        task: PointMaze: ``"multi"`` (a random goal per episode) or ``"single"`` (the fixed goal).
        walls: PointMaze: plans through the map's walls rank last.
        episodes: number of episodes.
        seed: episode ``i`` is reset with ``seed + i`` (also the planner's seed).
        num_envs: envs stepped together and planned in one batched call (the planner's noise
            depends on it).
    """

    mode: Mode = "replan"
    actions: Actions = "plan"
    replan_every: int | None = None
    task: Task = "multi"
    walls: bool = False
    episodes: int = 10
    seed: int = 0
    num_envs: int = 1

    def __post_init__(self) -> None:
        for name, allowed in (("mode", Mode), ("actions", Actions), ("task", Task)):
            if getattr(self, name) not in get_args(allowed):
                raise ValueError(f"expected {name} among {list(get_args(allowed))}, got {getattr(self, name)!r}")
        if not isinstance(self.walls, bool):
            raise ValueError(f"expected walls to be True or False, got {self.walls!r}")
        for name, least in (("replan_every", 1), ("episodes", 1), ("seed", 0), ("num_envs", 1)):
            value = getattr(self, name)
            if name == "replan_every" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"expected {name} >= {least}, got {value!r} (an integer)")

    def override(self, **given: Any) -> EvalConfig:
        """These settings with ``given`` ones replaced (``None``: keep this object's value)."""
        return _overridden(self, given, "evaluation settings")


@dataclass(frozen=True)
class Preset:
    """A named bundle of model sizes and training settings.

    Attributes:
        name: preset name (``tiny``, ``small``, ``paper``).
        unet: denoiser size.
        value_net: value network size.
        diffusion: noise schedule and objective.
        value_targets: how the value network's targets are made from rewards.
        train: optimisation settings.
        plan: planner defaults stored with the run.
        normalizer: ``"gaussian"`` (locomotion) or ``"limits"`` (mazes: ``[min, max] -> [-1, 1]``).
        fine: the fine level of a coarse-to-fine planner (trained into the run's ``fine/``
            folder after the coarse level): stride 1, horizon the coarse stride + 1 (``None``: one level).
        description: what the preset is for (shown by ``diffplan presets``).

    Raises:
        ValueError: a ``states_only`` preset without inverse dynamics steps, or a fine level whose
            horizon is not the coarse stride + 1 or whose stride is not 1.
    """

    name: str
    unet: DenoiserConfig
    value_net: UNetConfig
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    value_targets: ValueConfig = field(default_factory=ValueConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    normalizer: str = "gaussian"
    fine: Preset | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.diffusion.states_only and self.train.inverse_steps < 1:
            raise ValueError(
                f"preset {self.name!r} diffuses states only: expected inverse_steps >= 1 (the actions come "
                f"from the inverse dynamics), got {self.train.inverse_steps}"
            )
        if self.fine is not None:
            want = self.train.stride + 1
            if self.fine.train.stride != 1 or self.fine.train.horizon != want:
                raise ValueError(
                    f"preset {self.name!r}: expected a fine level of stride 1 and horizon {want} (the coarse "
                    f"stride + 1), got stride {self.fine.train.stride} and horizon {self.fine.train.horizon}"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of this object."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preset:
        """Rebuild from :meth:`to_dict` output (ValueError on a malformed record).

        Records written before the rename (``value`` for ``value_net``, ``values`` for
        ``value_targets``) are read too.
        """
        fine = data.get("fine")
        return cls(
            name=data["name"],
            unet=denoiser_config_from_dict(data["unet"]),
            value_net=UNetConfig.from_dict(data["value_net"] if "value_net" in data else data["value"]),
            diffusion=DiffusionConfig.from_dict(data["diffusion"]),
            value_targets=ValueConfig.from_dict(data["value_targets"] if "value_targets" in data else data["values"]),
            train=TrainConfig.from_dict(data["train"]),
            plan=PlanConfig.from_dict(data["plan"]),
            normalizer=data.get("normalizer", "gaussian"),
            fine=None if fine is None else cls.from_dict(fine),
            description=data.get("description", ""),
        )
