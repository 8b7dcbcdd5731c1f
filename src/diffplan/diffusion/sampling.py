"""THE guided sampling loop, shared by every planner variant (DDPM, DDIM, goals, batched envs).

Per denoising step ``t`` (Janner et al. 2022, with jannerm/diffuser's posterior-variance scaling, 3d7361c)::

    for k in range(n_guide_steps):
        g = dV/dx_t * posterior_variance[t]      # zero where t < t_stopgrad
        x_t = inpaint(x_t + scale * g)
    x_{t-1} = inpaint(scheduler.step(unet(x_t, t), t, x_t).prev_sample)

For DDPM (``fixed_small`` variance) and DDIM (``eta = 0``) without clipping or thresholding, the
scheduler's step is an affine map ``x_{t-1} = a_t * model_output + b_t * x_t + c_t * z``. Its
coefficients are computed once per schedule from the scheduler's public ``alphas_cumprod`` and
``timesteps`` (:func:`denoising_schedule`), the noise ``z`` of every step is drawn before the loop
from the same random stream and in the same order as ``scheduler.step`` draws it, and the loop runs
as tensor arithmetic with Python-float constants: no host synchronisation, one shape per call, so
the whole loop can be captured as a CUDA graph. Other schedulers (DPM-Solver++, clipped or
thresholded samples) run through ``scheduler.step`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler, SchedulerMixin, UNet1DModel

from diffplan.diffusion.conditioning import Constraint, apply_constraints
from diffplan.diffusion.guidance import posterior_variances, value_and_grad

StepCallback = Callable[[int, int, torch.Tensor], "torch.Tensor | None"]
"""``callback(i, t, x)`` after denoising step ``i`` (diffusion step ``t``) with the plans
``x: [B, H, D]``; a returned tensor replaces ``x`` (the constraints are imposed on it again)."""


@dataclass(frozen=True)
class Guidance:
    """Value-guidance settings.

    Attributes:
        value_function: ``[B, D, H] -> [B, 1]`` value network.
        n_guide_steps: gradient steps per denoising step (0: no guidance).
        scale: gradient step size.
        t_stopgrad: no guidance at diffusion steps ``t < t_stopgrad``.
        scale_grad_by_var: multiply gradients by the posterior variance of step ``t``.
    """

    value_function: UNet1DModel
    n_guide_steps: int = 2
    scale: float = 0.1
    t_stopgrad: int = 2
    scale_grad_by_var: bool = True


@dataclass(frozen=True)
class DenoisingSchedule:
    """Per-step constants of one sampling schedule, computed once (see :func:`denoising_schedule`).

    Attributes:
        timesteps: diffusion steps in sampling order (descending).
        variances: posterior variance of each step (guidance scaling).
        model_coef: ``a_t`` of the affine step (empty when the scheduler's step is not affine).
        sample_coef: ``b_t``.
        noise_std: ``c_t``; 0 where the scheduler draws no noise.
        signal: ``sqrt(alphas_cumprod[t])`` of each step (noising a warm start to level ``t``).
        noise_level: ``sqrt(1 - alphas_cumprod[t])``.
    """

    timesteps: tuple[int, ...]
    variances: tuple[float, ...]
    model_coef: tuple[float, ...] = ()
    sample_coef: tuple[float, ...] = ()
    noise_std: tuple[float, ...] = ()
    signal: tuple[float, ...] = ()
    noise_level: tuple[float, ...] = ()

    @property
    def affine(self) -> bool:
        """Whether the loop can run without ``scheduler.step`` (see the module docstring)."""
        return bool(self.model_coef)

    def suffix(self, k: int) -> DenoisingSchedule:
        """The last ``k`` steps (a warm start from noise level ``timesteps[-k]``)."""
        return DenoisingSchedule(
            *(tuple(getattr(self, f)[-k:]) if getattr(self, f) else () for f in self.__dataclass_fields__)
        )


def denoising_schedule(scheduler: SchedulerMixin, timesteps: Sequence[int] | None = None) -> DenoisingSchedule:
    """Constants of ``timesteps`` (default: ``scheduler.timesteps``) for :func:`run_schedule`.

    The affine coefficients are those of diffusers' ``DDPMScheduler.step`` (``variance_type
    "fixed_small"``) and ``DDIMScheduler.step`` (``eta = 0``) for ``prediction_type`` ``"sample"``
    or ``"epsilon"`` without sample clipping or thresholding; other schedulers get none and are
    stepped through ``scheduler.step``.

    Args:
        scheduler: a diffusers scheduler on which ``set_timesteps`` was called.
        timesteps: the steps to run, descending.
    """
    steps = tuple(int(t) for t in (scheduler.timesteps if timesteps is None else timesteps))
    a = scheduler.alphas_cumprod.detach().double().cpu()
    variances = tuple(posterior_variances(a, list(steps)))
    cfg = scheduler.config
    signal = tuple(math.sqrt(float(a[t])) for t in steps)
    noise_level = tuple(math.sqrt(1.0 - float(a[t])) for t in steps)
    plain = (
        not cfg.get("clip_sample", False)
        and not cfg.get("thresholding", False)
        and cfg.get("prediction_type") in ("sample", "epsilon")
    )
    ddpm = type(scheduler) is DDPMScheduler and cfg.get("variance_type") == "fixed_small"
    ddim = type(scheduler) is DDIMScheduler
    ddim = ddim and scheduler.num_inference_steps is not None
    if not plain or not (ddpm or ddim):
        return DenoisingSchedule(steps, variances, signal=signal, noise_level=noise_level)
    if ddim:
        final = 1.0 if cfg.get("set_alpha_to_one", True) else float(a[0])
        jump = cfg["num_train_timesteps"] // scheduler.num_inference_steps
    else:
        order = [int(t) for t in scheduler.timesteps]
    model_coef, sample_coef, noise_std = [], [], []
    for t in steps:
        a_t = float(a[t])
        if ddim:
            prev = t - jump
            a_prev = float(a[prev]) if prev >= 0 else final
        else:
            i = order.index(t)
            prev = order[i + 1] if i + 1 < len(order) else -1
            a_prev = float(a[prev]) if prev >= 0 else 1.0
        # x0 = p * out + q * x and eps = r * out + s * x for the two prediction types
        if cfg["prediction_type"] == "sample":
            p, q, r, s = 1.0, 0.0, -math.sqrt(a_t / (1 - a_t)), 1 / math.sqrt(1 - a_t)
        else:
            p, q, r, s = -math.sqrt((1 - a_t) / a_t), 1 / math.sqrt(a_t), 1.0, 0.0
        if ddim:  # x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps
            c0, c1 = math.sqrt(a_prev), math.sqrt(1 - a_prev)
            model_coef.append(c0 * p + c1 * r)
            sample_coef.append(c0 * q + c1 * s)
            noise_std.append(0.0)
        else:  # posterior mean coefficients of x0 and x_t, posterior std
            beta = 1 - a_t / a_prev
            c0 = math.sqrt(a_prev) * beta / (1 - a_t)
            c1 = math.sqrt(a_t / a_prev) * (1 - a_prev) / (1 - a_t)
            model_coef.append(c0 * p)
            sample_coef.append(c0 * q + c1)
            noise_std.append(math.sqrt(max((1 - a_prev) / (1 - a_t) * beta, 1e-20)) if t > 0 else 0.0)
    return DenoisingSchedule(
        steps, variances, tuple(model_coef), tuple(sample_coef), tuple(noise_std), signal, noise_level
    )


def draw_step_noise(
    schedule: DenoisingSchedule,
    *,
    shape: Sequence[int],
    generator: torch.Generator | None,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The noise ``z`` of every step of an affine schedule that adds noise, drawn before the loop.

    Drawn one step at a time on the generator's device, in the order ``scheduler.step`` draws it
    (the same random stream gives the same plans), then moved to ``device`` in one copy.

    Returns:
        ``[n, *shape]`` with ``n`` the number of steps whose ``noise_std > 0`` (possibly 0).
    """
    source = generator.device if generator is not None else device
    draws = [
        torch.randn(tuple(shape), generator=generator, device=source, dtype=dtype)
        for std in schedule.noise_std
        if std > 0
    ]
    if not draws:
        return torch.empty((0, *shape), device=device, dtype=dtype)
    return torch.stack(draws).to(device)


def run_schedule(
    *,
    unet: torch.nn.Module,
    schedule: DenoisingSchedule,
    x: torch.Tensor,
    noise: torch.Tensor,
    constraints: Sequence[Constraint],
    guidance: Guidance | None = None,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """The guided loop over an affine schedule: tensor arithmetic only, no host synchronisation.

    Args:
        unet: denoiser ``[B, D, H] -> [B, D, H]``.
        schedule: an affine :class:`DenoisingSchedule`.
        x: ``[B, H, D]`` starting noisy plans.
        noise: ``[n, B, H, D]`` from :func:`draw_step_noise`.
        constraints: inpainted entries, imposed before the first step and after every update.
        guidance: value-guidance settings; ``None`` samples without guidance.
        callback: called as ``callback(i, t, x)`` after each denoising step (see :data:`StepCallback`).

    Returns:
        ``[B, H, D]`` denoised plans with every constraint exact.
    """
    x = apply_constraints(x.clone(), constraints)
    batch, drawn = x.shape[0], 0
    for i, t in enumerate(schedule.timesteps):
        t_batch = torch.full((batch,), t, device=x.device, dtype=torch.long)
        x = _guide(x, t_batch, t, schedule.variances[i], guidance, constraints)
        with torch.no_grad():
            out = unet(x.permute(0, 2, 1), t_batch).sample.permute(0, 2, 1)
            x = torch.add(x * schedule.sample_coef[i], out, alpha=schedule.model_coef[i])
            if schedule.noise_std[i] > 0:
                x.add_(noise[drawn], alpha=schedule.noise_std[i])
                drawn += 1
        x = _after_step(apply_constraints(x, constraints), i, t, callback, constraints)
    return x


def _after_step(
    x: torch.Tensor, i: int, t: int, callback: StepCallback | None, constraints: Sequence[Constraint]
) -> torch.Tensor:
    """Run the step callback; a tensor it returns replaces ``x`` (with the constraints re-imposed)."""
    if callback is None:
        return x
    replaced = callback(i, t, x)
    return x if replaced is None else apply_constraints(replaced, constraints)


def _guide(
    x: torch.Tensor,
    t_batch: torch.Tensor,
    t: int,
    variance: float,
    guidance: Guidance | None,
    constraints: Sequence[Constraint],
) -> torch.Tensor:
    """``n_guide_steps`` value-gradient steps at diffusion step ``t`` (none below ``t_stopgrad``)."""
    if guidance is None or guidance.n_guide_steps <= 0 or t < guidance.t_stopgrad:
        return x
    step = guidance.scale * (variance if guidance.scale_grad_by_var else 1.0)
    for _ in range(guidance.n_guide_steps):
        _, grad = value_and_grad(guidance.value_function, x, t_batch)
        x = apply_constraints(torch.add(x, grad, alpha=step), constraints)
    return x


def guided_sample(
    *,
    unet: UNet1DModel,
    scheduler: SchedulerMixin,
    x: torch.Tensor,
    constraints: Sequence[Constraint],
    guidance: Guidance | None = None,
    timesteps: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    schedule: DenoisingSchedule | None = None,
) -> torch.Tensor:
    """Denoise ``x`` from the first of ``timesteps`` to 0 with inpainting and value guidance.

    Args:
        unet: denoiser ``[B, D, H] -> [B, D, H]`` whose output type is the scheduler's
            ``prediction_type``.
        scheduler: a diffusers scheduler on which ``set_timesteps`` was called.
        x: ``[B, H, D]`` starting noisy plans (pure noise for a cold start).
        constraints: inpainted entries, imposed before the first step and after every update.
        guidance: value-guidance settings; ``None`` samples without guidance.
        timesteps: steps to run, descending; defaults to ``scheduler.timesteps``. A suffix of
            them starts from an intermediate noise level (warm start).
        generator: random stream of the scheduler's noise.
        callback: called as ``callback(i, t, x)`` after each denoising step (see :data:`StepCallback`).
        schedule: the constants of ``timesteps`` when already computed (:func:`denoising_schedule`).

    Returns:
        ``[B, H, D]`` denoised plans with every constraint exact.
    """
    schedule = schedule or denoising_schedule(scheduler, timesteps)
    if schedule.affine:
        noise = draw_step_noise(schedule, shape=x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return run_schedule(
            unet=unet,
            schedule=schedule,
            x=x,
            noise=noise,
            constraints=constraints,
            guidance=guidance,
            callback=callback,
        )
    x = apply_constraints(x.clone(), constraints)
    batch = x.shape[0]
    for i, t in enumerate(schedule.timesteps):
        t_batch = torch.full((batch,), t, device=x.device, dtype=torch.long)
        x = _guide(x, t_batch, t, schedule.variances[i], guidance, constraints)
        with torch.no_grad():
            model_output = unet(x.permute(0, 2, 1), t_batch).sample.permute(0, 2, 1)
            x = scheduler.step(model_output, t, x, generator=generator).prev_sample
        x = _after_step(apply_constraints(x, constraints), i, t, callback, constraints)
    return x
