"""benchmarks/learning_curves.py on the tiny preset: staged training gives the weights of one straight
run, each stage is copied whole, and each copy is scored (and cached) on held-out episodes."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]


def _module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def curves() -> ModuleType:
    _module("grid")
    return _module("learning_curves")


def test_stages_are_copies_of_one_run_and_scored_on_held_out_episodes(
    curves: ModuleType, hopper_dataset: str, tmp_path: Path
) -> None:
    import json

    from diffplan.presets import get_preset
    from diffplan.training import train

    grid = sys.modules["grid"]
    row = grid.PlannerRow("tiny", plan={"batch_size": 2, "num_inference_steps": 2}, train={"value_steps": 10})
    cfg = grid.GridConfig(datasets={"hopper-random": hopper_dataset}, planners={"tiny": row}, root=tmp_path / "grid")
    snaps = [curves.train_stage(cfg, "hopper-random", "tiny", 0, s, progress=False) for s in (6, 12)]
    assert [json.loads((s / "diffplan.json").read_text())["extra"]["train_steps"]["unet"] for s in snaps] == [6, 12]
    assert not (snaps[0] / "training").exists()  # copies of the weights, not of the training state
    straight = get_preset("tiny", denoiser_steps=12, value_steps=10)
    train(dataset=hopper_dataset, out=tmp_path / "straight", preset=straight, device="cpu", progress=False)
    for sub in ("unet", "value_function"):
        a = load_file(str(tmp_path / "straight" / sub / "diffusion_pytorch_model.safetensors"))
        b = load_file(str(snaps[1] / sub / "diffusion_pytorch_model.safetensors"))
        assert all((a[k] == b[k]).all() for k in a), sub
    with pytest.raises(ValueError, match="more than 6: curves need a fresh run"):
        (snaps[0] / "diffplan.json").unlink()  # as if the first copy were lost after the run went on
        curves.train_stage(cfg, "hopper-random", "tiny", 0, 6, progress=False)
    rec = curves.evaluate_snapshot(snaps[1], episodes=2, eval_seed=1000, num_envs=2, progress=False,
                                   overrides={"n_guide_steps": 0})  # fmt: skip
    assert rec["eval_seed"] == 1000 and len(rec["returns"]) == 2 and rec["planner"]["n_guide_steps"] == 0
    assert (snaps[1] / "eval-seed1000-2-n_guide_steps=0.json").is_file()
    again = curves.evaluate_snapshot(snaps[1], episodes=2, eval_seed=1000, num_envs=2, progress=False,
                                     overrides={"n_guide_steps": 0})  # fmt: skip
    assert again == rec  # cached
