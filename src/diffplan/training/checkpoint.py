"""Resumable training state of one phase, as safetensors plus JSON (no pickles).

``training/<phase>/`` holds ``model.safetensors`` (raw weights), ``ema.safetensors`` (EMA
shadow weights), ``optimizer.safetensors`` (optimizer tensors) and ``state.json`` (step, losses,
optimizer hyper-parameters, EMA counters). The folder is written beside its target and swapped in.

Not accelerate's ``save_state``/``register_for_checkpointing``: it pickles the optimizer and the RNG
states (``torch.save``), which the project's checkpoints must not contain, and it writes in place, so a
kill or a full disk mid-write leaves no intact checkpoint; resumes here are bit-identical because every
batch is drawn from a generator seeded by ``(seed, phase, step, process)``, not from saved RNG states.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from diffplan.io import atomic_write_json, disk_full_reported, read_json, replace_dir


@dataclass
class PhaseState:
    """Progress of one training phase.

    Attributes:
        step: optimizer steps done.
        losses: ``[step, loss]`` pairs logged so far.
        seconds: wall-clock seconds spent in the training loop so far (summed over resumed invocations).
    """

    step: int = 0
    losses: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0


def _cpu(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous()


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, entries in state_dict["state"].items():
        for key, val in entries.items():
            if isinstance(val, torch.Tensor):
                tensors[f"{pid}.{key}"] = _cpu(val)
            else:
                scalars[f"{pid}.{key}"] = val
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, val in list(tensors.items()) + list(meta["scalars"].items()):
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = val
    return {"state": state, "param_groups": meta["param_groups"]}


def save_phase(
    *, folder: Path, model: torch.nn.Module, ema: Any, optimizer: torch.optim.Optimizer, state: PhaseState
) -> None:
    """Write a phase checkpoint to ``folder`` atomically: the files go to a hidden folder beside it,
    which replaces ``folder`` only when complete (and is removed when a write fails).

    Args:
        folder: ``RUN/training/<phase>``.
        model: the trained (unwrapped) network.
        ema: diffusers ``EMAModel`` of the network.
        optimizer: its optimizer.
        state: step and loss history.

    Raises:
        DiskFullError: no space for the checkpoint; the previous one is intact.
    """
    weights = {k: _cpu(v) for k, v in model.state_dict().items()}
    ema_state = ema.state_dict()
    shadow = {f"{i}": _cpu(p) for i, p in enumerate(ema_state.pop("shadow_params"))}
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    meta = {"step": state.step, "losses": state.losses, "seconds": state.seconds, "optimizer": opt_meta}
    needed = sum(t.numel() * t.element_size() for part in (weights, shadow, opt_tensors) for t in part.values())
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        with disk_full_reported(f"the checkpoint of step {state.step} ({folder})", folder.parent, needed=needed):
            save_file(weights, str(tmp / "model.safetensors"))
            save_file(shadow, str(tmp / "ema.safetensors"))
            save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
            atomic_write_json(tmp / "state.json", meta | {"ema": ema_state})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the previous checkpoint stays the only one
        raise
    replace_dir(tmp, folder)


def load_phase(*, folder: Path, model: torch.nn.Module, ema: Any, optimizer: torch.optim.Optimizer) -> PhaseState:
    """Restore a phase checkpoint written by :func:`save_phase` into the given objects.

    Raises:
        FileNotFoundError: a checkpoint file is missing.
        ValueError: a file is corrupt or belongs to another network.
    """
    meta = read_json(folder / "state.json")
    try:
        weights = load_file(str(folder / "model.safetensors"))
        model.load_state_dict(weights)
        shadow = load_file(str(folder / "ema.safetensors"))
        ema_state = dict(meta["ema"])
        ema_state["shadow_params"] = [shadow[str(i)] for i in range(len(shadow))]
        ema.load_state_dict(ema_state)
        opt = _unflatten_optimizer(load_file(str(folder / "optimizer.safetensors")), meta["optimizer"])
        optimizer.load_state_dict(opt)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise ValueError(f"cannot resume from {folder}: {type(err).__name__}: {err}") from err
    return PhaseState(
        step=int(meta["step"]), losses=[list(x) for x in meta["losses"]], seconds=float(meta.get("seconds", 0.0))
    )
