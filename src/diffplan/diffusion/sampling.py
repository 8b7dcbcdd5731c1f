"""THE guided sampling loop, shared by every planner variant (DDPM, DDIM, goals, batched envs).

Per denoising step ``t`` (DESIGN.md section 4)::

    for k in range(n_guide_steps):
        g = dV/dx_t * posterior_variance[t]      # zero where t < t_stopgrad
        x_t = inpaint(x_t + scale * g)
    x_{t-1} = inpaint(scheduler.step(unet(x_t, t), t, x_t).prev_sample)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import UNet1DModel

from diffplan.diffusion.conditioning import Constraint, apply_constraints
from diffplan.diffusion.guidance import posterior_variances, value_and_grad


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


def guided_sample(
    *,
    unet: UNet1DModel,
    scheduler: object,
    x: torch.Tensor,
    constraints: Sequence[Constraint],
    guidance: Guidance | None = None,
    timesteps: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Denoise ``x`` from the first of ``timesteps`` to 0 with inpainting and value guidance.

    Args:
        unet: denoiser ``[B, D, H] -> [B, D, H]`` whose output type is the scheduler's
            ``prediction_type``.
        scheduler: a diffusers ``DDPMScheduler`` or ``DDIMScheduler`` on which ``set_timesteps``
            was called.
        x: ``[B, H, D]`` starting noisy plans (pure noise for a cold start).
        constraints: inpainted entries, imposed before the first step and after every update.
        guidance: value-guidance settings; ``None`` samples without guidance.
        timesteps: steps to run, descending; defaults to ``scheduler.timesteps``. A suffix of
            them starts from an intermediate noise level (warm start).
        generator: random stream of the scheduler's noise.
        callback: called as ``callback(t, x)`` after each denoising step, ``x: [B, H, D]``.

    Returns:
        ``[B, H, D]`` denoised plans with every constraint exact.
    """
    steps = [int(t) for t in (scheduler.timesteps if timesteps is None else timesteps)]
    variances = posterior_variances(scheduler.alphas_cumprod, steps) if guidance else []
    x = apply_constraints(x.clone(), constraints)
    batch = x.shape[0]
    for i, t in enumerate(steps):
        t_batch = torch.full((batch,), t, device=x.device, dtype=torch.long)
        if guidance is not None and guidance.n_guide_steps > 0 and t >= guidance.t_stopgrad:
            weight = variances[i] if guidance.scale_grad_by_var else 1.0
            for _ in range(guidance.n_guide_steps):
                _, grad = value_and_grad(guidance.value_function, x, t_batch)
                x = apply_constraints(x + (guidance.scale * weight) * grad, constraints)
        with torch.no_grad():
            model_output = unet(x.permute(0, 2, 1), t_batch).sample.permute(0, 2, 1)
            x = scheduler.step(model_output, t, x, generator=generator).prev_sample
        x = apply_constraints(x, constraints)
        if callback is not None:
            callback(t, x)
    return x
