"""Training windows: every start index of every episode, normalized, with value targets.

Episodes are stored once, concatenated and padded at their ends by repeating the last step, so a
window ``[t, t + H)`` exists for every step ``t`` of every episode without materialising windows.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from diffplan.data.episodes import EpisodeSet
from diffplan.data.normalization import TrajectoryNormalizer


def discounted_returns(
    rewards: np.ndarray, *, discount: float, terminated: bool, termination_penalty: float
) -> np.ndarray:
    """Discounted return-to-go of every step of one episode.

    Args:
        rewards: ``[T]``.
        discount: gamma.
        terminated: the last step is terminal; ``termination_penalty`` is added to its reward.
        termination_penalty: e.g. -100.

    Returns:
        ``[T]`` with ``out[t] = sum_k gamma^k r_{t+k}`` to the episode's end.
    """
    r = np.asarray(rewards, dtype=np.float64).copy()
    if terminated and len(r):
        r[-1] += termination_penalty
    out = np.empty_like(r)
    acc = 0.0
    for t in range(len(r) - 1, -1, -1):
        acc = r[t] + discount * acc
        out[t] = acc
    return out


class WindowDataset:
    """Normalized windows ``[H, act_dim + obs_dim]`` (actions first) and their value targets.

    Args:
        episodes: the source episodes.
        horizon: window length H; at least one episode must span ``(H - 1) * stride + 1`` steps.
        stride: environment steps between consecutive window steps.
        normalizer: fitted normalizer; fitted on all steps (of kind ``normalizer_kind``) when ``None``.
        discount: gamma of the value targets.
        termination_penalty: added to the reward of terminal last steps.
        normalizer_kind: ``"gaussian"`` or ``"limits"``, when the normalizer is fitted here.

    Raises:
        ValueError: every episode is shorter than the horizon.
    """

    def __init__(
        self,
        *,
        episodes: EpisodeSet,
        horizon: int,
        stride: int = 1,
        normalizer: TrajectoryNormalizer | None = None,
        discount: float = 0.997,
        termination_penalty: float = -100.0,
        normalizer_kind: str = "gaussian",
    ) -> None:
        lengths = np.array([len(e) for e in episodes.episodes])
        if stride < 1:
            raise ValueError(f"expected stride >= 1, got {stride}")
        span = (horizon - 1) * stride + 1  # environment steps one window covers
        if horizon < 1 or lengths.max() < span:
            raise ValueError(
                f"horizon {horizon} (stride {stride}: {span} steps) is longer than every episode of "
                f"{episodes.dataset_id} (longest {lengths.max()} steps); use a shorter horizon or longer episodes"
            )
        short = int((lengths < span).sum())
        if short:
            warnings.warn(
                f"{short} of {len(lengths)} episodes are shorter than the horizon {horizon} "
                f"({span} steps); they are padded by repeating their last step",
                stacklevel=2,
            )
        obs = np.concatenate([e.observations for e in episodes.episodes])
        act = np.concatenate([e.actions for e in episodes.episodes])
        self.normalizer = normalizer or TrajectoryNormalizer.fit(observations=obs, actions=act, kind=normalizer_kind)
        if (self.normalizer.obs_dim, self.normalizer.act_dim) != (obs.shape[1], act.shape[1]):
            raise ValueError(
                f"normalizer is for obs_dim {self.normalizer.obs_dim}, act_dim {self.normalizer.act_dim}; "
                f"the data has {obs.shape[1]} and {act.shape[1]}"
            )
        self.horizon, self.stride = horizon, stride
        self.obs_dim, self.act_dim = obs.shape[1], act.shape[1]
        rows, starts, values, rewards, terminal = [], [], [], [], []
        offset = 0
        for ep in episodes.episodes:
            traj = np.concatenate([ep.actions, ep.observations], axis=1)
            # at least one padding row: the "next state" of an episode's last step (TD transitions)
            padded = np.concatenate([traj, np.repeat(traj[-1:], max(span - 1, 1), axis=0)])
            rows.append(padded)
            starts.append(offset + np.arange(len(ep)))
            values.append(
                discounted_returns(
                    ep.rewards, discount=discount, terminated=ep.terminated, termination_penalty=termination_penalty
                )
            )
            ends = np.zeros(len(ep), dtype=bool)
            ends[-1] = ep.terminated
            rewards.append(np.asarray(ep.rewards, dtype=np.float64) + termination_penalty * ends)
            terminal.append(ends)
            offset += len(padded)
        flat = self.normalizer.normalize(np.concatenate(rows))
        self.data = torch.as_tensor(flat, dtype=torch.float32)
        self.starts = torch.as_tensor(np.concatenate(starts), dtype=torch.long)
        self.values = torch.as_tensor(np.concatenate(values), dtype=torch.float32)
        self.rewards = torch.as_tensor(np.concatenate(rewards), dtype=torch.float32)  # [N] per start, penalty added
        self.terminal = torch.as_tensor(np.concatenate(terminal), dtype=torch.bool)  # [N] per start
        self.value_range = (float(self.values.min()), float(self.values.max()))
        self._offsets = torch.arange(horizon) * stride

    def to(self, device: str | torch.device) -> WindowDataset:
        """Keep the windows, their starts and value targets on ``device`` (batches are then drawn
        there, from a generator on that device); returns ``self``."""
        self.data, self.starts = self.data.to(device), self.starts.to(device)
        self.values, self._offsets = self.values.to(device), self._offsets.to(device)
        self.rewards, self.terminal = self.rewards.to(device), self.terminal.to(device)
        return self

    @property
    def value_scale(self) -> float:
        """The largest absolute discounted return-to-go of the data (at least 1e-6)."""
        return max(abs(self.value_range[0]), abs(self.value_range[1]), 1e-6)

    def value_weights(self, values: torch.Tensor, *, factor: float) -> torch.Tensor:
        """Loss weights ``exp(factor * (v - 1))`` of windows whose returns-to-go are ``values: [B]``,
        with ``v`` the return mapped from the data's ``[min, max]`` to ``[-1, 1]`` (1: the best window).

        Returns:
            ``[B]`` weights in ``[exp(-2 * factor), 1]``.
        """
        low, high = self.value_range
        v = 2 * (values - low) / max(high - low, 1e-6) - 1
        return torch.exp(factor * (v - 1))

    def td_transitions(self, batch_size: int, *, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Random ``(state, reward, next_state, terminal)`` of single environment steps.

        ``reward`` carries the termination penalty on the terminal step of an episode; the next
        state of an episode's last step is that step's own state (its padding), which a terminal
        step never bootstraps from.

        Returns:
            ``state: [B, S]`` and ``next_state: [B, S]`` normalized, ``reward: [B]`` and
            ``terminal: [B]`` (bool).
        """
        index = torch.randint(len(self), (batch_size,), generator=generator, device=self.device)
        rows = self.starts[index]
        now, later = self.data[rows, self.act_dim :], self.data[rows + 1, self.act_dim :]
        return now, self.rewards[index], later, self.terminal[index]

    @property
    def device(self) -> torch.device:
        """Where the windows are kept (and batches drawn)."""
        return self.data.device

    @property
    def transition_dim(self) -> int:
        """Channels of a trajectory step, ``act_dim + obs_dim``."""
        return self.act_dim + self.obs_dim

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows and value targets for window indices ``index: [B]``.

        Returns:
            ``x: [B, H, act_dim + obs_dim]`` normalized, and ``values: [B]``.
        """
        rows = self.starts[index][:, None] + self._offsets[None]
        return self.data[rows], self.values[index]

    def transitions(self, batch_size: int, *, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """Random ``(state, target, lookahead, action)`` of the inverse dynamics, normalized.

        ``target`` is the state ``lookahead`` (uniform in ``1..stride``) environment steps after
        ``state`` (the episode's last state past its end), ``action`` the one taken at ``state``.

        Returns:
            ``state: [B, S]``, ``target: [B, S]``, ``lookahead: [B]`` and ``action: [B, A]``.
        """
        rows = self.starts[torch.randint(len(self), (batch_size,), generator=generator, device=self.device)]
        lookahead = torch.randint(1, self.stride + 1, (batch_size,), generator=generator, device=self.device)
        now, later = self.data[rows], self.data[rows + lookahead]
        return now[:, self.act_dim :], later[:, self.act_dim :], lookahead, now[:, : self.act_dim]

    def sample(self, batch_size: int, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A uniformly random batch of windows (see :meth:`batch`), drawn with ``generator`` on :attr:`device`."""
        return self.batch(torch.randint(len(self), (batch_size,), generator=generator, device=self.device))
