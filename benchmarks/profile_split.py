"""Where the time goes: inside the networks versus everything else, for planning and training.

For one planning decision (`fast_config` of plan_speed.py; 1 env and 64 envs in one call) it
prints the wall time per call, the time inside the networks (denoiser and value forward passes,
the value gradient's backward pass) and the rest. For one training step (`small` and `paper`
presets) it splits the step into data (batch sampling and noising), forward (with the loss),
backward, optimizer and EMA, and the rest (accelerate, Python).

Every timed region is bracketed by a device synchronisation (a no-op on the CPU), so on a GPU the
split shows where the device waits; the untimed speeds are plan_speed.py's.

    python benchmarks/profile_split.py [--device cpu] [--threads 2] [--out results/profile_cpu.json]

Targets on 2 CPU cores (issue 11): planning outside the networks <= 2 ms per call; training time
outside forward + backward + optimizer <= 10 % of a step.

(Named profile_split.py, not profile.py: a profile.py in this folder would shadow the standard
library's `profile`, which cProfile and so torch._dynamo import, and break every script here.)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, build_pipes, fast_settings, machine, random_hopper_dataset, sync  # noqa: E402


class _Clock:
    """Adds up synchronised wall time per category."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, category: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            sync(self.device)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(self.device)
            self.seconds[category] += time.perf_counter() - t0
            return out

        return timed


def planning_split(pipe: Any, *, n_envs: int, decisions: int, device: torch.device) -> dict[str, float]:
    """Median wall ms per call of `fast_config`, and of a second, instrumented pass (each network
    call bracketed by synchronisations) the mean ms per call inside the networks and outside them."""
    from diffplan.planning.planner import Planner

    obs = np.tile(pipe.normalizer.observations.shift, (n_envs, 1))
    settings = pipe.plan_config.override(replan_threshold=float("inf"), **fast_settings())
    planner = Planner(pipe, n_envs=n_envs, settings=settings)
    g = torch.Generator().manual_seed(0)
    planner.act(obs, generator=g)  # cold start; later calls are warm starts
    times = []
    for _ in range(decisions):
        t0 = time.perf_counter()
        planner.act(obs, generator=g)
        times.append(time.perf_counter() - t0)
    clock = _Clock(device)
    originals = {"unet": pipe.unet.forward, "value_function": pipe.value_function.forward, "grad": torch.autograd.grad}
    pipe.unet.forward = clock.wrap("networks", originals["unet"])
    pipe.value_function.forward = clock.wrap("networks", originals["value_function"])
    torch.autograd.grad = clock.wrap("networks", originals["grad"])
    try:
        sync(device)
        t0 = time.perf_counter()
        for _ in range(decisions):
            planner.act(obs, generator=g)
        sync(device)
        instrumented = (time.perf_counter() - t0) / decisions * 1e3
    finally:
        pipe.unet.forward, pipe.value_function.forward = originals["unet"], originals["value_function"]
        torch.autograd.grad = originals["grad"]
    total = float(np.median(times)) * 1e3
    networks = clock.seconds["networks"] / decisions * 1e3
    return {
        "n_envs": n_envs,
        "ms_per_call": total,
        "decisions_per_s": n_envs / total * 1e3,
        "instrumented_ms_per_call": instrumented,
        "ms_in_networks": networks,
        "ms_outside": instrumented - networks,
    }


def _denoiser_trainer(
    dataset: str, folder: Path, *, preset_name: str, steps: int, batch_size: int | None, **options: Any
) -> Any:
    """A Trainer of ``steps`` denoiser steps only (no value phase, no checkpoints before the end)."""
    from diffplan.presets import get_preset
    from diffplan.training.trainer import Trainer

    overrides: dict[str, Any] = {"denoiser_steps": steps, "value_steps": 0, "checkpoint_every": 10**9, "log_every": 100}
    if batch_size:
        overrides["batch_size"] = batch_size
    preset = get_preset(preset_name, **overrides)
    return Trainer(dataset=dataset, out=folder / "run", preset=preset, progress=False, **options)


def training_split(
    dataset: str,
    *,
    preset_name: str,
    steps: int,
    device: str | None,
    batch_size: int | None = None,
    compile: bool = False,
    mixed_precision: str = "no",
) -> dict[str, Any]:
    """Per-step ms of data, forward, backward, optimizer, EMA and the rest, over ``steps`` steps
    of the denoiser phase (after 5 warm-up steps)."""
    from diffusers.training_utils import EMAModel

    with tempfile.TemporaryDirectory() as tmp:
        tr = _denoiser_trainer(dataset, Path(tmp), preset_name=preset_name, steps=steps + 5, batch_size=batch_size,
                               device=device, compile=compile, mixed_precision=mixed_precision)  # fmt: skip
        preset = tr.preset
        dev = tr.accelerator.device
        clock = _Clock(dev)
        starts: list[float] = []
        batch_fn, loss_fn = tr.phase_functions("unet")

        parts: dict[str, float] = {}

        def batch(step: int, micro: int) -> Any:
            if micro == 0:
                sync(dev)
                starts.append(time.perf_counter())
                if step == 5:
                    clock.seconds.clear()
                if step == steps + 4:  # the start of the last step closes the timed interval
                    parts.update(clock.seconds)
            return clock.wrap("data", batch_fn)(step, micro)

        tr.phase_functions = lambda phase: (batch, clock.wrap("forward", loss_fn))  # type: ignore[method-assign]
        tr.accelerator.backward = clock.wrap("backward", tr.accelerator.backward)  # type: ignore[method-assign]
        adam_step, ema_step = torch.optim.Adam.step, EMAModel.step
        torch.optim.Adam.step = clock.wrap("optimizer", adam_step)  # type: ignore[method-assign]
        EMAModel.step = clock.wrap("ema", ema_step)  # type: ignore[method-assign]
        try:
            tr._run_phase("unet")
        finally:
            torch.optim.Adam.step, EMAModel.step = adam_step, ema_step  # type: ignore[method-assign]
    intervals = np.diff(starts[5:])
    step_ms = float(intervals.mean()) * 1e3
    parts = {k: v / len(intervals) * 1e3 for k, v in parts.items()}
    core = parts.get("forward", 0) + parts.get("backward", 0) + parts.get("optimizer", 0)
    return {
        "preset": preset_name,
        "batch_size": preset.train.batch_size,
        "gradient_accumulation_steps": preset.train.gradient_accumulation_steps,
        "ms_per_step": step_ms,
        "parts_ms": parts,
        "outside_fraction": max(0.0, 1 - core / step_ms),
        "compile": compile,
        "mixed_precision": mixed_precision,
    }


def train_rate(
    dataset: str,
    *,
    preset_name: str,
    steps: int,
    device: str | None,
    batch_size: int | None = None,
    warmup: int = 10,
    compile: bool = False,
    mixed_precision: str = "no",
    cuda_graphs: bool = False,
) -> dict[str, Any]:
    """Optimizer steps per second of the denoiser phase, untimed regions left alone, after ``warmup``
    steps (compilation included there) and with the device synchronised at the end."""
    marks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tr = _denoiser_trainer(dataset, Path(tmp), preset_name=preset_name, steps=steps + warmup, batch_size=batch_size,
                               device=device, compile=compile, mixed_precision=mixed_precision,
                               cuda_graphs=cuda_graphs)  # fmt: skip
        preset = tr.preset
        dev = tr.accelerator.device
        batch_fn, loss_fn = tr.phase_functions("unet")

        def batch(step: int, micro: int) -> Any:
            if step == warmup and micro == 0 and "start" not in marks:
                sync(dev)
                marks["start"] = time.perf_counter()
                marks["compile_s"] = marks["start"] - marks["begin"]
            return batch_fn(step, micro)

        tr.phase_functions = lambda phase: (batch, loss_fn)  # type: ignore[method-assign]
        save_phase = _patch_save(marks, dev)
        marks["begin"] = time.perf_counter()
        try:
            tr._run_phase("unet")
        finally:
            save_phase()
    rate = steps / (marks["end"] - marks["start"])
    b, acc = preset.train.batch_size, preset.train.gradient_accumulation_steps
    return {
        "preset": preset_name,
        "batch_size": b,
        "gradient_accumulation_steps": acc,
        "steps_per_s": rate,
        "samples_per_s": rate * b * acc,
        "steps_measured": steps,
        "warmup_steps": warmup,
        "warmup_seconds": marks["compile_s"],
        "compile": compile,
        "mixed_precision": mixed_precision,
        "cuda_graphs": cuda_graphs,
    }


def _patch_save(marks: dict[str, float], dev: torch.device) -> Any:
    """Mark the end of the training loop at its final checkpoint write; returns the undo function."""
    import diffplan.training.trainer as trainer_module

    original = trainer_module.save_phase

    def marking(**kwargs: Any) -> None:
        if "end" not in marks:
            sync(dev)
            marks["end"] = time.perf_counter()
        original(**kwargs)

    trainer_module.save_phase = marking

    def undo() -> None:
        trainer_module.save_phase = original

    return undo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--decisions", type=int, default=30)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--out", default=None, help="JSON file (default: results/profile_<device>.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ours, _ = build_pipes(None, args.device)
    plans = [planning_split(ours, n_envs=k, decisions=args.decisions, device=device) for k in (1, 64)]
    train_device = "cpu" if device.type == "cpu" else None
    with tempfile.TemporaryDirectory() as tmp:
        dataset = random_hopper_dataset(Path(tmp))
        trains = [
            training_split(dataset, preset_name=name, steps=args.train_steps, device=train_device)
            for name in ("small", "paper")
        ]
    print(f"\nplanning (fast settings: {fast_settings()}) on {args.device}:")
    for row in plans:
        print(
            f"  {row['n_envs']:>3} envs: {row['ms_per_call']:8.2f} ms per call, {row['ms_in_networks']:8.2f} in the "
            f"networks, {row['ms_outside']:6.2f} outside"
        )
    print("training step (denoiser):")
    for row in trains:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in row["parts_ms"].items())
        print(
            f"  {row['preset']:<6} batch {row['batch_size']} x {row['gradient_accumulation_steps']}: "
            f"{row['ms_per_step']:.2f} ms ({parts}); outside forward+backward+optimizer "
            f"{100 * row['outside_fraction']:.1f} %"
        )
    out = Path(args.out or ROOT / "results" / f"profile_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "device": args.device,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch_threads": args.threads,
        "planning": plans,
        "training": trains,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
