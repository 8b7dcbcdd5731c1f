"""Inpainting constraints: trajectory entries fixed to known values at every denoising step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Constraint:
    """Columns ``[start, start + k)`` of time index ``index`` are fixed to ``values``.

    Attributes:
        index: time index in the plan (negative counts from the end, ``-1`` is the last step),
            or a ``[batch, horizon]`` bool mask of the time steps fixed in each plan (e.g. a goal
            held from a different arrival step in each plan).
        start: first column in the trajectory layout ``[act_dim + obs_dim]``.
        values: ``[batch, k]`` normalized values, one row per plan.
    """

    index: int | torch.Tensor
    start: int
    values: torch.Tensor


def apply_constraints(x: torch.Tensor, constraints: Sequence[Constraint]) -> torch.Tensor:
    """Impose every constraint on ``x: [batch, horizon, act_dim + obs_dim]`` in place.

    Returns:
        ``x`` itself, for chaining.
    """
    for c in constraints:
        cols = slice(c.start, c.start + c.values.shape[-1])
        if isinstance(c.index, torch.Tensor):
            mask = c.index.to(x.device)[..., None]
            x[:, :, cols] = torch.where(mask, c.values.to(x.dtype)[:, None, :], x[:, :, cols])
        else:
            x[:, c.index, cols] = c.values.to(x.dtype)
    return x


def start_state_constraint(obs: torch.Tensor, *, act_dim: int) -> Constraint:
    """The inpainted start of a plan: ``obs: [batch, obs_dim]`` normalized at time 0."""
    return Constraint(index=0, start=act_dim, values=obs)
