"""diffplan: value-guided diffusion planning (Janner et al., 2022) on diffusers, Gymnasium and Minari.

Public API::

    from diffplan import ValueGuidedRLPipeline
    pipe = ValueGuidedRLPipeline.from_pretrained(run_dir)
    action = pipe(obs)                      # [obs_dim] -> [act_dim]
    plan = pipe.plan(obs, generator=g)      # actions [B, H, A], observations [B, H, S], values [B]
"""

from importlib import metadata as _metadata

from diffplan.config import DiffusionConfig, PlanConfig, Preset, TrainConfig, UNetConfig, ValueConfig
from diffplan.data import EpisodeSet, TrajectoryNormalizer, WindowDataset, load_episodes
from diffplan.evaluation import EvalResult, evaluate
from diffplan.planning import Plan, RunInfo, ValueGuidedRLPipeline, list_runs
from diffplan.presets import PRESETS, get_preset
from diffplan.training import TrainResult, train

try:
    __version__ = _metadata.version("diffplan")
except _metadata.PackageNotFoundError:  # run from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "PRESETS",
    "DiffusionConfig",
    "EpisodeSet",
    "EvalResult",
    "Plan",
    "PlanConfig",
    "Preset",
    "RunInfo",
    "TrainConfig",
    "TrainResult",
    "TrajectoryNormalizer",
    "UNetConfig",
    "ValueConfig",
    "ValueGuidedRLPipeline",
    "WindowDataset",
    "evaluate",
    "get_preset",
    "list_runs",
    "load_episodes",
    "train",
]
