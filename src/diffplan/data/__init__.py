"""Offline data: episodes, training windows and normalizers."""

from diffplan.data.episodes import Episode, EpisodeSet, load_episodes, load_hdf5, load_minari
from diffplan.data.normalization import DimNormalizer, TrajectoryNormalizer
from diffplan.data.windows import WindowDataset, discounted_returns

__all__ = [
    "DimNormalizer",
    "Episode",
    "EpisodeSet",
    "TrajectoryNormalizer",
    "WindowDataset",
    "discounted_returns",
    "load_episodes",
    "load_hdf5",
    "load_minari",
]
