"""A planning call's inputs: observations and goals checked against the run's data and normalized on
the device, with the normalizer's constants kept there in float64."""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike

from diffplan.data.normalization import TrajectoryNormalizer

# observations (and goals) further than this from the training data, in normalizer units (standard
# deviations, or half-ranges for the limits normalizer), are refused
OBS_LIMIT = 100.0


class PlanInputs:
    """Checks and normalizes a run's observations and goals on a device.

    Args:
        normalizer: the run's per-dimension normalizer.
    """

    def __init__(self, normalizer: TrajectoryNormalizer) -> None:
        self.normalizer = normalizer
        self._device: str | None = None
        self._stats: dict[str, torch.Tensor] = {}

    def stats(self, device: torch.device) -> dict[str, torch.Tensor]:
        """float64 shifts and scales on ``device`` (``obs_*``: ``[S]``, ``traj_*``: ``[A + S]``), made once
        per device."""
        if self._device != str(device):
            o, a = self.normalizer.observations, self.normalizer.actions

            def t(v: np.ndarray) -> torch.Tensor:
                return torch.as_tensor(v, dtype=torch.float64, device=device)

            self._stats = {
                "obs_shift": t(o.shift),
                "obs_scale": t(o.scale),
                "traj_shift": t(np.concatenate([a.shift, o.shift])),
                "traj_scale": t(np.concatenate([a.scale, o.scale])),
            }
            self._device = str(device)
        return self._stats

    def observations(
        self,
        obs: ArrayLike,
        *,
        device: torch.device,
        dtype: torch.dtype,
        name: str = "observation",
        partial: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """Validate ``[dim]`` or ``[n, dim]`` input (``dim = obs_dim``, or ``<= obs_dim`` when ``partial``).

        Returns:
            The input normalized with the first ``dim`` observation dimensions (``[n, dim]``,
            ``dtype``), the input itself (``[n, dim]`` float64), both on ``device``, and whether a
            single ``[dim]`` vector was given.

        Raises:
            ValueError: not numbers, the wrong shape, NaN or inf, or further than :data:`OBS_LIMIT`
                normalizer units from the data the run was trained on.
        """
        obs_dim = self.normalizer.obs_dim
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
        ok = 1 <= width <= obs_dim if partial else width == obs_dim
        if arr.ndim not in (1, 2) or not ok or arr.size == 0:
            expected = f"at most {obs_dim}" if partial else f"{obs_dim}"
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
        raw = torch.as_tensor(np.atleast_2d(arr), device=device)
        stats = self.stats(device)
        normed = (raw - stats["obs_shift"][:width]) / stats["obs_scale"][:width]
        return normed.to(dtype), raw, single

    def inverse_action(
        self,
        model: torch.nn.Module,
        *,
        state: np.ndarray,
        target: np.ndarray,
        lookahead: np.ndarray,
        device: torch.device,
    ) -> np.ndarray:
        """Actions of an inverse dynamics ``model`` from ``state`` to ``target`` in ``lookahead`` steps.

        Args:
            model: the run's :class:`~diffplan.models.InverseDynamics` (normalized states in, normalized
                actions out).
            state: ``[n, obs_dim]`` current states (original units).
            target: ``[n, obs_dim]`` planned states to reach.
            lookahead: ``[n]`` environment steps until ``target``.
            device: the model's device.

        Returns:
            ``[n, act_dim]`` actions in original units.
        """
        norm = self.normalizer.observations

        def tensor(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=torch.float32, device=device)

        now = tensor(norm.normalize(np.atleast_2d(state)))
        with torch.no_grad():
            out = model(now, tensor(norm.normalize(np.atleast_2d(target))), tensor(np.atleast_1d(lookahead)))
        return self.normalizer.actions.unnormalize(out.double().cpu().numpy())
