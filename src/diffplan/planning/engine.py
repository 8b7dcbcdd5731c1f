"""The device side of a planning call: schedulers and their constants, goal masks, CUDA graphs and
compiled networks (cached per shape), denoising with inpainting and guidance, ranking, and the
composition of a coarse-to-fine call from two levels.

:class:`PlanEngine` belongs to one :class:`~diffplan.planning.pipeline.ValueGuidedRLPipeline` and
reads its registered models from it at each call (so ``pipe.to()`` and replaced components are
seen); the pipeline holds the components and the settings and turns a call into a ``PlanConfig``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from numpy.typing import ArrayLike

from diffplan.config import PlanConfig
from diffplan.cudnn import cudnn_settings
from diffplan.diffusion.conditioning import Constraint, start_state_constraint
from diffplan.diffusion.sampling import (
    DenoisingSchedule,
    Guidance,
    StepCallback,
    denoising_schedule,
    draw_step_noise,
    guided_sample,
    run_schedule,
)
from diffplan.models import check_horizon, denoiser_config
from diffplan.planning.graphs import GraphedCall
from diffplan.planning.plans import Samples, goal_arrival_steps
from diffplan.planning.ranking import check_ranker, inverse_actions, plan_values

if TYPE_CHECKING:
    from diffplan.planning.pipeline import ValueGuidedRLPipeline

StepEndCallback = Callable[
    ["ValueGuidedRLPipeline", int, int, dict[str, torch.Tensor]], "dict[str, torch.Tensor] | None"
]
Scheduler: TypeAlias = DDPMScheduler | DDIMScheduler | DPMSolverMultistepScheduler
SAMPLERS: dict[str, type[Scheduler]] = {
    "ddpm": DDPMScheduler,
    "ddim": DDIMScheduler,
    "dpmsolver++": DPMSolverMultistepScheduler,
}


def step_callback(
    pipe: ValueGuidedRLPipeline, callback_on_step_end: StepEndCallback | None, tensor_inputs: Sequence[str]
) -> StepCallback | None:
    """diffusers' ``callback_on_step_end(pipe, i, t, {"x": x})`` as the sampling loop's :data:`StepCallback`.

    Raises:
        ValueError: ``tensor_inputs`` names a tensor other than ``"x"``.
    """
    if callback_on_step_end is None:
        return None
    unknown = set(tensor_inputs) - {"x"}
    if unknown:
        raise ValueError(f"callback_on_step_end_tensor_inputs may only name 'x'; got {sorted(unknown)}")

    def step(i: int, t: int, x: torch.Tensor) -> torch.Tensor | None:
        returned = callback_on_step_end(pipe, i, t, {name: x for name in tensor_inputs})
        return (returned or {}).get("x")

    return step


@dataclass(frozen=True)
class CallSpec:
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


class PlanEngine:
    """Runs one level's planning calls for ``pipe``, with what it caches between calls.

    Args:
        pipe: the pipeline whose models plan.

    Attributes:
        graph_mode: ``"cuda"``: capture each call shape as a CUDA graph; ``"emulate"``: the same
            static-buffer plumbing run eagerly (tests on a CPU); ``None``: eager.
        graphs: captured calls by shape.
        compiled: ``torch.compile``d ``unet`` / ``value_function`` used instead of the originals.
    """

    def __init__(self, pipe: ValueGuidedRLPipeline) -> None:
        self.pipe = pipe
        self.samplers: dict[str, Scheduler] = {}
        self.schedules: dict[tuple[int, int], DenoisingSchedule] = {}
        self.masks: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.horizons_checked: set[int] = set()
        self.graph_mode: str | None = None
        self.graphs: dict[CallSpec, GraphedCall] = {}
        self.compiled: dict[str, Any] = {}

    def compile(self, *, mode: str | None, backend: str) -> None:
        """Use ``torch.compile``d ``unet`` and ``value_function`` from now on (weights stay shared)."""
        self.compiled = {
            name: torch.compile(getattr(self.pipe, name), mode=mode, backend=backend)
            for name in ("unet", "value_function")
            if getattr(self.pipe, name) is not None
        }

    def use_cuda_graphs(self, enabled: bool) -> None:
        """Capture each call shape as a CUDA graph from now on (``False``: eager); drops captured graphs."""
        self.graph_mode = "cuda" if enabled else None
        self.graphs.clear()

    @property
    def graph_capture_seconds(self) -> float:
        """Seconds spent capturing this engine's CUDA graphs."""
        return sum(g.capture_seconds for g in self.graphs.values())

    def scheduler_for(self, sampler: str | None) -> Scheduler:
        if sampler is None:
            return self.pipe.scheduler
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {sorted(SAMPLERS)}")
        if isinstance(self.pipe.scheduler, SAMPLERS[sampler]):
            return self.pipe.scheduler
        if sampler not in self.samplers:
            self.samplers[sampler] = SAMPLERS[sampler].from_config(self.pipe.scheduler.config)
        return self.samplers[sampler]

    def schedule(self, sampler: str | None, steps: int) -> tuple[Scheduler, DenoisingSchedule]:
        """The scheduler of ``sampler`` with ``steps`` set, and its constants (computed once)."""
        scheduler = self.scheduler_for(sampler)
        key = (id(scheduler), steps)
        if key not in self.schedules or not self.schedules[key].affine:
            scheduler.set_timesteps(steps)
            self.schedules[key] = denoising_schedule(scheduler)
        return scheduler, self.schedules[key]

    def goal_mask(self, *, n_envs: int, batch_size: int, horizon: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Arrival step ``[n_envs * batch]`` and held-goal mask ``[n_envs * batch, H]`` on the device (cached)."""
        key = (n_envs, batch_size, horizon, count, str(self.pipe.device))
        if key not in self.masks:
            arrival = goal_arrival_steps(horizon=horizon, count=count, batch_size=batch_size).repeat(n_envs)
            held = torch.arange(horizon)[None, :] >= arrival[:, None]
            self.masks[key] = (arrival.to(self.pipe.device), held.to(self.pipe.device))
        return self.masks[key]

    def sample(
        self,
        obs: ArrayLike,
        *,
        cfg: PlanConfig,
        goal: ArrayLike | None = None,
        generator: torch.Generator | None = None,
        constraints: list[Constraint] | None = None,
        init: torch.Tensor | None = None,
        cost: Callable[[np.ndarray], np.ndarray] | None = None,
        callback: StepCallback | None = None,
    ) -> Samples:
        """A planning call with settings ``cfg``: this level's, or coarse-to-fine through the run's
        fine level (see :meth:`~diffplan.planning.pipeline.ValueGuidedRLPipeline.sample`)."""
        pipe = self.pipe
        check_ranker(cfg.rank_by, critic=pipe.critic, state_value=pipe.state_value)
        level = partial(self.sample_level, goal=goal, generator=generator, constraints=constraints, cost=cost,
                        callback=callback)  # fmt: skip
        if pipe.fine is None or not cfg.coarse_to_fine:
            return level(obs, cfg=cfg, init=init)
        if init is not None:
            raise ValueError("coarse-to-fine planning starts from noise: no warm start (set warm_start_steps=None)")
        coarse = level(obs, cfg=cfg)
        if pipe.fine.device != pipe.device or pipe.fine.dtype != pipe.dtype:
            pipe.fine.to(pipe.device, pipe.dtype)
        # the fine level plans the first coarse step: from the observation to the best coarse
        # plan's second state (``stride`` environment steps later), which it inpaints at its last step
        waypoint = coarse.trajectories[:, 0, 1, pipe.act_dim :]
        fine = pipe.fine.plan_config.override(coarse_to_fine=False)
        return pipe.fine.sample(obs, settings=fine, goal=waypoint, generator=generator)

    def sample_level(
        self,
        obs: ArrayLike,
        *,
        cfg: PlanConfig,
        goal: ArrayLike | None = None,
        generator: torch.Generator | None = None,
        constraints: list[Constraint] | None = None,
        init: torch.Tensor | None = None,
        cost: Callable[[np.ndarray], np.ndarray] | None = None,
        callback: StepCallback | None = None,
    ) -> Samples:
        """One level's planning call with settings ``cfg``."""
        pipe = self.pipe
        batch_size, horizon = cfg.batch_size, cfg.planning_horizon
        steps = cfg.num_inference_steps or pipe.scheduler.config.num_train_timesteps
        self.check_plan_horizon(horizon)
        start, obs_raw, single = pipe.inputs.observations(obs, device=pipe.device, dtype=pipe.dtype)
        n_envs = start.shape[0]
        inputs = {"start": start.repeat_interleave(batch_size, 0)}
        goal_raw, n_arrivals = None, cfg.goal_arrivals or 1
        if goal is not None:
            goal_t, goal_raw, _ = pipe.inputs.observations(
                goal, device=pipe.device, dtype=pipe.dtype, name="goal", partial=True
            )
            if goal_t.shape[0] not in (1, n_envs):
                raise ValueError(f"expected {n_envs} goals, got {goal_t.shape[0]}")
            goal_raw = goal_raw.expand(n_envs, -1)
            inputs["goal"] = goal_t.expand(n_envs, -1).repeat_interleave(batch_size, 0)
            self.goal_mask(n_envs=n_envs, batch_size=batch_size, horizon=horizon, count=n_arrivals)  # validates
        guide_steps = cfg.n_guide_steps if pipe.value_function is not None else 0
        scheduler, schedule = self.schedule(cfg.sampler, steps)
        channels = pipe.plan_act_dim + pipe.obs_dim
        shape = (n_envs * batch_size, horizon, channels)
        if init is not None:
            if init.shape != (n_envs, horizon, channels):
                raise ValueError(f"expected init plans of shape {(n_envs, horizon, channels)}, got {tuple(init.shape)}")
            k = cfg.warm_start_steps or len(schedule.timesteps)
            if not 1 <= k <= len(schedule.timesteps):
                raise ValueError(f"expected 1 <= warm_start_steps <= {len(schedule.timesteps)}, got {k}")
            schedule = schedule.suffix(k)
            inputs["init"] = init.to(pipe.device, pipe.dtype)
        spec = CallSpec(
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
        inputs["x"] = randn_tensor(shape, generator=generator, device=pipe.device, dtype=pipe.dtype)
        inputs["obs"], inputs["goal_raw"] = obs_raw, goal_raw if goal_raw is not None else obs_raw[:, :0]
        eager = cost is not None or callback is not None or constraints or not schedule.affine
        if not eager:
            inputs["noise"] = draw_step_noise(
                schedule, shape=shape, generator=generator, device=pipe.device, dtype=pipe.dtype
            )
        with cudnn_settings(deterministic=True):  # the same seed, the same plans on a GPU too
            if eager or self.graph_mode is None or (self.graph_mode == "cuda" and pipe.device.type != "cuda"):
                x, traj, values = self.denoise_and_rank(
                    spec,
                    inputs,
                    scheduler=scheduler,
                    generator=generator,
                    constraints=constraints,
                    cost=cost,
                    callback=callback,
                )
            else:
                if spec not in self.graphs:
                    self.graphs[spec] = GraphedCall(
                        lambda i: self.denoise_and_rank(spec, i), inputs, capture=self.graph_mode == "cuda"
                    )
                x, traj, values = self.graphs[spec](inputs)
        return Samples(normalized=x, trajectories=traj, values=values, act_dim=pipe.act_dim, single=single)

    def check_plan_horizon(self, horizon: int) -> None:
        if horizon not in self.horizons_checked:
            check_horizon(config=denoiser_config(self.pipe.unet), horizon=horizon)
            if self.pipe.value_function is not None:
                check_horizon(config=denoiser_config(self.pipe.value_function), horizon=horizon, value_network=True)
            self.horizons_checked.add(horizon)

    def denoise_and_rank(
        self,
        spec: CallSpec,
        inputs: dict[str, torch.Tensor],
        *,
        scheduler: Scheduler | None = None,
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
        pipe = self.pipe
        n_envs, batch, horizon, act_dim, schedule = (
            spec.n_envs,
            spec.batch_size,
            spec.horizon,
            pipe.act_dim,
            spec.schedule,
        )
        planned_act = pipe.plan_act_dim  # action channels of the diffused plans (0: states only)
        cons = [start_state_constraint(inputs["start"], act_dim=planned_act)]
        arrival = held = None
        if spec.goal_dims:
            arrival, held = self.goal_mask(n_envs=n_envs, batch_size=batch, horizon=horizon, count=spec.n_arrivals)
            cons.append(Constraint(index=held, start=planned_act, values=inputs["goal"]))
        cons += list(constraints or [])
        x = inputs["x"]
        if "init" in inputs:  # the clean plans noised to the first step's level
            clean = inputs["init"].repeat_interleave(batch, 0)
            x = torch.add(clean * schedule.signal[0], x, alpha=schedule.noise_level[0])
        # (not `compiled.get("unet") or pipe.unet`: a compiled module has no truth value)
        unet: torch.nn.Module = self.compiled["unet"] if "unet" in self.compiled else pipe.unet
        value_function: torch.nn.Module | None = self.compiled.get("value_function", pipe.value_function)
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
            if planned_act:
                full = x
            else:
                assert pipe.inverse_dynamics is not None  # checked when the pipeline was made
                full = torch.cat([inverse_actions(pipe.inverse_dynamics, x, act_dim=act_dim), x], dim=-1)
            values = plan_values(
                rank_by=spec.rank_by, plans=x, full=full, act_dim=act_dim, n_envs=n_envs,
                value_function=value_function, critic=pipe.critic, state_value=pipe.state_value,
                arrival=arrival, n_arrivals=spec.n_arrivals,
            )  # fmt: skip
            stats = pipe.inputs.stats(x.device)
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
