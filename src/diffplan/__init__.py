"""diffplan: value-guided diffusion planning (Janner et al., 2022) on diffusers, Gymnasium and Minari.

Public API::

    from diffplan import ValueGuidedRLPipeline
    pipe = ValueGuidedRLPipeline.from_pretrained(run_dir)
    action = pipe(obs)                      # [obs_dim] -> [act_dim]
    plan = pipe.plan(obs, generator=g)      # actions [B, H, A], observations [B, H, S], values [B]
"""

from importlib import import_module
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = _metadata.version("diffplan")
except _metadata.PackageNotFoundError:  # run from a source tree that was not installed
    __version__ = "0+unknown"

# The public names, imported on first use (PEP 562) so that `import diffplan.cli` (and so
# `diffplan --help`) does not load torch, diffusers and gymnasium.
_EXPORTS = {
    "DiTConfig": "diffplan.config",
    "DiT1DModel": "diffplan.transformer",
    "DiffusionConfig": "diffplan.config",
    "PlanConfig": "diffplan.config",
    "Preset": "diffplan.config",
    "TrainConfig": "diffplan.config",
    "UNetConfig": "diffplan.config",
    "ValueConfig": "diffplan.config",
    "EpisodeSet": "diffplan.data",
    "TrajectoryNormalizer": "diffplan.data",
    "WindowDataset": "diffplan.data",
    "load_episodes": "diffplan.data",
    "EvalResult": "diffplan.evaluation",
    "evaluate": "diffplan.evaluation",
    "Plan": "diffplan.planning",
    "RunInfo": "diffplan.planning",
    "ValueGuidedRLPipeline": "diffplan.planning",
    "list_runs": "diffplan.planning",
    "PRESETS": "diffplan.presets",
    "get_preset": "diffplan.presets",
    "TrainResult": "diffplan.training",
    "train": "diffplan.training",
}

if TYPE_CHECKING:
    from diffplan.config import DiffusionConfig, DiTConfig, PlanConfig, Preset, TrainConfig, UNetConfig, ValueConfig
    from diffplan.data import EpisodeSet, TrajectoryNormalizer, WindowDataset, load_episodes
    from diffplan.evaluation import EvalResult, evaluate
    from diffplan.planning import Plan, RunInfo, ValueGuidedRLPipeline, list_runs
    from diffplan.presets import PRESETS, get_preset
    from diffplan.training import TrainResult, train
    from diffplan.transformer import DiT1DModel


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diffplan' has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "DiT1DModel",
    "DiTConfig",
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
