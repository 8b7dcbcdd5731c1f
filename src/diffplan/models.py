"""Builds the denoiser (a diffusers ``UNet1DModel`` or a :class:`~diffplan.transformer.DiT1DModel`),
the value network (a ``UNet1DModel``), and the inverse dynamics and Q-function MLPs.

The block types are those of the published Diffuser temporal U-Net as ported to diffusers
(``DownResnetBlock1D``/``UpResnetBlock1D``, ``MidResTemporalBlock1D`` + ``OutConv1DBlock`` for
the denoiser, ``ValueFunctionMidBlock1D`` + ``ValueFunction`` for the value network), so hub
checkpoints of that family load unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import ConfigMixin, DDPMScheduler, ModelMixin, UNet1DModel
from diffusers.configuration_utils import register_to_config

from diffplan.config import DenoiserConfig, DiTConfig, UNetConfig
from diffplan.transformer import DiT1DModel


def _common(config: UNetConfig, transition_dim: int) -> dict[str, Any]:
    bad = [c for c in config.block_out_channels if c % 8]
    if bad or not config.block_out_channels:
        raise ValueError(f"block_out_channels must be non-empty multiples of 8, got {config.block_out_channels}")
    return dict(
        in_channels=transition_dim,
        out_channels=transition_dim,
        extra_in_channels=0,
        time_embedding_type="positional",
        flip_sin_to_cos=False,
        freq_shift=1.0,
        use_timestep_embedding=True,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        norm_num_groups=8,
        act_fn=config.act_fn,
        down_block_types=("DownResnetBlock1D",) * len(config.block_out_channels),
    )


def check_horizon(*, config: DenoiserConfig, horizon: int, value_network: bool = False) -> None:
    """Check that a network of ``config`` accepts windows of length ``horizon``.

    A transformer denoiser takes any horizon. The U-Net denoiser halves the horizon ``n_blocks - 1``
    times and doubles it back, so the horizon must be divisible by ``2 ** (n_blocks - 1)``; the value
    network reduces it to length 1 in ``n_blocks + 2`` halvings, so it must be at most
    ``2 ** (n_blocks + 2)``.

    Args:
        config: the network's size.
        horizon: window length H.
        value_network: check the value network's bound instead of the denoiser's.

    Raises:
        ValueError: the horizon does not fit.
    """
    if isinstance(config, DiTConfig):
        if horizon < 1:
            raise ValueError(f"expected a horizon >= 1, got {horizon}")
        return
    n = len(config.block_out_channels)
    if value_network:
        if not 1 <= horizon <= 2 ** (n + 2):
            raise ValueError(
                f"horizon {horizon} does not fit a {n}-block value network: expected at most "
                f"{2 ** (n + 2)} (use more blocks, or no value network)"
            )
    elif horizon < 1 or horizon % 2 ** (n - 1):
        raise ValueError(f"horizon {horizon} does not fit a {n}-block denoiser: expected a multiple of {2 ** (n - 1)}")


def build_denoiser(*, config: DenoiserConfig, transition_dim: int) -> UNet1DModel | DiT1DModel:
    """Denoiser ``[B, D, H] -> [B, D, H]`` (``D = transition_dim``): a temporal U-Net, or a
    transformer for a :class:`~diffplan.config.DiTConfig`."""
    if isinstance(config, DiTConfig):
        return DiT1DModel(
            in_channels=transition_dim,
            hidden_size=config.hidden_size,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
        )
    return UNet1DModel(
        **_common(config, transition_dim),
        up_block_types=("UpResnetBlock1D",) * (len(config.block_out_channels) - 1),
        mid_block_type="MidResTemporalBlock1D",
        out_block_type="OutConv1DBlock",
        downsample_each_block=False,
    )


def build_value_function(*, config: UNetConfig, transition_dim: int) -> UNet1DModel:
    """Value network: ``[B, act_dim + obs_dim, H] -> [B, 1]``."""
    if config.block_out_channels[-1] % 32:
        raise ValueError(
            f"the value network's last block needs a multiple of 32 channels, got {config.block_out_channels}"
        )
    return UNet1DModel(
        **_common(config, transition_dim),
        up_block_types=(),
        mid_block_type="ValueFunctionMidBlock1D",
        out_block_type="ValueFunction",
        downsample_each_block=True,
    )


def denoiser_config(model: Any) -> DenoiserConfig:
    """The size of a built denoiser (for horizon checks), read from its diffusers config."""
    cfg = model.config
    if isinstance(model, DiT1DModel):
        return DiTConfig(hidden_size=cfg.hidden_size, depth=cfg.depth, num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio)
    return UNetConfig(block_out_channels=tuple(cfg.block_out_channels))


def build_scheduler(*, num_train_timesteps: int, beta_schedule: str, prediction_type: str) -> DDPMScheduler:
    """The DDPM scheduler of a run (no clipping: trajectories are Gaussian-normalized)."""
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        prediction_type=prediction_type,
        clip_sample=False,
        variance_type="fixed_small",
    )


class InverseDynamics(ModelMixin, ConfigMixin):
    """Learned inverse dynamics: the action that takes ``state`` to ``target`` in ``lookahead`` steps.

    An MLP on normalized units, trained on the dataset's own transitions. It lets ``replan`` mode
    execute actions of the planner's own making for the states it planned (as Decision Diffuser
    does), where the sampled action channels of a small, briefly trained denoiser are too coarse.
    Saved and loaded as a diffusers model folder (``config.json`` + safetensors).

    Args:
        obs_dim: observation dimensions S.
        act_dim: action dimensions A.
        max_lookahead: the largest ``lookahead`` (the run's stride).
        hidden: units per hidden layer.
        layers: hidden layers.
    """

    @register_to_config
    def __init__(self, obs_dim: int, act_dim: int, max_lookahead: int = 1, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        if min(obs_dim, act_dim, max_lookahead, hidden, layers) < 1:
            raise ValueError(
                "InverseDynamics sizes must all be >= 1, got "
                f"obs_dim={obs_dim} act_dim={act_dim} max_lookahead={max_lookahead} hidden={hidden} "
                f"layers={layers}"
            )
        sizes = [2 * obs_dim + 1] + [hidden] * layers
        blocks: list[torch.nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            blocks += [torch.nn.Linear(a, b), torch.nn.Mish()]
        self.net = torch.nn.Sequential(*blocks, torch.nn.Linear(sizes[-1], act_dim))

    def forward(self, state: torch.Tensor, target: torch.Tensor, lookahead: torch.Tensor) -> torch.Tensor:
        """Normalized actions ``[B, A]``.

        Args:
            state: ``[B, S]`` normalized current states.
            target: ``[B, S]`` normalized states to reach.
            lookahead: ``[B]`` environment steps until ``target`` (``1..max_lookahead``).
        """
        steps = lookahead.to(state.dtype)[:, None] / self.config.max_lookahead
        return self.net(torch.cat([state, target, steps], dim=1))


class QFunction(ModelMixin, ConfigMixin):
    """A critic ``Q(s, a)``: the discounted return the dataset's behaviour got after acting ``a`` in ``s``.

    An MLP on normalized states and actions, regressed on the discounted returns-to-go of the
    dataset (the value network's targets), which ranks finished plans by their first state and
    action (``rank_by="q"``): Monte Carlo sampling with selection by a critic, as in Diffusion
    Veteran. Saved and loaded as a diffusers model folder.

    Args:
        obs_dim: observation dimensions S.
        act_dim: action dimensions A.
        hidden: units per hidden layer.
        layers: hidden layers.
    """

    @register_to_config
    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256, layers: int = 2) -> None:
        super().__init__()
        if min(obs_dim, act_dim, hidden, layers) < 1:
            raise ValueError(
                f"QFunction sizes must all be >= 1, got obs_dim={obs_dim} act_dim={act_dim} hidden={hidden} "
                f"layers={layers}"
            )
        sizes = [obs_dim + act_dim] + [hidden] * layers
        blocks: list[torch.nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            blocks += [torch.nn.Linear(a, b), torch.nn.Mish()]
        self.net = torch.nn.Sequential(*blocks, torch.nn.Linear(sizes[-1], 1))

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Values ``[B]`` of normalized ``state: [B, S]`` and ``action: [B, A]``."""
        return self.net(torch.cat([state, action], dim=1)).squeeze(-1)


class StateValue(ModelMixin, ConfigMixin):
    """A state value ``V(s)`` learned by temporal differences on the dataset's transitions.

    An MLP on normalized states whose output is the discounted return divided by the run's
    ``value_scale`` (the largest absolute discounted return of the dataset, so that the network
    regresses numbers near 1). Plans are ranked by the sum of ``V`` over their planned states
    (``rank_by="state_value"``), as Diffusion Veteran selects among its candidate plans.
    Saved and loaded as a diffusers model folder.

    Args:
        obs_dim: observation dimensions S.
        hidden: units per hidden layer.
        layers: hidden layers.
        value_scale: the return that the output 1 stands for (set by the trainer; for reading
            values in the environment's units).
    """

    @register_to_config
    def __init__(self, obs_dim: int, hidden: int = 256, layers: int = 2, value_scale: float = 1.0) -> None:
        super().__init__()
        if min(obs_dim, hidden, layers) < 1 or not value_scale > 0:
            raise ValueError(
                f"StateValue expects sizes >= 1 and value_scale > 0, got obs_dim={obs_dim} hidden={hidden} "
                f"layers={layers} value_scale={value_scale}"
            )
        sizes = [obs_dim] + [hidden] * layers
        blocks: list[torch.nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            blocks += [torch.nn.Linear(a, b), torch.nn.Mish()]
        self.net = torch.nn.Sequential(*blocks, torch.nn.Linear(sizes[-1], 1))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """Scaled values ``[...]`` of normalized states ``[..., S]``."""
        return self.net(state).squeeze(-1)
