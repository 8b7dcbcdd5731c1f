"""A 1-D diffusion transformer (DiT) denoiser over the planning horizon, as a diffusers model.

The trajectory's steps are the tokens: each step's ``act_dim + obs_dim`` channels are embedded
linearly, a fixed sine-cosine position embedding over the horizon is added, and ``depth`` blocks of
self-attention and feed-forward layers follow, each conditioned on the diffusion step by adaptive
layer norm with zero-initialised gates (adaLN-Zero, Peebles & Xie 2023), as in the transformer
denoiser of Diffusion Veteran (Lu et al., 2025). The layers are diffusers' own (``Timesteps``,
``TimestepEmbedding``, ``AdaLayerNormZero``, ``Attention``, ``FeedForward``,
``AdaLayerNormContinuous``); the model takes and returns what ``UNet1DModel`` does
(``[B, C, H]`` channels first, ``.sample``), so training and planning use either unchanged, and it
is saved and loaded as a diffusers model folder.
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding, Timesteps, get_1d_sincos_pos_embed_from_grid
from diffusers.models.normalization import AdaLayerNormContinuous, AdaLayerNormZero
from diffusers.models.unets.unet_1d import UNet1DOutput


class _Block(torch.nn.Module):
    """Self-attention and feed-forward, each gated and modulated by the diffusion step (adaLN-Zero)."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm1 = AdaLayerNormZero(hidden)
        self.attn = Attention(query_dim=hidden, heads=heads, dim_head=hidden // heads, bias=True)
        self.norm2 = torch.nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.ff = FeedForward(hidden, mult=mlp_ratio, activation_fn="gelu-approximate")
        torch.nn.init.zeros_(self.norm1.linear.weight)  # every block starts as the identity
        torch.nn.init.zeros_(self.norm1.linear.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(x, emb=emb)
        x = x + gate_msa[:, None] * self.attn(h)
        h = self.norm2(x) * (1 + scale_mlp[:, None]) + shift_mlp[:, None]
        return x + gate_mlp[:, None] * self.ff(h)


class DiT1DModel(ModelMixin, ConfigMixin):
    """Transformer denoiser: ``[B, in_channels, H] -> [B, in_channels, H]``, any horizon ``H``.

    Args:
        in_channels: channels of a trajectory step (``act_dim + obs_dim``, or ``obs_dim`` for
            states-only runs); the output has as many.
        hidden_size: token width.
        depth: transformer blocks.
        num_heads: attention heads (``hidden_size`` must be a multiple).
        mlp_ratio: feed-forward width per token unit.

    Raises:
        ValueError: a size below 1, or ``hidden_size`` not a multiple of ``num_heads``.
    """

    @register_to_config
    def __init__(
        self, in_channels: int, hidden_size: int = 128, depth: int = 4, num_heads: int = 4, mlp_ratio: int = 4
    ) -> None:
        super().__init__()
        if min(in_channels, hidden_size, depth, num_heads, mlp_ratio) < 1 or hidden_size % num_heads:
            raise ValueError(
                "DiT1DModel expects sizes >= 1 and hidden_size divisible by num_heads, got "
                f"in_channels={in_channels} hidden_size={hidden_size} depth={depth} num_heads={num_heads} "
                f"mlp_ratio={mlp_ratio}"
            )
        self.embed = torch.nn.Linear(in_channels, hidden_size)
        self.time_proj = Timesteps(hidden_size, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(hidden_size, hidden_size)
        self.blocks = torch.nn.ModuleList(_Block(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.norm_out = AdaLayerNormContinuous(hidden_size, hidden_size, elementwise_affine=False, eps=1e-6)
        self.proj_out = torch.nn.Linear(hidden_size, in_channels)
        torch.nn.init.zeros_(self.norm_out.linear.weight)
        torch.nn.init.zeros_(self.norm_out.linear.bias)
        torch.nn.init.zeros_(self.proj_out.weight)
        torch.nn.init.zeros_(self.proj_out.bias)
        self._positions: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    def _position(self, horizon: int, like: torch.Tensor) -> torch.Tensor:
        """``[1, H, hidden]`` fixed sine-cosine embedding of the steps ``0..H-1`` (cached per shape)."""
        key = (horizon, like.device, like.dtype)
        if key not in self._positions:
            steps = torch.arange(horizon, dtype=torch.float64)
            table = get_1d_sincos_pos_embed_from_grid(self.config.hidden_size, steps, output_type="pt")
            self._positions[key] = table.to(like.device, like.dtype)[None]
        return self._positions[key]

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int) -> UNet1DOutput:
        """Denoise.

        Args:
            sample: ``[B, C, H]`` noisy trajectories, channels first (as ``UNet1DModel`` takes them).
            timestep: ``[B]`` diffusion steps, or one step for the whole batch.

        Returns:
            ``UNet1DOutput`` whose ``sample`` is ``[B, C, H]``.
        """
        batch, _, horizon = sample.shape
        t = torch.as_tensor(timestep, device=sample.device)
        if t.ndim == 0:
            t = t[None]
        t = t.expand(batch)
        emb = self.time_embed(self.time_proj(t).to(sample.dtype))
        x = self.embed(sample.transpose(1, 2)) + self._position(horizon, sample)
        for block in self.blocks:
            x = block(x, emb)
        x = self.proj_out(self.norm_out(x, emb))
        return UNet1DOutput(sample=x.transpose(1, 2))
