"""``ValueGuidedRLPipeline``: diffusers' constructor and call, with the defects fixed.

Differences from ``diffusers.experimental.ValueGuidedRLPipeline`` (each deliberate):

* per-dimension normalization of observations and actions (diffusers: one scalar mean/std for
  all dimensions of a key, diffusers#10636), read from the run folder or fitted from
  ``env.get_dataset()``;
* guidance gradients scaled by the posterior variance of step ``t`` (diffusers:
  ``exp(0.5 * _get_variance(t))``, which is about 1 for every ``t``);
* plans scored by the value network on the finished plans at ``t = 0`` (diffusers: values from
  the guidance pass before the last denoising step);
* batched observations ``[n_envs, obs_dim]`` planned in one diffusion call, DDPM or DDIM, any
  number of inference steps, no progress bar per decision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, DPMSolverMultistepScheduler, UNet1DModel
from diffusers.utils.torch_utils import randn_tensor

from diffplan.config import PlanConfig
from diffplan.cudnn import cudnn_settings
from diffplan.data.normalization import TrajectoryNormalizer
from diffplan.devices import resolve_device
from diffplan.diffusion.conditioning import Constraint, start_state_constraint
from diffplan.diffusion.guidance import value
from diffplan.diffusion.sampling import (
    DenoisingSchedule,
    Guidance,
    StepCallback,
    denoising_schedule,
    draw_step_noise,
    guided_sample,
    run_schedule,
)
from diffplan.envs.specs import action_bounds
from diffplan.io import atomic_write_json, disk_full_reported, replace_dir
from diffplan.models import InverseDynamics, QFunction, StateValue, check_horizon, denoiser_config
from diffplan.planning.graphs import GraphedCall
from diffplan.planning.runs import (
    CRITIC,
    FINE,
    INVERSE_DYNAMICS,
    RUN_INFO,
    STATE_VALUE,
    RunInfo,
    load_components,
    load_optional,
    resolve_run,
)

# A goal plan counts as dynamically consistent when its largest jump between planned steps is at
# most this multiple of the smoothest plan's (plans that must arrive too early jump 3-5x more).
CONSISTENT_SLACK = 1.5

StepEndCallback = Callable[
    ["ValueGuidedRLPipeline", int, int, dict[str, torch.Tensor]], "dict[str, torch.Tensor] | None"
]

# observations (and goals) further than this from the training data, in normalizer units (standard
# deviations, or half-ranges for the limits normalizer), are refused
OBS_LIMIT = 100.0

SAMPLERS = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "dpmsolver++": DPMSolverMultistepScheduler}


@dataclass(frozen=True)
class Plan:
    """Sampled plans in original units, best first.

    With one observation the leading ``n_envs`` axis is absent.

    Attributes:
        actions: ``[n_envs, batch, horizon, act_dim]``.
        observations: ``[n_envs, batch, horizon, obs_dim]``.
        values: ``[n_envs, batch]`` value of each plan, descending. Runs without a value network
            rank by dynamic consistency instead: minus the largest jump between consecutive planned
            states (normalized units), so plans that teleport to an inpainted goal come last. With
            ``goal_arrivals``, the consistent plans (largest jump at most
            :data:`CONSISTENT_SLACK` times the smoothest plan's) score ``1 - arrival / H`` instead,
            so the earliest of them comes first.
        normalized: ``[n_envs, batch, horizon, D]`` normalized plans as the denoiser made them
            (torch; ``D = act_dim + obs_dim``, or ``obs_dim`` for a states-only run, whose actions
            come from its inverse dynamics).
    """

    actions: np.ndarray
    observations: np.ndarray
    values: np.ndarray
    normalized: torch.Tensor


@dataclass(frozen=True)
class Samples:
    """A planning call's sorted plans, still on the device; :attr:`plan` copies them to the host once.

    Attributes:
        normalized: ``[n_envs, batch, H, D]`` normalized plans as the denoiser made them, best first
            (``D = act_dim + obs_dim``, or ``obs_dim`` for a states-only run).
        trajectories: ``[n_envs, batch, H, act_dim + obs_dim]`` in original units (float64;
            inpainted start and goal exact; a states-only run's actions from its inverse dynamics).
        values: ``[n_envs, batch]``, descending.
        act_dim: action dimensions A (the first A channels).
        single: one observation was given (the ``n_envs`` axis is dropped in :attr:`plan`).
    """

    normalized: torch.Tensor
    trajectories: torch.Tensor
    values: torch.Tensor
    act_dim: int
    single: bool

    @cached_property
    def plan(self) -> Plan:
        """The plans in original units as numpy arrays (copied from the device on first access)."""
        traj = self.trajectories.cpu().numpy()
        plan = Plan(
            actions=traj[..., : self.act_dim],
            observations=traj[..., self.act_dim :],
            values=self.values.double().cpu().numpy(),
            normalized=self.normalized,
        )
        if self.single:
            plan = Plan(plan.actions[0], plan.observations[0], plan.values[0], plan.normalized[0])
        return plan

    def best(self) -> np.ndarray:
        """``[n_envs, H, act_dim + obs_dim]`` best plan of each env in original units (one small copy)."""
        return self.trajectories[:, 0].cpu().numpy()


@dataclass(frozen=True)
class _CallSpec:
    """Everything that fixes the shapes and the work of a planning call (the key of a CUDA graph)."""

    n_envs: int
    batch_size: int
    horizon: int
    schedule: DenoisingSchedule
    n_guide_steps: int
    scale: float
    t_stopgrad: int
    scale_grad_by_var: bool
    goal_dims: int
    n_arrivals: int
    rank_by: str


def _normalizer_from_d4rl(env: Any) -> TrajectoryNormalizer:
    data = env.get_dataset()
    return TrajectoryNormalizer.fit(observations=np.asarray(data["observations"]), actions=np.asarray(data["actions"]))


class ValueGuidedRLPipeline(DiffusionPipeline):
    """Value-guided diffusion planner (Janner et al., 2022) as a diffusers pipeline.

    Args:
        value_function: value network ``UNet1DModel`` ``[B, D, H] -> [B, 1]``; ``None`` for
            goal-reaching runs planned by inpainting alone (no guidance, plans left unranked).
        unet: denoiser ``[B, D, H] -> [B, D, H]``: a ``UNet1DModel`` or a
            :class:`~diffplan.transformer.DiT1DModel`; ``D = act_dim + obs_dim``, or ``obs_dim``
            for a states-only run (which needs ``inverse_dynamics`` for its actions).
        scheduler: ``DDPMScheduler`` or ``DDIMScheduler`` whose ``prediction_type`` is the
            denoiser's output.
        env: optional environment; a D4RL env's ``get_dataset()`` is used to fit the normalizer
            when ``normalizer`` is not given.
        normalizer: per-dimension normalizer of observations and actions.
        plan_config: planner defaults used where a call leaves a setting out.
        info: run metadata (env id, dataset, reference scores) when loaded from a run folder.
        inverse_dynamics: action from a state to the next planned one (``replan`` with
            ``actions="inverse"``, and the actions of states-only plans).
        critic: Q-function ranking plans with ``rank_by="q"``.
        state_value: TD-learned state value ranking plans with ``rank_by="state_value"``.
        fine: the fine level of a coarse-to-fine planner (a pipeline of stride 1 whose horizon is
            this run's stride + 1).
    """

    model_cpu_offload_seq = "value_function->unet"
    _optional_components = ["value_function"]

    def __init__(
        self,
        value_function: UNet1DModel | None,
        unet: UNet1DModel,
        scheduler: DDPMScheduler | DDIMScheduler,
        env: Any = None,
        *,
        normalizer: TrajectoryNormalizer | None = None,
        plan_config: PlanConfig | None = None,
        info: RunInfo | None = None,
        inverse_dynamics: InverseDynamics | None = None,
        critic: QFunction | None = None,
        fine: ValueGuidedRLPipeline | None = None,
        state_value: StateValue | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(value_function=value_function, unet=unet, scheduler=scheduler)
        if normalizer is None:
            if env is None or not hasattr(env, "get_dataset"):
                raise ValueError(
                    "expected normalizer=TrajectoryNormalizer(...) or a D4RL env with get_dataset(); got neither"
                )
            normalizer = _normalizer_from_d4rl(env)
        transition = unet.config.in_channels
        if transition not in (normalizer.act_dim + normalizer.obs_dim, normalizer.obs_dim):
            raise ValueError(
                f"the denoiser takes {transition} channels but the normalizer has act_dim {normalizer.act_dim} "
                f"+ obs_dim {normalizer.obs_dim} (or obs_dim alone for states-only plans)"
            )
        if transition == normalizer.obs_dim and inverse_dynamics is None:
            raise ValueError(
                "the denoiser diffuses states only (obs_dim channels): expected inverse_dynamics= to make the "
                "plans' actions, got none"
            )
        if value_function is not None and value_function.config.in_channels != transition:
            raise ValueError(
                f"denoiser takes {transition} channels, value function {value_function.config.in_channels}"
            )
        for name, dims in (
            ("inverse dynamics", None if inverse_dynamics is None else _dims(inverse_dynamics.config)),
            ("critic", None if critic is None else _dims(critic.config)),
            ("state value", None if state_value is None else (int(state_value.config.obs_dim), normalizer.act_dim)),
            ("fine level", None if fine is None else (fine.obs_dim, fine.act_dim)),
        ):
            if dims is not None and dims != (normalizer.obs_dim, normalizer.act_dim):
                raise ValueError(
                    f"the {name} has obs_dim, act_dim {dims} but the normalizer "
                    f"{normalizer.obs_dim}, {normalizer.act_dim}"
                )
        self.env = env
        # not diffusers components: kept out of model_index.json, in subfolders of their own
        self.inverse_dynamics = inverse_dynamics
        self.critic = critic
        self.state_value = state_value
        self.fine = fine
        self.normalizer = normalizer
        self.plan_config = plan_config or PlanConfig()
        self.info = info
        self._samplers: dict[str, Any] = {}
        self._schedules: dict[tuple[int, int], DenoisingSchedule] = {}
        self._masks: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self._norm_key: tuple | None = None
        self._norm_cache: dict[str, torch.Tensor] = {}
        self._horizons_checked: set[int] = set()
        self._graph_mode: str | None = None  # "cuda": capture CUDA graphs; "emulate": the same plumbing, eager
        self._graphs: dict[_CallSpec, GraphedCall] = {}
        self._compiled: dict[str, Any] = {}

    @property
    def obs_dim(self) -> int:
        """Observation dimensions S."""
        return self.normalizer.obs_dim

    @property
    def act_dim(self) -> int:
        """Action dimensions A."""
        return self.normalizer.act_dim

    def plan_stride(self, *, coarse_to_fine: bool | None = None) -> int:
        """Environment steps between the steps of the plans this pipeline returns: the run's stride,
        or the fine level's (1) when it plans coarse-to-fine (``None``: the run's setting)."""
        refine = self.plan_config.coarse_to_fine if coarse_to_fine is None else coarse_to_fine
        if self.fine is not None and refine:
            return self.fine.plan_stride(coarse_to_fine=False)
        return self.info.stride if self.info else 1

    @property
    def plan_act_dim(self) -> int:
        """Action channels of the diffused plans: A, or 0 for a states-only run."""
        return int(self.unet.config.in_channels) - self.obs_dim

    # ------------------------------------------------------------------ loading and saving
    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_model_name_or_path: str | Path,
        *,
        normalizer: TrajectoryNormalizer | None = None,
        env: Any = None,
        device: str | torch.device | None = None,
    ) -> ValueGuidedRLPipeline:
        """Load a run folder (or the name of a run shipped with diffplan).

        A folder written by diffusers' ``save_pretrained`` (no ``diffplan.json``) loads when
        ``normalizer`` (or a D4RL ``env``) is given.

        Raises:
            FileNotFoundError: the folder or a required file is missing.
            ValueError: a file is corrupt, the parts do not fit together, or ``device`` is not on
                this machine.
        """
        target = resolve_device(device) if device is not None else None
        path = resolve_run(pretrained_model_name_or_path)
        unet, value_function, scheduler, info = load_components(path, need_info=normalizer is None and env is None)
        fine = None
        if (path / FINE / RUN_INFO).is_file():
            fine = cls.from_pretrained(path / FINE, normalizer=normalizer, env=env, device=device)
        pipe = cls(
            value_function=value_function,
            unet=unet,
            scheduler=scheduler,
            env=env,
            normalizer=normalizer or (info.normalizer if info else None),
            plan_config=info.plan if info else None,
            info=info,
            inverse_dynamics=load_optional(path, INVERSE_DYNAMICS),
            critic=load_optional(path, CRITIC),
            state_value=load_optional(path, STATE_VALUE),
            fine=fine,
        )
        return pipe.to(target) if target is not None else pipe

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:  # type: ignore[override]
        """Write the diffusers folder and ``diffplan.json`` (atomically, component by component)."""
        import tempfile

        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        parts = ((INVERSE_DYNAMICS, self.inverse_dynamics), (CRITIC, self.critic), (STATE_VALUE, self.state_value))
        models = [m for m in (*self.components.values(), *(m for _, m in parts)) if isinstance(m, torch.nn.Module)]
        needed = sum(p.numel() * p.element_size() for m in models for p in m.parameters())
        with (
            tempfile.TemporaryDirectory(dir=out, prefix=".save-") as tmp,
            disk_full_reported(f"the run folder {out}", out, needed=needed),
        ):
            super().save_pretrained(tmp, safe_serialization=True, **kwargs)
            for sub, part in parts:
                if part is not None:
                    part.save_pretrained(Path(tmp) / sub, safe_serialization=True)
            if self.fine is not None:
                self.fine.save_pretrained(Path(tmp) / FINE)
            for entry in sorted(Path(tmp).iterdir()):
                if entry.is_dir():
                    replace_dir(entry, out / entry.name)
                else:
                    entry.replace(out / entry.name)
        info = self.info or RunInfo(normalizer=self.normalizer, plan=self.plan_config)
        info = replace(info, normalizer=self.normalizer, plan=self.plan_config)
        atomic_write_json(out / "diffplan.json", info.to_dict())

    def inverse_action(self, *, state: np.ndarray, target: np.ndarray, lookahead: np.ndarray) -> np.ndarray:
        """Actions of the run's inverse dynamics: from ``state`` to ``target`` in ``lookahead`` steps.

        Args:
            state: ``[n, obs_dim]`` current states (original units).
            target: ``[n, obs_dim]`` planned states to reach.
            lookahead: ``[n]`` environment steps until ``target`` (``1..stride``).

        Returns:
            ``[n, act_dim]`` actions in original units.

        Raises:
            ValueError: the run has no inverse dynamics model.
        """
        if self.inverse_dynamics is None:
            raise ValueError(
                "this run has no inverse dynamics model (inverse_dynamics/); train one with "
                "`diffplan train ... --resume --train.inverse-steps N` or act with the planned actions"
            )
        norm, device = self.normalizer.observations, self.device

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=torch.float32, device=device)

        now = tensor(norm.normalize(np.atleast_2d(state)))
        with torch.no_grad():
            out = _on_device(self.inverse_dynamics, now)(
                now, tensor(norm.normalize(np.atleast_2d(target))), tensor(np.atleast_1d(lookahead))
            )
        return self.normalizer.actions.unnormalize(out.double().cpu().numpy())

    def compile(self, *, mode: str | None = None) -> ValueGuidedRLPipeline:
        """Plan with ``torch.compile``d networks from now on (weights stay shared).

        Args:
            mode: ``torch.compile`` mode; ``"reduce-overhead"`` uses CUDA graphs on a GPU.

        Returns:
            ``self``, for chaining.
        """
        self._compiled = {
            name: torch.compile(getattr(self, name), mode=mode)
            for name in ("unet", "value_function")
            if getattr(self, name) is not None
        }
        return self

    # ------------------------------------------------------------------ planning
    @property
    def device(self) -> torch.device:
        """Device of the denoiser's weights (read from one parameter, not by walking every module)."""
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point type of the denoiser's weights."""
        return next(self.unet.parameters()).dtype

    def use_cuda_graphs(self, enabled: bool = True) -> ValueGuidedRLPipeline:
        """Capture each fixed-shape planning call as one CUDA graph and replay it (CUDA devices only).

        The first call of each shape (envs, plans, horizon, sampler, steps, guidance, goal, warm
        start) pays the capture (``graph_capture_seconds``); later calls of that shape replay it,
        without Python or kernel-launch overhead. Calls with ``cost``, ``callback_on_step_end``, extra
        ``constraints`` or a non-affine sampler (``dpmsolver++``) run eagerly. Capturing copies
        nothing between host and device, so results equal eager ones up to kernel choice.

        Returns:
            ``self``, for chaining.
        """
        self._graph_mode = "cuda" if enabled else None
        self._graphs.clear()
        return self

    @property
    def graph_capture_seconds(self) -> float:
        """Seconds this process spent capturing CUDA graphs (each shape once)."""
        return sum(g.capture_seconds for g in self._graphs.values())

    def _scheduler_for(self, sampler: str | None) -> Any:
        if sampler is None:
            return self.scheduler
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {sorted(SAMPLERS)}")
        if isinstance(self.scheduler, SAMPLERS[sampler]):
            return self.scheduler
        if sampler not in self._samplers:
            self._samplers[sampler] = SAMPLERS[sampler].from_config(self.scheduler.config)
        return self._samplers[sampler]

    def _schedule(self, sampler: str | None, steps: int) -> tuple[Any, DenoisingSchedule]:
        """The scheduler of ``sampler`` with ``steps`` set, and its constants (computed once)."""
        scheduler = self._scheduler_for(sampler)
        key = (id(scheduler), steps)
        if key not in self._schedules or not self._schedules[key].affine:
            scheduler.set_timesteps(steps)
            self._schedules[key] = denoising_schedule(scheduler)
        return scheduler, self._schedules[key]

    def _stats(self, device: torch.device) -> dict[str, torch.Tensor]:
        """float64 normalizer shifts and scales on ``device`` (``obs_*``: ``[S]``, ``traj_*``: ``[A + S]``)."""
        key = (id(self.normalizer), str(device))
        if self._norm_key != key:
            o, a = self.normalizer.observations, self.normalizer.actions

            def t(v: np.ndarray) -> torch.Tensor:
                return torch.as_tensor(v, dtype=torch.float64, device=device)

            self._norm_cache = {
                "obs_shift": t(o.shift),
                "obs_scale": t(o.scale),
                "traj_shift": t(np.concatenate([a.shift, o.shift])),
                "traj_scale": t(np.concatenate([a.scale, o.scale])),
            }
            self._norm_key = key
        return self._norm_cache

    def _check_obs(
        self, obs: Any, name: str = "observation", *, partial: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Validate ``[dim]`` or ``[n, dim]`` input (``dim = obs_dim``, or ``<= obs_dim`` when ``partial``).

        Returns:
            The input normalized with the first ``dim`` observation dimensions (``[n, dim]``, the
            pipeline's dtype), the input itself (``[n, dim]`` float64), both on the pipeline's
            device, and whether a single ``[dim]`` vector was given.
        """
        try:
            arr = (
                obs.detach().cpu().double().numpy()
                if isinstance(obs, torch.Tensor)
                else np.asarray(obs, dtype=np.float64)
            )
        except (TypeError, ValueError) as err:
            raise ValueError(f"expected {name} to be an array of numbers, got {type(obs).__name__}: {err}") from err
        single = arr.ndim == 1
        width = arr.shape[-1] if arr.ndim in (1, 2) else -1
        ok = 1 <= width <= self.obs_dim if partial else width == self.obs_dim
        if arr.ndim not in (1, 2) or not ok or arr.size == 0:
            expected = f"at most {self.obs_dim}" if partial else f"{self.obs_dim}"
            raise ValueError(f"expected {name} of shape ({expected},) or (n_envs, {expected}), got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf: {arr}")
        norm = self.normalizer.observations
        far = np.abs((np.atleast_2d(arr) - norm.shift[:width]) / norm.scale[:width]).max(axis=0) > OBS_LIMIT
        if far.any():
            raise ValueError(
                f"{name} dimensions {np.flatnonzero(far).tolist()} lie more than {OBS_LIMIT:g} normalizer units from "
                f"the data this run was trained on (got {arr}); the planner's output would be meaningless"
            )
        device = self.device
        raw = torch.as_tensor(np.atleast_2d(arr), device=device)
        stats = self._stats(device)
        normed = (raw - stats["obs_shift"][:width]) / stats["obs_scale"][:width]
        return normed.to(self.dtype), raw, single

    def _goal_mask(
        self, *, n_envs: int, batch_size: int, horizon: int, count: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Arrival step ``[n_envs * batch]`` and held-goal mask ``[n_envs * batch, H]`` on the device (cached)."""
        key = (n_envs, batch_size, horizon, count, str(self.device))
        if key not in self._masks:
            arrival = goal_arrival_steps(horizon=horizon, count=count, batch_size=batch_size).repeat(n_envs)
            held = torch.arange(horizon)[None, :] >= arrival[:, None]
            self._masks[key] = (arrival.to(self.device), held.to(self.device))
        return self._masks[key]

    def plan(
        self,
        obs: Any,
        *,
        goal: Any = None,
        batch_size: int | None = None,
        planning_horizon: int | None = None,
        n_guide_steps: int | None = None,
        scale: float | None = None,
        t_stopgrad: int | None = None,
        scale_grad_by_var: bool | None = None,
        num_inference_steps: int | None = None,
        sampler: str | None = None,
        generator: torch.Generator | None = None,
        constraints: list[Constraint] | None = None,
        init: torch.Tensor | None = None,
        warm_start_steps: int | None = None,
        goal_arrivals: int | None = None,
        rank_by: str | None = None,
        coarse_to_fine: bool | None = None,
        cost: Callable[[np.ndarray], np.ndarray] | None = None,
        callback_on_step_end: StepEndCallback | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("x",),
    ) -> Plan:
        """Sample plans that start at ``obs`` (and end at ``goal``), guided by the value network.

        Args:
            obs: ``[obs_dim]`` or ``[n_envs, obs_dim]`` observations in original units.
            goal: ``[k]`` or ``[n_envs, k]`` (``k <= obs_dim``): the first ``k`` observation
                dimensions to inpaint from each plan's arrival step on (see ``goal_arrivals``; a
                full state, or e.g. a maze position).
            batch_size: plans per observation.
            planning_horizon: plan length H.
            n_guide_steps: value-gradient steps per denoising step (0: unguided).
            scale: guidance step size.
            t_stopgrad: no guidance below this diffusion step.
            scale_grad_by_var: scale gradients by the posterior variance.
            num_inference_steps: denoising steps (default: every training step).
            sampler: ``"ddpm"``, ``"ddim"`` or ``"dpmsolver++"`` (default: the pipeline's scheduler).
            generator: random stream of the initial noise and the sampler's noise.
            constraints: further inpainting constraints on the normalized ``[n_envs * batch]`` plans.
            init: ``[n_envs, H, act_dim + obs_dim]`` normalized clean plans to start from (warm
                start): they are noised to the level of the last ``warm_start_steps`` steps of
                the schedule and denoised from there. ``None``: from pure noise.
            warm_start_steps: denoising steps run from ``init`` (at most ``num_inference_steps``).
            goal_arrivals: with ``goal``: plans reach the goal at this many different steps
                (at most ``H - 1`` and ``batch_size``, evenly spaced, the last one ``H - 1``; plan
                ``b`` uses arrival ``b % n``) and stay there; the earliest consistent arrival is
                ranked first (see :class:`Plan`).
                ``None``: the pipeline's default (``1``: the goal at the last step only).
            rank_by: ``"value"``, ``"q"`` or ``"state_value"`` (see :class:`~diffplan.config.PlanConfig`).
            coarse_to_fine: for a run with a fine level: refine the first coarse step with it
                (the other settings apply to the coarse level; the fine level plans with its own).
            cost: ranking cost of finished plans, subtracted from their values:
                ``cost(observations [n_envs, batch, H, obs_dim]) -> [n_envs, batch]`` in original
                units (e.g. :class:`diffplan.envs.maze.WallCost` for a known maze map).
            callback_on_step_end: diffusers' convention: called as
                ``callback_on_step_end(pipe, i, t, {"x": x})`` after denoising step ``i`` (diffusion
                step ``t``) with the normalized plans ``x: [n_envs * batch, H, act_dim + obs_dim]``;
                an ``"x"`` in the dict it returns replaces the plans (inpainted entries re-imposed).
            callback_on_step_end_tensor_inputs: the tensors passed to it (only ``"x"`` exists).

        Returns:
            The plans, best first (see :class:`Plan`).
        """
        settings = self.plan_config.override(
            batch_size=batch_size,
            planning_horizon=planning_horizon,
            n_guide_steps=n_guide_steps,
            scale=scale,
            t_stopgrad=t_stopgrad,
            scale_grad_by_var=scale_grad_by_var,
            num_inference_steps=num_inference_steps,
            sampler=sampler,
            warm_start_steps=warm_start_steps,
            goal_arrivals=goal_arrivals,
            rank_by=rank_by,
            coarse_to_fine=coarse_to_fine,
        )
        samples = self.sample(
            obs,
            settings=settings,
            goal=goal,
            generator=generator,
            constraints=constraints,
            init=init,
            cost=cost,
            callback=self._step_callback(callback_on_step_end, callback_on_step_end_tensor_inputs),
        )
        return samples.plan

    def _step_callback(
        self, callback_on_step_end: StepEndCallback | None, tensor_inputs: Sequence[str]
    ) -> StepCallback | None:
        """diffusers' ``callback_on_step_end`` as the sampling loop's :data:`StepCallback`."""
        if callback_on_step_end is None:
            return None
        unknown = set(tensor_inputs) - {"x"}
        if unknown:
            raise ValueError(f"callback_on_step_end_tensor_inputs may only name 'x'; got {sorted(unknown)}")

        def step(i: int, t: int, x: torch.Tensor) -> torch.Tensor | None:
            returned = callback_on_step_end(self, i, t, {name: x for name in tensor_inputs})
            return (returned or {}).get("x")

        return step

    def sample(
        self,
        obs: Any,
        *,
        settings: PlanConfig | None = None,
        goal: Any = None,
        generator: torch.Generator | None = None,
        constraints: list[Constraint] | None = None,
        init: torch.Tensor | None = None,
        cost: Callable[[np.ndarray], np.ndarray] | None = None,
        callback: StepCallback | None = None,
    ) -> Samples:
        """:meth:`plan` with its settings as one object, the sorted plans left on the device (see
        :class:`Samples`): what a caller making many decisions uses (e.g.
        :class:`~diffplan.planning.planner.Planner`).

        Args:
            obs: ``[obs_dim]`` or ``[n_envs, obs_dim]`` observations in original units.
            settings: the call's settings (default: the run's, :attr:`plan_config`).
            goal, generator, constraints, init, cost: as in :meth:`plan`.
            callback: called after each denoising step as ``callback(i, t, x)``; a returned tensor
                replaces ``x`` (see :data:`~diffplan.diffusion.sampling.StepCallback`).

        Raises:
            ValueError: a ranking the run has no model for, a warm start of a coarse-to-fine call,
                or inputs of the wrong shape.
        """
        cfg = self.plan_config if settings is None else settings
        if cfg.rank_by == "q" and self.critic is None:
            raise ValueError(
                "rank_by='q' needs a run with a Q-function (critic/); train one with "
                "`diffplan train ... --resume --train.critic-steps N`, or rank by 'value'"
            )
        if cfg.rank_by == "state_value" and self.state_value is None:
            raise ValueError(
                "rank_by='state_value' needs a run with a state value V(s) (state_value/); train one with "
                "`diffplan train ... --resume --train.state-value-steps N`, or rank by 'value'"
            )
        kwargs = dict(goal=goal, generator=generator, constraints=constraints, cost=cost, callback=callback)
        if self.fine is None or not cfg.coarse_to_fine:
            return self._sample_level(obs, cfg=cfg, init=init, **kwargs)
        if init is not None:
            raise ValueError("coarse-to-fine planning starts from noise: no warm start (set warm_start_steps=None)")
        coarse = self._sample_level(obs, cfg=cfg, **kwargs)
        if self.fine.device != self.device or self.fine.dtype != self.dtype:
            self.fine.to(self.device, self.dtype)
        # the fine level plans the first coarse step: from the observation to the best coarse
        # plan's second state (``stride`` environment steps later), which it inpaints at its last step
        waypoint = coarse.trajectories[:, 0, 1, self.act_dim :]
        fine = self.fine.plan_config.override(coarse_to_fine=False)
        return self.fine.sample(obs, settings=fine, goal=waypoint, generator=generator)

    def _sample_level(
        self,
        obs: Any,
        *,
        cfg: PlanConfig,
        goal: Any = None,
        generator: torch.Generator | None = None,
        constraints: list[Constraint] | None = None,
        init: torch.Tensor | None = None,
        cost: Callable[[np.ndarray], np.ndarray] | None = None,
        callback: StepCallback | None = None,
    ) -> Samples:
        """One level's planning call with settings ``cfg`` (see :meth:`sample`)."""
        batch_size, horizon = cfg.batch_size, cfg.planning_horizon
        steps = cfg.num_inference_steps or self.scheduler.config.num_train_timesteps
        self._check_horizon(horizon)
        start, obs_raw, single = self._check_obs(obs)
        n_envs = start.shape[0]
        inputs = {"start": start.repeat_interleave(batch_size, 0)}
        goal_raw, n_arrivals = None, cfg.goal_arrivals or 1
        if goal is not None:
            goal_t, goal_raw, _ = self._check_obs(goal, "goal", partial=True)
            if goal_t.shape[0] not in (1, n_envs):
                raise ValueError(f"expected {n_envs} goals, got {goal_t.shape[0]}")
            goal_raw = goal_raw.expand(n_envs, -1)
            inputs["goal"] = goal_t.expand(n_envs, -1).repeat_interleave(batch_size, 0)
            self._goal_mask(n_envs=n_envs, batch_size=batch_size, horizon=horizon, count=n_arrivals)  # validates
        guide_steps = cfg.n_guide_steps if self.value_function is not None else 0
        scheduler, schedule = self._schedule(cfg.sampler, steps)
        channels = self.plan_act_dim + self.obs_dim
        shape = (n_envs * batch_size, horizon, channels)
        if init is not None:
            if init.shape != (n_envs, horizon, channels):
                raise ValueError(f"expected init plans of shape {(n_envs, horizon, channels)}, got {tuple(init.shape)}")
            k = cfg.warm_start_steps or len(schedule.timesteps)
            if not 1 <= k <= len(schedule.timesteps):
                raise ValueError(f"expected 1 <= warm_start_steps <= {len(schedule.timesteps)}, got {k}")
            schedule = schedule.suffix(k)
            inputs["init"] = init.to(self.device, self.dtype)
        spec = _CallSpec(
            n_envs=n_envs,
            batch_size=batch_size,
            horizon=horizon,
            schedule=schedule,
            n_guide_steps=guide_steps,
            scale=float(cfg.scale),
            t_stopgrad=cfg.t_stopgrad,
            scale_grad_by_var=cfg.scale_grad_by_var,
            goal_dims=0 if goal_raw is None else goal_raw.shape[1],
            n_arrivals=n_arrivals,
            rank_by=cfg.rank_by,
        )
        inputs["x"] = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
        inputs["obs"], inputs["goal_raw"] = obs_raw, goal_raw if goal_raw is not None else obs_raw[:, :0]
        eager = cost is not None or callback is not None or constraints or not schedule.affine
        if not eager:
            inputs["noise"] = draw_step_noise(
                schedule, shape=shape, generator=generator, device=self.device, dtype=self.dtype
            )
        with cudnn_settings(deterministic=True):  # the same seed, the same plans on a GPU too
            if eager or self._graph_mode is None or (self._graph_mode == "cuda" and self.device.type != "cuda"):
                x, traj, values = self._denoise_and_rank(
                    spec,
                    inputs,
                    scheduler=scheduler,
                    generator=generator,
                    constraints=constraints,
                    cost=cost,
                    callback=callback,
                )
            else:
                if spec not in self._graphs:
                    self._graphs[spec] = GraphedCall(
                        lambda i: self._denoise_and_rank(spec, i), inputs, capture=self._graph_mode == "cuda"
                    )
                x, traj, values = self._graphs[spec](inputs)
        return Samples(normalized=x, trajectories=traj, values=values, act_dim=self.act_dim, single=single)

    def _check_horizon(self, horizon: int) -> None:
        if horizon not in self._horizons_checked:
            check_horizon(config=denoiser_config(self.unet), horizon=horizon)
            if self.value_function is not None:
                check_horizon(config=denoiser_config(self.value_function), horizon=horizon, value_network=True)
            self._horizons_checked.add(horizon)

    def _inverse_actions(self, states: torch.Tensor) -> torch.Tensor:
        """Normalized actions ``[N, H, A]`` of normalized planned states ``[N, H, S]``: the inverse
        dynamics from each state to the next (the last step repeats the one before)."""
        model = _on_device(self.inverse_dynamics, states)
        n, horizon, _ = states.shape
        if horizon == 1:
            return torch.zeros((n, 1, self.act_dim), dtype=states.dtype, device=states.device)
        now, nxt = states[:, :-1].reshape(-1, self.obs_dim), states[:, 1:].reshape(-1, self.obs_dim)
        lookahead = torch.full((now.shape[0],), model.config.max_lookahead, device=states.device)
        actions = model(now, nxt, lookahead).view(n, horizon - 1, self.act_dim)
        return torch.cat([actions, actions[:, -1:]], dim=1)

    def _denoise_and_rank(
        self,
        spec: _CallSpec,
        inputs: dict[str, torch.Tensor],
        *,
        scheduler: Any = None,
        generator: torch.Generator | None = None,
        constraints: list[Constraint] | None = None,
        cost: Callable[[np.ndarray], np.ndarray] | None = None,
        callback: StepCallback | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Denoise, score and sort: the part of a planning call that runs on the device.

        With ``cost``, ``callback`` and ``constraints`` unset and an affine schedule, it reads
        only the tensors of ``inputs`` and copies nothing to the host (a CUDA graph can capture it).

        Returns:
            Sorted ``[n_envs, batch, H, D]`` normalized plans, the same in original units (float64,
            inpainted entries exact) and their ``[n_envs, batch]`` values, best first.
        """
        n_envs, batch, horizon, act_dim, schedule = (
            spec.n_envs,
            spec.batch_size,
            spec.horizon,
            self.act_dim,
            spec.schedule,
        )
        planned_act = self.plan_act_dim  # action channels of the diffused plans (0: states only)
        cons = [start_state_constraint(inputs["start"], act_dim=planned_act)]
        arrival = held = None
        if spec.goal_dims:
            arrival, held = self._goal_mask(n_envs=n_envs, batch_size=batch, horizon=horizon, count=spec.n_arrivals)
            cons.append(Constraint(index=held, start=planned_act, values=inputs["goal"]))
        cons += list(constraints or [])
        x = inputs["x"]
        if "init" in inputs:  # the clean plans noised to the first step's level
            clean = inputs["init"].repeat_interleave(batch, 0)
            x = torch.add(clean * schedule.signal[0], x, alpha=schedule.noise_level[0])
        unet: torch.nn.Module = self._compiled.get("unet") or self.unet
        value_function: torch.nn.Module | None = self._compiled.get("value_function", self.value_function)
        guidance = None
        if spec.n_guide_steps > 0:
            guidance = Guidance(
                value_function=value_function,
                n_guide_steps=spec.n_guide_steps,
                scale=spec.scale,
                t_stopgrad=spec.t_stopgrad,
                scale_grad_by_var=spec.scale_grad_by_var,
            )
        if "noise" in inputs:
            x = run_schedule(
                unet=unet,
                schedule=schedule,
                x=x,
                noise=inputs["noise"],
                constraints=cons,
                guidance=guidance,
                callback=callback,
            )
        else:
            x = guided_sample(
                unet=unet,
                scheduler=scheduler,
                x=x,
                constraints=cons,
                guidance=guidance,
                generator=generator,
                callback=callback,
                schedule=schedule,
            )
        with torch.no_grad():
            states = x[..., planned_act:]
            full = x if planned_act else torch.cat([self._inverse_actions(states), states], dim=-1)
            if spec.rank_by == "q":  # the critic on each plan's first state and action
                critic = _on_device(self.critic, x)
                values = critic(states[:, 0], full[:, 0, :act_dim]).view(n_envs, batch)
            elif spec.rank_by == "state_value":  # V summed over the planned states after the start
                values = _on_device(self.state_value, x)(states[:, 1:]).sum(dim=1).view(n_envs, batch)
            elif value_function is None:  # goals by inpainting: the most dynamically consistent plan first
                values = -(states[:, 1:] - states[:, :-1]).norm(dim=-1).amax(dim=1).view(n_envs, batch)
                if arrival is not None and spec.n_arrivals > 1:
                    consistent = values >= CONSISTENT_SLACK * values.amax(dim=1, keepdim=True)
                    early = 1.0 - arrival.to(values.dtype).view(n_envs, batch) / horizon
                    values = torch.where(consistent, early, values)
            else:
                values = value(value_function, x).view(n_envs, batch)
            stats = self._stats(x.device)
            x = x.view(n_envs, batch, horizon, -1)
            traj = full.view(n_envs, batch, horizon, -1).double() * stats["traj_scale"] + stats["traj_shift"]
            # inpainted states are known exactly: undo the round trip through the network's dtype
            traj[:, :, 0, act_dim:] = inputs["obs"][:, None]
            if held is not None:
                cols = slice(act_dim, act_dim + spec.goal_dims)
                goal = inputs["goal_raw"][:, None, None, :].expand(n_envs, batch, horizon, -1)
                traj[..., cols] = torch.where(held.view(n_envs, batch, horizon, 1), goal, traj[..., cols])
            if cost is not None:
                penalty = np.asarray(cost(traj[..., act_dim:].cpu().numpy()), dtype=np.float64).reshape(n_envs, batch)
                values = values - torch.as_tensor(penalty, dtype=values.dtype, device=values.device)
            order = values.argsort(dim=1, descending=True)
            x = torch.gather(x, 1, order[:, :, None, None].expand_as(x))
            traj = torch.gather(traj, 1, order[:, :, None, None].expand_as(traj))
            values = torch.gather(values, 1, order)
        return x.detach(), traj, values.detach()

    def __call__(
        self,
        obs: Any,
        batch_size: int | None = None,
        planning_horizon: int | None = None,
        n_guide_steps: int | None = None,
        scale: float | None = None,
        **kwargs: Any,
    ) -> np.ndarray:
        """First action of the best plan: ``[obs_dim] -> [act_dim]`` or ``[n_envs, obs_dim] -> [n_envs, act_dim]``.

        Same positional signature as diffusers' pipeline; ``None`` takes the run's defaults
        (for the ``paper`` preset: 64, 32, 2, 0.1). Further keywords go to :meth:`plan`.
        The action is clipped to the run's action space. Stateless, as diffusers pipelines are:
        every call plans from noise. Warm starts (a run's
        ``warm_start_steps``) need memory between decisions, which lives in the explicit
        :class:`~diffplan.planning.planner.Planner`.
        """
        kwargs.update(
            {
                k: v
                for k, v in (
                    ("batch_size", batch_size),
                    ("planning_horizon", planning_horizon),
                    ("n_guide_steps", n_guide_steps),
                    ("scale", scale),
                )
                if v is not None
            }
        )
        actions = self.plan(obs, **kwargs).actions[..., 0, 0, :]
        bounds = self._action_bounds()
        return actions if bounds is None else np.clip(actions, *bounds)

    def _action_bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(low, high)`` of the run's action space, ``None`` without an env id."""
        if self.info is None or self.info.env_id is None:
            return None
        return action_bounds(self.info.env_id)


def goal_arrival_steps(*, horizon: int, count: int, batch_size: int) -> torch.Tensor:
    """Arrival step of each of ``batch_size`` goal plans: ``count`` steps (at most ``horizon - 1``
    and ``batch_size``) evenly spaced over ``(0, horizon - 1]``, the last one ``horizon - 1``,
    cycled over the batch.

    Returns:
        ``[batch_size]`` long tensor.

    Raises:
        ValueError: ``count < 1``.
    """
    if count < 1:
        raise ValueError(f"expected goal_arrivals >= 1, got {count}")
    count = min(count, horizon - 1, batch_size)
    steps = torch.linspace(horizon - 1, 0, count + 1)[:count].round().long().flip(0)
    return steps[torch.arange(batch_size) % count]


def _dims(config: Any) -> tuple[int, int]:
    """``(obs_dim, act_dim)`` of a diffusers config."""
    return int(config.obs_dim), int(config.act_dim)


def _on_device(model: Any, like: torch.Tensor) -> Any:
    """``model`` on ``like``'s device and dtype (moved only when it is not there yet)."""
    param = next(model.parameters())
    if param.device != like.device or param.dtype != like.dtype:
        model.to(like.device, like.dtype)
    return model
