"""Per-dimension normalizers for observations and actions, stored as JSON.

Gaussian (``(x - mean) / std``) suits locomotion; limits (``[min, max] -> [-1, 1]``) suits mazes.
Both work on numpy arrays and torch tensors of shape ``[..., dim]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

_EPS = 1e-6


def _like(values: np.ndarray, x: ArrayT) -> ArrayT:
    if isinstance(x, torch.Tensor):
        return torch.as_tensor(values, dtype=x.dtype, device=x.device)
    return values.astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64)


@dataclass(frozen=True)
class DimNormalizer:
    """An affine per-dimension map ``x -> (x - shift) / scale``.

    Attributes:
        kind: ``"gaussian"`` or ``"limits"`` (for the JSON record only).
        shift: ``[dim]``.
        scale: ``[dim]``, strictly positive.
    """

    kind: str
    shift: np.ndarray
    scale: np.ndarray

    @property
    def dim(self) -> int:
        """Number of dimensions."""
        return int(self.shift.shape[0])

    @classmethod
    def fit(cls, data: np.ndarray, *, kind: str = "gaussian") -> DimNormalizer:
        """Fit to samples ``data: [n, dim]``; constant dimensions get scale 1."""
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] == 0:
            raise ValueError(f"expected samples [n, dim] with n > 0, got shape {data.shape}")
        if kind == "gaussian":
            shift, scale = data.mean(0), data.std(0)
        elif kind == "limits":
            lo, hi = data.min(0), data.max(0)
            shift, scale = (hi + lo) / 2, (hi - lo) / 2
        else:
            raise ValueError(f"unknown normalizer kind {kind!r}; expected 'gaussian' or 'limits'")
        scale = np.where(scale < _EPS, 1.0, scale)
        return cls(kind=kind, shift=shift, scale=scale)

    def normalize(self, x: ArrayT) -> ArrayT:
        """``x: [..., dim]`` -> normalized ``[..., dim]``."""
        return (x - _like(self.shift, x)) / _like(self.scale, x)

    def unnormalize(self, x: ArrayT) -> ArrayT:
        """Inverse of :meth:`normalize`."""
        return x * _like(self.scale, x) + _like(self.shift, x)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of this object."""
        return {"kind": self.kind, "shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DimNormalizer:
        """Rebuild from :meth:`to_dict` output (ValueError on a malformed record)."""
        shift = np.asarray(data["shift"], dtype=np.float64)
        scale = np.asarray(data["scale"], dtype=np.float64)
        if shift.shape != scale.shape or shift.ndim != 1:
            raise ValueError(f"normalizer shift {shift.shape} and scale {scale.shape} must be equal 1-D")
        if not np.all(np.isfinite(shift)) or not np.all(scale > 0):
            raise ValueError("normalizer shift must be finite and scale strictly positive")
        return cls(kind=str(data["kind"]), shift=shift, scale=scale)


@dataclass(frozen=True)
class TrajectoryNormalizer:
    """Observation and action normalizers of a trajectory ``[..., act_dim + obs_dim]``.

    Attributes:
        observations: normalizer of the ``obs_dim`` observation dimensions.
        actions: normalizer of the ``act_dim`` action dimensions.
    """

    observations: DimNormalizer
    actions: DimNormalizer

    @property
    def obs_dim(self) -> int:
        """Observation dimensions S."""
        return self.observations.dim

    @property
    def act_dim(self) -> int:
        """Action dimensions A."""
        return self.actions.dim

    @classmethod
    def fit(cls, *, observations: np.ndarray, actions: np.ndarray, kind: str = "gaussian") -> TrajectoryNormalizer:
        """Fit from ``observations: [n, obs_dim]`` and ``actions: [n, act_dim]``."""
        return cls(
            observations=DimNormalizer.fit(observations, kind=kind),
            actions=DimNormalizer.fit(actions, kind=kind),
        )

    @classmethod
    def scalar(
        cls, *, obs_mean: float, obs_std: float, act_mean: float, act_std: float, obs_dim: int, act_dim: int
    ) -> TrajectoryNormalizer:
        """One mean and std for all dimensions, as diffusers' pipeline normalizes."""
        return cls(
            observations=DimNormalizer("scalar", np.full(obs_dim, obs_mean), np.full(obs_dim, obs_std)),
            actions=DimNormalizer("scalar", np.full(act_dim, act_mean), np.full(act_dim, act_std)),
        )

    def normalize(self, x: ArrayT) -> ArrayT:
        """``x: [..., act_dim + obs_dim]`` (actions first) -> normalized, same shape."""
        a, s = x[..., : self.act_dim], x[..., self.act_dim :]
        parts = (self.actions.normalize(a), self.observations.normalize(s))
        return torch.cat(parts, -1) if isinstance(x, torch.Tensor) else np.concatenate(parts, -1)

    def unnormalize(self, x: ArrayT) -> ArrayT:
        """Inverse of :meth:`normalize`."""
        a, s = x[..., : self.act_dim], x[..., self.act_dim :]
        parts = (self.actions.unnormalize(a), self.observations.unnormalize(s))
        return torch.cat(parts, -1) if isinstance(x, torch.Tensor) else np.concatenate(parts, -1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of this object."""
        return {"observations": self.observations.to_dict(), "actions": self.actions.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrajectoryNormalizer:
        """Rebuild from :meth:`to_dict` output (ValueError on a malformed record)."""
        try:
            return cls(
                observations=DimNormalizer.from_dict(data["observations"]),
                actions=DimNormalizer.from_dict(data["actions"]),
            )
        except KeyError as err:
            raise ValueError(f"normalizer record lacks the field {err}; expected observations and actions") from err
