"""The run's normalizer as a registered diffusers component (``normalizer/`` of a run folder).

Registered, the normalizer is written by diffusers' ``save_pretrained``, read back by diffusers'
own ``DiffusionPipeline.from_pretrained`` and moved by ``.to()`` like the networks. Its shifts and
scales live in ``normalizer/config.json`` as JSON numbers, which read back bit for bit in float64;
it holds no floating-point tensor, so a pipeline cast to another dtype keeps them in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config

from diffplan.data.normalization import ArrayT, DimNormalizer, TrajectoryNormalizer


class Normalizer(ModelMixin, ConfigMixin):
    """Per-dimension normalizer of observations and actions as a pipeline component.

    It reads like the :class:`~diffplan.data.TrajectoryNormalizer` it holds (``observations``,
    ``actions``, ``obs_dim``, ``act_dim``, ``normalize``, ``unnormalize``); ``trajectory`` is that
    object itself.

    Args:
        observations: the observations' normalizer as ``DimNormalizer.to_dict()`` writes it
            (``kind``, ``shift: [obs_dim]``, ``scale: [obs_dim]``).
        actions: the actions' normalizer, the same way (``[act_dim]``).

    Raises:
        ValueError: a record is malformed (shapes differ, a scale is not positive).
    """

    @register_to_config
    def __init__(self, observations: dict[str, Any], actions: dict[str, Any]) -> None:
        super().__init__()
        self.trajectory = TrajectoryNormalizer.from_dict({"observations": observations, "actions": actions})
        # diffusers' loader reads a weights file beside config.json: the dimensions are that file's content
        self.register_buffer("dims", torch.tensor([self.trajectory.obs_dim, self.trajectory.act_dim]))

    @classmethod
    def of(cls, normalizer: TrajectoryNormalizer) -> Normalizer:
        """The component holding ``normalizer``."""
        record = normalizer.to_dict()
        return cls(observations=record["observations"], actions=record["actions"])

    @classmethod
    def given(cls, normalizer: TrajectoryNormalizer | Normalizer | None, *, env: object = None) -> Normalizer:
        """The component for a pipeline's ``normalizer`` argument: as given, or fitted to a D4RL-style
        ``env.get_dataset()`` when ``None`` (as diffusers' own pipeline fits its scalar one).

        Raises:
            ValueError: ``normalizer`` is ``None`` and ``env`` has no ``get_dataset()``.
        """
        if isinstance(normalizer, Normalizer):
            return normalizer
        if normalizer is not None:
            return cls.of(normalizer)
        if env is None or not hasattr(env, "get_dataset"):
            raise ValueError(
                "expected normalizer=TrajectoryNormalizer(...) or a D4RL env with get_dataset(); got neither"
            )
        data = env.get_dataset()
        return cls.of(
            TrajectoryNormalizer.fit(observations=np.asarray(data["observations"]), actions=np.asarray(data["actions"]))
        )

    @property
    def observations(self) -> DimNormalizer:
        """Normalizer of the ``obs_dim`` observation dimensions."""
        return self.trajectory.observations

    @property
    def actions(self) -> DimNormalizer:
        """Normalizer of the ``act_dim`` action dimensions."""
        return self.trajectory.actions

    @property
    def obs_dim(self) -> int:
        """Observation dimensions S."""
        return self.trajectory.obs_dim

    @property
    def act_dim(self) -> int:
        """Action dimensions A."""
        return self.trajectory.act_dim

    def normalize(self, x: ArrayT) -> ArrayT:
        """``x: [..., act_dim + obs_dim]`` (actions first) -> normalized, same shape."""
        return self.trajectory.normalize(x)

    def unnormalize(self, x: ArrayT) -> ArrayT:
        """Inverse of :meth:`normalize`."""
        return self.trajectory.unnormalize(x)
