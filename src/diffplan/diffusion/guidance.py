"""Value guidance: gradients of a value network and the posterior variance that scales them."""

from __future__ import annotations

import torch
from diffusers import UNet1DModel


def value_and_grad(value_function: UNet1DModel, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted values of plans and their gradient with respect to the plans.

    Args:
        value_function: ``[B, D, H] -> [B, 1]`` value network.
        x: ``[B, H, D]`` noisy normalized plans.
        t: ``[B]`` diffusion steps.

    Returns:
        ``values: [B]`` and ``grad: [B, H, D]``.
    """
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = value_function(x.permute(0, 2, 1), t).sample.squeeze(-1)
        (grad,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), grad


def value(value_function: UNet1DModel, x: torch.Tensor, t: int = 0) -> torch.Tensor:
    """Predicted values ``[B]`` of plans ``x: [B, H, D]`` at diffusion step ``t``."""
    steps = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    return value_function(x.permute(0, 2, 1), steps).sample.squeeze(-1)


def posterior_variances(alphas_cumprod: torch.Tensor, timesteps: list[int]) -> list[float]:
    """Variance of ``q(x_prev | x_t, x_0)`` for each step of a (possibly respaced) schedule.

    ``var = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)`` with ``a`` the cumulative alphas and
    ``a_prev = 1`` after the last step. The last step's variance is 0; like the original Diffuser
    (``posterior_log_variance_clipped``) it is replaced by the one before it.

    Args:
        alphas_cumprod: the scheduler's public ``alphas_cumprod [num_train_timesteps]``.
        timesteps: the steps in sampling order (descending).

    Returns:
        One variance per entry of ``timesteps``.
    """
    a = alphas_cumprod.double()
    out = []
    for i, t in enumerate(timesteps):
        prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        a_t = a[t]
        a_prev = a[prev] if prev >= 0 else torch.tensor(1.0, dtype=torch.float64)
        out.append(float((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)))
    if len(out) > 1 and out[-1] == 0.0:
        out[-1] = out[-2]
    return out
