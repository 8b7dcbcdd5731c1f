"""Run folders: ``diffplan.json`` metadata, shipped runs, and checked loading of the components.

A run folder is a diffusers pipeline folder (``model_index.json``, ``unet/``,
``value_function/``, ``scheduler/``, ``normalizer/``) plus ``diffplan.json`` (this module's
:class:`RunInfo`, which records the normalizer too: folders written before it was registered have no
``normalizer/``), and
optionally ``inverse_dynamics/``, ``critic/`` and ``state_value/`` (diffusers model folders) and ``fine/`` (the fine
level of a coarse-to-fine planner: a run folder itself).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from diffplan.config import EvalConfig, PlanConfig
from diffplan.data.normalization import TrajectoryNormalizer
from diffplan.io import atomic_write_json, disk_full_reported, read_json, replace_dir

if TYPE_CHECKING:
    from diffusers import ModelMixin

    from diffplan.models import InverseDynamics, QFunction, StateValue
    from diffplan.planning.normalizer import Normalizer
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


def _load_model(path: Path, sub: str, cls: Any = None) -> Any:
    """Load ``path/sub``: as ``cls``, or as the denoiser class its config names (U-Net or DiT)."""
    from diffplan.models import DENOISERS

    folder = path / sub
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"run folder {path} lacks {sub}/config.json")
    if cls is None:
        name = read_json(folder / "config.json").get("_class_name", "UNet1DModel")
        if name not in DENOISERS:
            raise ValueError(f"{folder}/config.json names {name!r}; expected one of {sorted(DENOISERS)}")
        cls = DENOISERS[name]
    if not any((folder / f).is_file() for f in _MODEL_FILES):
        raise FileNotFoundError(f"run folder {path} lacks {sub}/{_MODEL_FILES[0]}")
    try:
        return cls.from_pretrained(folder)
    except Exception as err:  # diffusers/safetensors raise many types for corrupt files
        raise ValueError(
            f"cannot load {folder}: the weights or config are corrupt ({type(err).__name__}: {err})"
        ) from err


def _load_scheduler(path: Path) -> Any:
    from diffusers import DDIMScheduler, DDPMScheduler

    cfg_path = path / "scheduler" / "scheduler_config.json"
    cfg = read_json(cfg_path)
    classes = {"DDPMScheduler": DDPMScheduler, "DDIMScheduler": DDIMScheduler}
    name = cfg.get("_class_name", "DDPMScheduler")
    if name not in classes:
        raise ValueError(f"{cfg_path} names scheduler {name!r}; expected one of {sorted(classes)}")
    return classes[name].from_config(cfg)


def load_optional(path: Path, sub: str) -> Any:
    """The run's :class:`~diffplan.models.InverseDynamics` (``sub="inverse_dynamics"``),
    :class:`~diffplan.models.QFunction` (``sub="critic"``) or :class:`~diffplan.models.StateValue`
    (``sub="state_value"``), or ``None`` when it has none.

    Raises:
        FileNotFoundError, ValueError: the folder exists but is incomplete or corrupt.
    """
    from diffplan.models import InverseDynamics, QFunction, StateValue

    if not (path / sub).is_dir():
        return None
    return _load_model(path, sub, {INVERSE_DYNAMICS: InverseDynamics, CRITIC: QFunction, STATE_VALUE: StateValue}[sub])


def load_components(path: Path, *, need_info: bool = True) -> tuple[Any, Any, Any, RunInfo | None]:
    """Load ``(unet, value_function, scheduler, info)`` from a run folder with clear errors.

    Args:
        path: the run folder.
        need_info: ``diffplan.json`` must exist (nothing else records the normalizer).

    Raises:
        FileNotFoundError: a required file is missing.
        ValueError: a file is corrupt, or the networks do not match the recorded dimensions.
    """
    info_path = path / RUN_INFO
    info = None
    if not info_path.is_file() and (path / "training" / "progress.json").is_file():
        raise FileNotFoundError(
            f"run folder {path} lacks {RUN_INFO}: its training has not finished; continue it with "
            f"`diffplan train DATASET --out {path} --resume`"
        )
    if info_path.is_file() or need_info:
        if not info_path.is_file():
            raise FileNotFoundError(
                f"run folder {path} lacks {RUN_INFO} (normalizer and run metadata); pass normalizer= to load "
                "a plain diffusers folder"
            )
        info = RunInfo.from_dict(read_json(info_path), where=str(info_path))
    unet = _load_model(path, "unet")
    index = read_json(path / "model_index.json") if (path / "model_index.json").is_file() else {}
    no_value = index.get("value_function") in ([None, None], None) and "value_function" in index
    value_function = None if no_value else _load_model(path, "value_function")
    scheduler = _load_scheduler(path)
    if info is not None:
        full = info.normalizer.act_dim + info.normalizer.obs_dim
        if unet.config.in_channels not in (full, info.normalizer.obs_dim):
            raise ValueError(
                f"{path}/unet takes {unet.config.in_channels} channels but {RUN_INFO} records act_dim + obs_dim = "
                f"{full} (or obs_dim = {info.normalizer.obs_dim} for states-only runs)"
            )
        if value_function is not None and value_function.config.in_channels != unet.config.in_channels:
            raise ValueError(
                f"{path}/value_function takes {value_function.config.in_channels} channels, the denoiser "
                f"{unet.config.in_channels}"
            )
    return unet, value_function, scheduler, info


def normalizer_from_env(env: Any) -> TrajectoryNormalizer:
    """The normalizer fitted to a D4RL-style ``env.get_dataset()``.

    Raises:
        ValueError: ``env`` is ``None`` or has no ``get_dataset()``.
    """
    if env is None or not hasattr(env, "get_dataset"):
        raise ValueError("expected normalizer=TrajectoryNormalizer(...) or a D4RL env with get_dataset(); got neither")
    data = env.get_dataset()
    return TrajectoryNormalizer.fit(observations=np.asarray(data["observations"]), actions=np.asarray(data["actions"]))


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


def load_normalizer(path: Path, info: RunInfo | None) -> TrajectoryNormalizer | Normalizer | None:
    """The run's normalizer: its registered component as loaded (``normalizer/``, in folders written
    since the normalizer was registered), or ``diffplan.json``'s record (every version); ``None`` if
    neither.

    Raises:
        FileNotFoundError, ValueError: ``normalizer/`` is incomplete or corrupt, or differs from
            ``diffplan.json``'s record.
    """
    from diffplan.planning.normalizer import Normalizer

    if not (path / NORMALIZER).is_dir():
        return info.normalizer if info else None
    found = _load_model(path, NORMALIZER, Normalizer)
    if info is not None and found.trajectory.to_dict() != info.normalizer.to_dict():
        raise ValueError(
            f"{path}/{NORMALIZER}/config.json and {path}/{RUN_INFO} record different normalizers; "
            "expected the same (the folder was edited by hand?)"
        )
    return found


def load_parts(
    path: Path,
    *,
    normalizer: TrajectoryNormalizer | Normalizer | None,
    env: Any,
    load_fine: Callable[[Path], ValueGuidedRLPipeline],
) -> dict[str, Any]:
    """A run folder's pipeline constructor arguments, each file checked (see :func:`load_components`).

    Args:
        path: the run folder.
        normalizer: replaces the recorded one (needed for a folder without ``diffplan.json``).
        env: passed on (a D4RL env fits the normalizer of a folder without ``diffplan.json``).
        load_fine: loads the fine level's run folder (``path/fine``) when there is one.
    """
    unet, value_function, scheduler, info = load_components(
        path, need_info=normalizer is None and env is None and not (path / NORMALIZER).is_dir()
    )
    return {
        "value_function": value_function,
        "unet": unet,
        "scheduler": scheduler,
        "env": env,
        "normalizer": normalizer or load_normalizer(path, info),
        "plan_config": info.plan if info else None,
        "info": info,
        "inverse_dynamics": load_optional(path, INVERSE_DYNAMICS),
        "critic": load_optional(path, CRITIC),
        "state_value": load_optional(path, STATE_VALUE),
        "fine": load_fine(path / FINE) if (path / FINE / RUN_INFO).is_file() else None,
    }


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
