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

    for name in (
        "model_index.json",
        "diffplan.json",
        "unet/config.json",
        "value_function/config.json",
        "scheduler/scheduler_config.json",
        "training/losses.png",
        "training/unet/state.json",
    ):
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
    train(dataset=hopper_dataset, out=tmp_path / "resumed", preset=replanned, device="cpu", progress=False, resume=True)
    for sub in ("unet", "value_function"):
        a = load_file(str(tmp_path / "straight" / sub / "diffusion_pytorch_model.safetensors"))
        b = load_file(str(tmp_path / "resumed" / sub / "diffusion_pytorch_model.safetensors"))
        assert a.keys() == b.keys()
        for k in a:
            assert (a[k] == b[k]).all(), (sub, k)
        raw_a = load_file(str(tmp_path / "straight" / "training" / sub / "model.safetensors"))
        raw_b = load_file(str(tmp_path / "resumed" / "training" / sub / "model.safetensors"))
        assert all((raw_a[k] == raw_b[k]).all() for k in raw_a)


def test_resume_adds_an_inverse_dynamics_phase_to_a_finished_run(
    tiny_run: Path, hopper_dataset: str, tmp_path: Path
) -> None:
    import shutil

    from diffplan.planning import ValueGuidedRLPipeline

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = (run / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    res = train(
        dataset=hopper_dataset,
        out=run,
        preset=get_preset("tiny", denoiser_steps=300, value_steps=300, inverse_steps=20),
        device="cpu",
        progress=False,
        resume=True,
    )
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
    assert not (tmp_path / "d").exists()


def _long_horizon(dataset: str, tmp_path: Path) -> None:
    preset = get_preset("tiny", horizon=2048)
    wide = UNetConfig(block_out_channels=(32,) * 10)  # a net that accepts H = 2048
    Trainer(dataset=dataset, out=tmp_path / "b", preset=replace(preset, unet=wide, value_net=wide), device="cpu")


def test_each_trainer_gets_its_own_accelerate_settings(hopper_dataset: str, tmp_path: Path) -> None:
    """accelerate keeps one process-wide state: a later trainer's precision and compilation still apply."""
    first = Trainer(dataset=hopper_dataset, out=tmp_path / "a", preset=get_preset("tiny"), device="cpu")
    assert first.accelerator.mixed_precision == "no"
    second = Trainer(
        dataset=hopper_dataset,
        out=tmp_path / "b",
        preset=get_preset("tiny"),
        device="cpu",
        mixed_precision="bf16",
        compile=True,
    )
    assert second.accelerator.mixed_precision == "bf16"
    assert second.accelerator.state.dynamo_plugin.backend.value.lower() == "inductor"
    third = Trainer(dataset=hopper_dataset, out=tmp_path / "c", preset=get_preset("tiny"), device="cpu")
    assert third.accelerator.mixed_precision == "no"
    assert third.accelerator.state.dynamo_plugin.backend.value.lower() == "no"


def test_captured_step_plumbing_matches_the_eager_step(hopper_dataset: str, tmp_path: Path) -> None:
    """The CUDA-graph training step without the graph: warm-up undone, then the eager step's updates."""
    import torch
    from diffusers.training_utils import EMAModel

    from diffplan.training.graphs import CapturedStep

    tr = Trainer(dataset=hopper_dataset, out=tmp_path / "run", preset=get_preset("tiny"), device="cpu")
    batch_fn, loss_fn = tr.phase_functions("unet")

    def fresh() -> tuple:
        model = tr._build("unet")
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        return model, opt, EMAModel(model.parameters(), decay=0.9, update_after_step=2, foreach=True)

    model, opt, ema = fresh()
    before = [p.detach().clone() for p in model.parameters()]
    step = CapturedStep(
        model=model, optimizer=opt, ema=ema, batch_fn=batch_fn, loss_fn=loss_fn, accumulation=2, step=0, capture=False
    )
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # the warm-up left no trace
    assert all(float(v.abs().sum()) == 0 for s in opt.state.values() for v in s.values())
    ref, ref_opt, ref_ema = fresh()
    for k in range(6):
        loss = step(k)
        ref_opt.zero_grad()
        ref_loss = torch.zeros(())
        for m in range(2):
            micro = loss_fn(ref, batch_fn(k, m)) / 2
            micro.backward()
            ref_loss = ref_loss + micro.detach()
        ref_opt.step()
        ref_ema.step(ref.parameters())
        torch.testing.assert_close(loss, ref_loss)
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)
    for a, b in zip(ema.shadow_params, ref_ema.shadow_params):
        torch.testing.assert_close(a, b)
    assert ema.optimization_step == ref_ema.optimization_step == 6
    with pytest.raises(ValueError, match="cuda_graphs needs one process on a CUDA device; this run has 1 on cpu"):
        Trainer(dataset=hopper_dataset, out=tmp_path / "cpu", preset=get_preset("tiny"), device="cpu", cuda_graphs=True)
    with pytest.raises(ValueError, match="use it without mixed_precision"):
        Trainer(
            dataset=hopper_dataset,
            out=tmp_path / "bf",
            preset=get_preset("tiny"),
            cuda_graphs=True,
            mixed_precision="bf16",
        )
    assert not (tmp_path / "cpu").exists() and not (tmp_path / "bf").exists()


def test_a_run_recorded_before_the_preset_rename_resumes(tiny_run: Path, hopper_dataset: str, tmp_path: Path) -> None:
    """progress.json of older versions names the value network ``value`` and its targets ``values``."""
    import json
    import shutil

    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    progress = run / "training" / "progress.json"
    record = json.loads(progress.read_text())
    record["preset"]["value"] = record["preset"].pop("value_net")
    record["preset"]["values"] = record["preset"].pop("value_targets")
    progress.write_text(json.dumps(record))
    res = train(
        dataset=hopper_dataset,
        out=run,
        preset=get_preset("tiny", denoiser_steps=300, value_steps=300),
        device="cpu",
        progress=False,
        resume=True,
    )
    assert res.steps == {"unet": 300, "value_function": 300}


def test_states_only_run_holds_a_transformer_on_states_an_inverse_model_and_a_critic(states_run: Path) -> None:
    import json

    unet = json.loads((states_run / "unet" / "config.json").read_text())
    assert unet["_class_name"] == "DiT1DModel" and unet["in_channels"] == 11  # observations only
    assert json.loads((states_run / "value_function" / "config.json").read_text())["in_channels"] == 11
    for sub in ("inverse_dynamics", "critic"):
        assert (states_run / sub / "config.json").is_file(), sub
        losses = np.array(json.loads((states_run / "training" / sub / "state.json").read_text())["losses"])
        assert losses[-5:, 1].mean() < 0.8 * losses[:5, 1].mean(), sub


def test_coarse_to_fine_run_trains_and_resumes_its_fine_level(
    c2f_run: Path, hopper_dataset: str, tmp_path: Path
) -> None:
    import json
    import shutil

    fine = c2f_run / "fine"
    info = json.loads((fine / "diffplan.json").read_text())
    assert info["horizon"] == 3 and info["stride"] == 1
    assert json.loads((c2f_run / "diffplan.json").read_text())["stride"] == 2
    # raising the fine level's steps on resume trains only that level further
    run = tmp_path / "run"
    shutil.copytree(c2f_run, run)
    from diffplan.training.trainer import stored_preset

    preset = stored_preset(run)
    assert preset is not None and preset.fine is not None
    coarse_weights = (run / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    more = replace(preset, fine=replace(preset.fine, train=replace(preset.fine.train, denoiser_steps=50)))
    res = train(dataset=hopper_dataset, out=run, preset=more, device="cpu", progress=False, resume=True)
    assert res.steps["fine/unet"] == 50 and res.steps["unet"] == 40
    assert (run / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == coarse_weights
    assert json.loads((run / "fine" / "diffplan.json").read_text())["extra"]["train_steps"]["unet"] == 50
