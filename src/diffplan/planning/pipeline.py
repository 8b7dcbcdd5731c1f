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

The pipeline orchestrates: it holds the registered components, checks a call's settings and
composes the coarse and fine levels. Beside it live what a call returns (:mod:`.plans`), the checks
and normalization of its inputs (:mod:`.inputs`), the ranking rules (:mod:`.ranking`) and the
device side of a call with its caches and CUDA graphs (:mod:`.engine`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, UNet1DModel
from diffusers.utils import logging as diffusers_logging
from numpy.typing import ArrayLike

from diffplan.config import PlanConfig
from diffplan.data.normalization import TrajectoryNormalizer
from diffplan.devices import resolve_device
from diffplan.diffusion.conditioning import Constraint
from diffplan.diffusion.sampling import StepCallback
from diffplan.envs.specs import action_bounds
from diffplan.models import InverseDynamics, QFunction, StateValue
from diffplan.planning.engine import PlanEngine, StepEndCallback, step_callback
from diffplan.planning.inputs import PlanInputs
from diffplan.planning.normalizer import Normalizer
from diffplan.planning.plans import Plan, Samples
from diffplan.planning.runs import (
    CRITIC,
    FINE,
    INVERSE_DYNAMICS,
    NORMALIZER,
    STATE_VALUE,
    RunInfo,
    check_parts,
    check_recorded_normalizer,
    pretrained_arguments,
    resolve_run,
    save_run,
)
from diffplan.transformer import DiT1DModel

if TYPE_CHECKING:
    from typing_extensions import Self


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
        normalizer: per-dimension normalizer of observations and actions, registered as the
            :class:`~diffplan.planning.normalizer.Normalizer` component ``normalizer``.
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
    # registered diffusers components: save_pretrained writes each to its subfolder, .to() moves them
    _optional_components = ["value_function", NORMALIZER, INVERSE_DYNAMICS, CRITIC, STATE_VALUE, FINE]

    def __init__(
        self,
        value_function: UNet1DModel | None,
        unet: UNet1DModel | DiT1DModel,
        scheduler: DDPMScheduler | DDIMScheduler,
        env: object = None,
        *,
        normalizer: TrajectoryNormalizer | Normalizer | None = None,
        plan_config: PlanConfig | None = None,
        info: RunInfo | None = None,
        inverse_dynamics: InverseDynamics | None = None,
        critic: QFunction | None = None,
        fine: ValueGuidedRLPipeline | None = None,
        state_value: StateValue | None = None,
    ) -> None:
        super().__init__()
        component = Normalizer.given(normalizer, env=env)
        self.register_modules(
            value_function=value_function,
            unet=unet,
            scheduler=scheduler,
            normalizer=component,
            inverse_dynamics=inverse_dynamics,
            critic=critic,
            state_value=state_value,
            fine=fine,
        )
        check_parts(
            normalizer=component.trajectory,
            unet=unet,
            value_function=value_function,
            inverse_dynamics=inverse_dynamics,
            critic=critic,
            state_value=state_value,
            fine=fine,
        )
        self.env = env
        self._inputs = PlanInputs(component.trajectory)
        self.plan_config = plan_config or PlanConfig()
        self.info = info
        self.engine = PlanEngine(self)

    @property
    def inputs(self) -> PlanInputs:
        """Checks and normalization of a call's observations and goals, with the registered normalizer
        (made again when ``normalizer`` is replaced)."""
        if self._inputs.normalizer is not self.normalizer.trajectory:
            self._inputs = PlanInputs(self.normalizer.trajectory)
        return self._inputs

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
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        normalizer: TrajectoryNormalizer | Normalizer | None = None,
        env: object = None,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> Self:
        """Load a run folder (or the name of a run shipped with diffplan) with diffusers' own loader.

        diffusers' ``DiffusionPipeline.from_pretrained`` loads every registered component named in
        ``model_index.json``; around it this method finds shipped runs by name, checks the folder's
        files first (so that a missing or cut-short file is named), passes ``diffplan.json``'s planner
        defaults and metadata, and the normalizer of folders written before it was registered (or
        ``normalizer``, or one fitted to a D4RL ``env``, for folders of diffusers' own pipeline).

        Raises:
            FileNotFoundError: the folder or a required file is missing.
            ValueError: a file is corrupt, the parts do not fit together, ``device`` is not on this
                machine, or an argument other than these is given.
        """
        if kwargs:
            raise ValueError(f"unknown from_pretrained arguments {sorted(kwargs)}; expected normalizer=, env=, device=")
        target = resolve_device(device) if device is not None else None
        path = resolve_run(pretrained_model_name_or_path)

        def load_fine(folder: Path) -> ValueGuidedRLPipeline:
            return cls.from_pretrained(folder, normalizer=normalizer, env=env, device=device)

        given = pretrained_arguments(path, normalizer=normalizer, env=env, load_fine=load_fine)
        shown = diffusers_logging.is_progress_bar_enabled()
        diffusers_logging.disable_progress_bar()  # a bar per loaded component is noise here
        try:
            pipe = super().from_pretrained(path, **given)
        finally:
            if shown:
                diffusers_logging.enable_progress_bar()
        if NORMALIZER not in given:  # loaded from normalizer/: diffplan.json must record the same
            check_recorded_normalizer(path, pipe.normalizer.trajectory, given["info"])
        return pipe.to(target) if target is not None else pipe

    def save_pretrained(
        self, save_directory: str | os.PathLike, safe_serialization: bool = True, **kwargs: Any
    ) -> None:
        """Write the diffusers folder (every registered component, the fine level included, in its
        subfolder) and ``diffplan.json``, atomically component by component, safetensors always."""
        write = super().save_pretrained
        info = self.info or RunInfo(normalizer=self.normalizer.trajectory, plan=self.plan_config)
        save_run(
            Path(save_directory),
            write=lambda tmp: write(tmp, safe_serialization=True, **kwargs),
            models=[m for m in self.components.values() if isinstance(m, torch.nn.Module)],
            info=replace(info, normalizer=self.normalizer.trajectory, plan=self.plan_config),
        )

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
        return self.inputs.inverse_action(
            self.inverse_dynamics, state=state, target=target, lookahead=lookahead, device=self.device
        )

    def compile(self, *, mode: str | None = None, backend: str = "inductor") -> ValueGuidedRLPipeline:
        """Plan with ``torch.compile``d networks from now on (weights stay shared); the first call of
        each shape pays the compilation, plans equal eager ones up to kernel choice.

        Args:
            mode: ``torch.compile`` mode; ``"reduce-overhead"`` uses CUDA graphs on a GPU.
            backend: ``torch.compile`` backend (``"inductor"`` on a CPU needs a C++ compiler).

        Returns:
            ``self``, for chaining.
        """
        self.engine.compile(mode=mode, backend=backend)
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
        start) pays the capture (``graph_capture_seconds``); later calls replay it without Python or
        kernel-launch overhead. Calls with ``cost``, ``callback_on_step_end``, extra ``constraints``
        or a non-affine sampler (``dpmsolver++``) run eagerly. Results equal eager ones up to kernel
        choice.

        Returns:
            ``self``, for chaining.
        """
        self.engine.use_cuda_graphs(enabled)
        return self

    @property
    def graph_capture_seconds(self) -> float:
        """Seconds this process spent capturing CUDA graphs (each shape once)."""
        return self.engine.graph_capture_seconds

    def plan(
        self,
        obs: ArrayLike,
        *,
        goal: ArrayLike | None = None,
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

        A setting left ``None`` takes the run's (:attr:`plan_config`); ``warm_start_steps`` applies
        with ``init``, ``goal_arrivals`` with ``goal``.

        Args:
            obs: ``[obs_dim]`` or ``[n_envs, obs_dim]`` observations in original units.
            goal: ``[k]`` or ``[n_envs, k]`` (``k <= obs_dim``): the first ``k`` observation
                dimensions to inpaint from each plan's arrival step on (see ``goal_arrivals``; a
                full state, or e.g. a maze position).
            batch_size: this call's setting of the :class:`~diffplan.config.PlanConfig` field of the
                same name, as are ``planning_horizon``, ``n_guide_steps``, ``scale``, ``t_stopgrad``,
                ``scale_grad_by_var``, ``num_inference_steps``, ``sampler``, ``warm_start_steps``,
                ``goal_arrivals``, ``rank_by`` and ``coarse_to_fine``.
            generator: random stream of the initial noise and the sampler's noise.
            constraints: further inpainting constraints on the normalized ``[n_envs * batch]`` plans.
            init: ``[n_envs, H, act_dim + obs_dim]`` normalized clean plans to start from (warm
                start): noised to the level of the last ``warm_start_steps`` steps of the schedule
                and denoised from there. ``None``: from pure noise.
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
            callback=step_callback(self, callback_on_step_end, callback_on_step_end_tensor_inputs),
        )
        return samples.plan

    def sample(
        self,
        obs: ArrayLike,
        *,
        settings: PlanConfig | None = None,
        goal: ArrayLike | None = None,
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
            goal: as in :meth:`plan`, as are ``generator``, ``constraints``, ``init`` and ``cost``.
            callback: called after each denoising step as ``callback(i, t, x)``; a returned tensor
                replaces ``x`` (see :data:`~diffplan.diffusion.sampling.StepCallback`).

        Raises:
            ValueError: a ranking the run has no model for, a warm start of a coarse-to-fine call,
                or inputs of the wrong shape.
        """
        cfg = self.plan_config if settings is None else settings
        return self.engine.sample(
            obs,
            cfg=cfg,
            goal=goal,
            generator=generator,
            constraints=constraints,
            init=init,
            cost=cost,
            callback=callback,
        )

    def __call__(
        self,
        obs: ArrayLike,
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
        given = dict(batch_size=batch_size, planning_horizon=planning_horizon, n_guide_steps=n_guide_steps, scale=scale)
        kwargs |= {k: v for k, v in given.items() if v is not None}
        actions = self.plan(obs, **kwargs).actions[..., 0, 0, :]
        if self.info is None or self.info.env_id is None:
            return actions
        return np.clip(actions, *action_bounds(self.info.env_id))
