"""Run folders: ``diffplan.json`` metadata, shipped runs, and the checks before diffusers loads one.

A run folder is a diffusers pipeline folder (``model_index.json``, ``unet/``, ``value_function/``,
``scheduler/``, ``normalizer/``, and optionally ``inverse_dynamics/``, ``critic/``, ``state_value/``
and ``fine/``, the fine level of a coarse-to-fine planner: a run folder itself) plus ``diffplan.json``
(this module's :class:`RunInfo`: planner and evaluation defaults, metadata, and the normalizer, which
folders written before it was registered hold only there). diffusers' own
``DiffusionPipeline.from_pretrained`` loads the components; this module finds shipped runs by name,
names a missing or cut-short file before diffusers meets it, and supplies what ``model_index.json``
does not hold (:func:`pretrained_arguments`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from diffplan.config import EvalConfig, PlanConfig
from diffplan.data.normalization import TrajectoryNormalizer
from diffplan.io import atomic_write_json, disk_full_reported, read_json, replace_dir
from diffplan.planning.normalizer import Normalizer

if TYPE_CHECKING:
    from diffusers import ModelMixin

    from diffplan.models import InverseDynamics, QFunction, StateValue
    from diffplan.planning.pipeline import ValueGuidedRLPipeline

FORMAT_VERSION = 1
RUN_INFO = "diffplan.json"
INVERSE_DYNAMICS = "inverse_dynamics"  # optional subfolders of a run (diffusers model folders)
CRITIC = "critic"
STATE_VALUE = "state_value"
FINE = "fine"  # optional subfolder: the fine level's run folder
NORMALIZER = "normalizer"  # the registered normalizer (diffusers model folder); diffplan.json records it too
_MODEL_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


@dataclass(frozen=True)
class RunInfo:
    """What a run folder records besides the networks.

    Attributes:
        normalizer: per-dimension observation and action normalizer.
        plan: planner defaults.
        evaluation: evaluation defaults (execution and episodes of the run's reported figure).
        env_id: Gymnasium id the run was trained for.
        dataset_id: training dataset.
        horizon: trained window length.
        stride: environment steps between planned steps (``TrainConfig.stride``).
        preset: the preset (as a dict) the run was trained with.
        ref_min_score: return normalizing to 0, when known.
        ref_max_score: return normalizing to 100, when known.
        extra: anything else (training summary).
    """

    normalizer: TrajectoryNormalizer
    plan: PlanConfig = field(default_factory=PlanConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    env_id: str | None = None
    dataset_id: str | None = None
    horizon: int | None = None
    stride: int = 1
    preset: dict[str, Any] | None = None
    ref_min_score: float | None = None
    ref_max_score: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of this object."""
        return {
            "format_version": FORMAT_VERSION,
            "env_id": self.env_id,
            "dataset_id": self.dataset_id,
            "obs_dim": self.normalizer.obs_dim,
            "act_dim": self.normalizer.act_dim,
            "horizon": self.horizon,
            "stride": self.stride,
            "normalizer": self.normalizer.to_dict(),
            "plan": self.plan.to_dict(),
            "evaluation": self.evaluation.to_dict(),
            "preset": self.preset,
            "ref_min_score": self.ref_min_score,
            "ref_max_score": self.ref_max_score,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = RUN_INFO) -> RunInfo:
        """Rebuild from :meth:`to_dict` output (ValueError on a malformed record)."""
        try:
            if data.get("format_version") != FORMAT_VERSION:
                raise ValueError(f"format_version {data.get('format_version')!r}, expected {FORMAT_VERSION}")
            return cls(
                normalizer=TrajectoryNormalizer.from_dict(data["normalizer"]),
                plan=PlanConfig.from_dict(data["plan"]),
                evaluation=EvalConfig.from_dict(data.get("evaluation") or {}),
                env_id=data.get("env_id"),
                dataset_id=data.get("dataset_id"),
                horizon=data.get("horizon"),
                stride=int(data.get("stride", 1)),
                preset=data.get("preset"),
                ref_min_score=data.get("ref_min_score"),
                ref_max_score=data.get("ref_max_score"),
                extra=data.get("extra") or {},
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where} is not a valid diffplan run record: {err}") from err


def shipped_runs_dir() -> Path:
    """Folder of the runs shipped inside the package (``diffplan/runs``)."""
    return Path(str(resources.files("diffplan"))) / "runs"


def list_runs() -> list[str]:
    """Names of the runs shipped inside the package."""
    root = shipped_runs_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / RUN_INFO).is_file())


def resolve_run(name_or_path: str | os.PathLike) -> Path:
    """A run folder path, or the folder of a shipped run of that name.

    Raises:
        FileNotFoundError: neither a folder nor a shipped run name.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    shipped = shipped_runs_dir() / str(name_or_path)
    if shipped.is_dir():
        return shipped
    raise FileNotFoundError(
        f"no run folder at {path} and no shipped run named {str(name_or_path)!r}; shipped runs: {list_runs() or 'none'}"
    )


def _check_model_files(path: Path, sub: str) -> None:
    """``path/sub`` holds a config and a weights file whose safetensors header reads (diffusers' own
    loader then loads it; this names the file when one is missing or cut short).

    Raises:
        FileNotFoundError: the config or the weights file is missing.
        ValueError: the weights file is corrupt (e.g. cut short by a full disk).
    """
    from safetensors import SafetensorError, safe_open

    folder = path / sub
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"run folder {path} lacks {sub}/config.json")
    weights = [folder / f for f in _MODEL_FILES if (folder / f).is_file()]
    if not weights:
        raise FileNotFoundError(f"run folder {path} lacks {sub}/{_MODEL_FILES[0]}")
    read_json(folder / "config.json")
    if weights[0].suffix == ".safetensors":
        try:
            with safe_open(str(weights[0]), "pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise ValueError(f"cannot load {folder}: the weights or config are corrupt ({err})") from err


def read_run(path: Path, *, need_info: bool) -> tuple[RunInfo | None, dict[str, Any]]:
    """Check a run folder before diffusers' ``from_pretrained`` loads it: ``(diffplan.json's record or
    None, model_index.json)``.

    Args:
        path: the run folder.
        need_info: ``diffplan.json`` must exist (nothing else records the normalizer).

    Raises:
        FileNotFoundError: a required file is missing (named), or the run's training has not finished.
        ValueError: a file is corrupt.
    """
    info_path = path / RUN_INFO
    if not info_path.is_file() and (path / "training" / "progress.json").is_file():
        raise FileNotFoundError(
            f"run folder {path} lacks {RUN_INFO}: its training has not finished; continue it with "
            f"`diffplan train DATASET --out {path} --resume`"
        )
    if need_info and not info_path.is_file():
        raise FileNotFoundError(
            f"run folder {path} lacks {RUN_INFO} (normalizer and run metadata); pass normalizer= to load "
            "a plain diffusers folder"
        )
    info = RunInfo.from_dict(read_json(info_path), where=str(info_path)) if info_path.is_file() else None
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(f"run folder {path} lacks model_index.json (the diffusers pipeline's index)")
    index = read_json(path / "model_index.json")
    named = [sub for sub, entry in index.items() if isinstance(entry, list) and entry[0] is not None]
    for sub in named:
        if sub == "scheduler":
            if not (path / sub / "scheduler_config.json").is_file():
                raise FileNotFoundError(f"run folder {path} lacks scheduler/scheduler_config.json")
        elif sub == FINE or (sub == NORMALIZER and not (path / sub).is_dir()):
            continue  # the fine level is loaded (and checked) as a run folder; diffplan.json records the normalizer
        else:
            _check_model_files(path, sub)
    return info, index


def older_components(path: Path, index: dict[str, Any]) -> dict[str, Any]:
    """Models of folders written before they were registered: a subfolder ``inverse_dynamics/``,
    ``critic/`` or ``state_value/`` that ``model_index.json`` does not name, loaded as its class."""
    from diffplan.models import InverseDynamics, QFunction, StateValue

    classes = {INVERSE_DYNAMICS: InverseDynamics, CRITIC: QFunction, STATE_VALUE: StateValue}
    found = {}
    for sub, cls in classes.items():
        if sub not in index and (path / sub).is_dir():
            _check_model_files(path, sub)
            found[sub] = cls.from_pretrained(path / sub)
    return found


def pretrained_arguments(
    path: Path,
    *,
    normalizer: TrajectoryNormalizer | Normalizer | None,
    env: object,
    load_fine: Callable[[Path], ValueGuidedRLPipeline],
) -> dict[str, Any]:
    """What the pipeline's ``from_pretrained`` gives diffusers' loader besides the components that
    ``model_index.json`` names, the folder checked first (see :func:`read_run`).

    Args:
        path: the run folder.
        normalizer: replaces the registered one (needed for a folder with neither ``normalizer/`` nor
            ``diffplan.json``, e.g. one written by diffusers' own pipeline).
        env: passed on (a D4RL env fits the normalizer of such a folder).
        load_fine: loads the fine level's run folder (``path/fine``) when there is one.

    Returns:
        Keyword arguments: ``env``, ``plan_config`` and ``info`` (from ``diffplan.json``), the
        normalizer unless ``normalizer/`` is to be loaded, the fine level, and models of older folders
        (:func:`older_components`).
    """
    registered = (path / NORMALIZER).is_dir()
    info, index = read_run(path, need_info=normalizer is None and env is None and not registered)
    given: dict[str, Any] = {"env": env, "plan_config": info.plan if info else None, "info": info}
    given |= older_components(path, index)
    if normalizer is not None or not registered:
        recorded = info.normalizer if info else None
        given[NORMALIZER] = Normalizer.given(normalizer if normalizer is not None else recorded, env=env)
    if (path / FINE / RUN_INFO).is_file():
        given[FINE] = load_fine(path / FINE)
    return given


def check_recorded_normalizer(path: Path, loaded: TrajectoryNormalizer, info: RunInfo | None) -> None:
    """``normalizer/`` and ``diffplan.json`` must record the same normalizer.

    Raises:
        ValueError: they differ.
    """
    if info is not None and loaded.to_dict() != info.normalizer.to_dict():
        raise ValueError(
            f"{path}/{NORMALIZER}/config.json and {path}/{RUN_INFO} record different normalizers; "
            "expected the same (the folder was edited by hand?)"
        )


def check_parts(
    *,
    normalizer: TrajectoryNormalizer,
    unet: ModelMixin,
    value_function: ModelMixin | None,
    inverse_dynamics: InverseDynamics | None,
    critic: QFunction | None,
    state_value: StateValue | None,
    fine: ValueGuidedRLPipeline | None,
) -> None:
    """Check that a pipeline's parts fit together: channels and ``(obs_dim, act_dim)`` of each.

    Raises:
        ValueError: naming the part that does not fit and both sizes.
    """
    obs_dim, act_dim = normalizer.obs_dim, normalizer.act_dim
    transition = unet.config.in_channels
    if transition not in (act_dim + obs_dim, obs_dim):
        raise ValueError(
            f"the denoiser takes {transition} channels but the normalizer has act_dim {act_dim} "
            f"+ obs_dim {obs_dim} (or obs_dim alone for states-only plans)"
        )
    if transition == obs_dim and inverse_dynamics is None:
        raise ValueError(
            "the denoiser diffuses states only (obs_dim channels): expected inverse_dynamics= to make the "
            "plans' actions, got none"
        )
    if value_function is not None and value_function.config.in_channels != transition:
        raise ValueError(f"denoiser takes {transition} channels, value function {value_function.config.in_channels}")

    def dims(config: Any) -> tuple[int, int]:
        return int(config.obs_dim), int(config.act_dim)

    for name, found in (
        ("inverse dynamics", None if inverse_dynamics is None else dims(inverse_dynamics.config)),
        ("critic", None if critic is None else dims(critic.config)),
        ("state value", None if state_value is None else (int(state_value.config.obs_dim), act_dim)),
        ("fine level", None if fine is None else (fine.obs_dim, fine.act_dim)),
    ):
        if found is not None and found != (obs_dim, act_dim):
            raise ValueError(f"the {name} has obs_dim, act_dim {found} but the normalizer {obs_dim}, {act_dim}")


def save_run(out: Path, *, write: Callable[[str], None], models: list[torch.nn.Module], info: RunInfo) -> None:
    """Write a run folder: the diffusers folder (``write(tmp)``, e.g. diffusers' ``save_pretrained``)
    into a temporary folder inside ``out`` whose entries then replace those of ``out`` one by one,
    then ``diffplan.json``; a full disk is reported with the bytes ``models`` need."""
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    needed = sum(p.numel() * p.element_size() for m in models for p in m.parameters())
    with (
        tempfile.TemporaryDirectory(dir=out, prefix=".save-") as tmp,
        disk_full_reported(f"the run folder {out}", out, needed=needed),
    ):
        write(tmp)
        for entry in sorted(Path(tmp).iterdir()):
            if entry.is_dir():
                replace_dir(entry, out / entry.name)
            else:
                entry.replace(out / entry.name)
    atomic_write_json(out / RUN_INFO, info.to_dict())
