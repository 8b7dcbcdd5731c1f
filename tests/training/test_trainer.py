from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from diffplan.config import UNetConfig

from diffplan.presets import get_preset
from diffplan.training import train
from diffplan.training.trainer import Trainer


def test_training_loss_falls_and_writes_the_run_folder(tiny_run: Path) -> None:
    import json

    for name in ("model_index.json", "diffplan.json", "unet/config.json", "value_function/config.json",
                 "scheduler/scheduler_config.json", "training/losses.png", "training/unet/state.json"):
        assert (tiny_run / name).is_file(), name
    assert list((tiny_run / "logs").rglob("events.out.tfevents.*"))  # TensorBoard scalars
    for phase in ("unet", "value_function"):
        losses = np.array(json.loads((tiny_run / "training" / phase / "state.json").read_text())["losses"])
        quarter = len(losses) // 4
        first, last = losses[:quarter, 1].mean(), losses[-quarter:, 1].mean()
        assert last < 0.8 * first, (phase, first, last)
    info = json.loads((tiny_run / "diffplan.json").read_text())
    assert info["env_id"] == "Hopper-v5" and info["obs_dim"] == 11 and info["act_dim"] == 3
    assert len(info["normalizer"]["observations"]["shift"]) == 11


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(hopper_dataset: str, tmp_path: Path) -> None:
    full = get_preset("tiny", denoiser_steps=12, value_steps=8, checkpoint_every=5, gradient_accumulation_steps=2)
    train(dataset=hopper_dataset, out=tmp_path / "straight", preset=full, device="cpu", progress=False)
    # interrupted after 5 steps of each phase (the last checkpoint), then resumed to the end
    part = get_preset("tiny", denoiser_steps=5, value_steps=5, checkpoint_every=5, gradient_accumulation_steps=2)
    train(dataset=hopper_dataset, out=tmp_path / "resumed", preset=part, device="cpu", progress=False)
    # planning defaults do not touch training: a resume may change them (here the plan count)
    replanned = replace(full, plan=replace(full.plan, batch_size=full.plan.batch_size + 1))
    train(dataset=hopper_dataset, out=tmp_path / "resumed", preset=replanned, device="cpu", progress=False,
          resume=True)
    for sub in ("unet", "value_function"):
        a = load_file(str(tmp_path / "straight" / sub / "diffusion_pytorch_model.safetensors"))
        b = load_file(str(tmp_path / "resumed" / sub / "diffusion_pytorch_model.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            assert (a[k] == b[k]).all(), (sub, k)
        raw_a = load_file(str(tmp_path / "straight" / "training" / sub / "model.safetensors"))
        raw_b = load_file(str(tmp_path / "resumed" / "training" / sub / "model.safetensors"))
        assert all((raw_a[k] == raw_b[k]).all() for k in raw_a)


def test_resume_adds_an_inverse_dynamics_phase_to_a_finished_run(tiny_run: Path, hopper_dataset: str,
                                                                 tmp_path: Path) -> None:
    import shutil

    from diffplan.planning import ValueGuidedRLPipeline

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = (run / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    res = train(dataset=hopper_dataset, out=run, preset=get_preset("tiny", denoiser_steps=300, value_steps=300,
                                                                  inverse_steps=20),
                device="cpu", progress=False, resume=True)
    assert res.steps == {"unet": 300, "value_function": 300, "inverse_dynamics": 20}
    assert (run / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == before
    pipe = ValueGuidedRLPipeline.from_pretrained(run)
    assert pipe.inverse_dynamics is not None and pipe.inverse_dynamics.config.act_dim == 3
    assert pipe.inverse_action(state=np.zeros((2, 11)), target=np.ones((2, 11)), lookahead=np.ones(2)).shape == (2, 3)


def test_existing_run_is_never_overwritten(tiny_run: Path, hopper_dataset: str) -> None:
    before = (tiny_run / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="already holds a training run; pass --resume"):
        Trainer(dataset=hopper_dataset, out=tiny_run, preset=get_preset("tiny"), device="cpu")
    with pytest.raises(ValueError, match="resume with the same dataset and preset"):
        Trainer(dataset=hopper_dataset, out=tiny_run, preset=get_preset("small"), device="cpu", resume=True)
    assert (tiny_run / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == before


def test_dataset_env_dimension_mismatch(hopper_dataset: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"has obs_dim 11, act_dim 3 but Walker2d-v5 has obs_dim 17, act_dim 6"):
        Trainer(dataset=hopper_dataset, out=tmp_path / "x", preset=get_preset("tiny"), env_id="Walker2d-v5")


def test_bad_training_inputs(hopper_dataset: str, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no local Minari dataset 'nope/none-v0'"):
        Trainer(dataset="nope/none-v0", out=tmp_path / "a", preset=get_preset("tiny"))
    with pytest.raises(ValueError, match=r"horizon 2048 \(stride 1: 2048 steps\) is longer than every episode"):
        _long_horizon(hopper_dataset, tmp_path)
    assert not (tmp_path / "b").exists()  # a refused run leaves nothing behind
    with pytest.raises(ValueError, match="unknown environment id 'Nope-v9'"):
        Trainer(dataset=hopper_dataset, out=tmp_path / "c", preset=get_preset("tiny"), env_id="Nope-v9")
    with pytest.raises(ValueError, match=r"expected mixed_precision in \('no', 'bf16'\), got 'fp8'"):
        Trainer(dataset=hopper_dataset, out=tmp_path / "d", preset=get_preset("tiny"), mixed_precision="fp8")
    with pytest.raises(ValueError, match="expected compile mode in .* got 'fastest'"):
        Trainer(dataset=hopper_dataset, out=tmp_path / "e", preset=get_preset("tiny"), device="cpu", compile="fastest")
    assert not (tmp_path / "d").exists() and not (tmp_path / "e").exists()


def _long_horizon(dataset: str, tmp_path: Path) -> None:
    preset = get_preset("tiny", horizon=2048)
    wide = UNetConfig(block_out_channels=(32,) * 10)  # a net that accepts H = 2048
    Trainer(dataset=dataset, out=tmp_path / "b", preset=replace(preset, unet=wide, value=wide), device="cpu")


def test_each_trainer_gets_its_own_accelerate_settings(hopper_dataset: str, tmp_path: Path) -> None:
    """accelerate keeps one process-wide state: a later trainer's precision and compilation still apply."""
    first = Trainer(dataset=hopper_dataset, out=tmp_path / "a", preset=get_preset("tiny"), device="cpu")
    assert first.accelerator.mixed_precision == "no"
    second = Trainer(dataset=hopper_dataset, out=tmp_path / "b", preset=get_preset("tiny"), device="cpu",
                     mixed_precision="bf16", compile="default")
    assert second.accelerator.mixed_precision == "bf16"
    assert second.accelerator.state.dynamo_plugin.backend.value.lower() == "inductor"
    third = Trainer(dataset=hopper_dataset, out=tmp_path / "c", preset=get_preset("tiny"), device="cpu")
    assert third.accelerator.mixed_precision == "no"
    assert third.accelerator.state.dynamo_plugin.backend.value.lower() == "no"
