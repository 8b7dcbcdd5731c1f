from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file

from diffplan.config import UNetConfig
from diffplan.data.episodes import load_episodes
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
    assert info["extra"]["dataset_hash"] == load_episodes(info["dataset_id"]).fingerprint()  # what it learned from


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


def test_each_trainer_gets_its_own_precision_and_compilation(hopper_dataset: str, tmp_path: Path) -> None:
    """accelerate keeps one process-wide state; each trainer applies its own precision and compilation, so
    trainers of other settings follow each other in one process (no private accelerate reset)."""
    first = Trainer(dataset=hopper_dataset, out=tmp_path / "a", preset=get_preset("tiny"), device="cpu")
    second = Trainer(dataset=hopper_dataset, out=tmp_path / "b", preset=get_preset("tiny"), device="cpu",
                     mixed_precision="bf16", compile=True)  # fmt: skip
    third = Trainer(dataset=hopper_dataset, out=tmp_path / "c", preset=get_preset("tiny"), device="cpu")
    assert (first.mixed_precision, second.mixed_precision, third.mixed_precision) == ("no", "bf16", "no")
    assert second.compile and not third.compile
    model = first._build("unet")
    losses = []
    for tr in (first, second, third):
        batch_fn, loss_fn = tr.phase_functions("unet")
        losses.append(float(loss_fn(model, batch_fn(0, 0))))
    assert losses[0] == losses[2]  # float32, the same batch
    assert losses[1] != losses[0] and abs(losses[1] - losses[0]) < 0.05 * losses[0]  # bf16 autocast: close, not equal


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


def _dv_tiny(**train_fields: int) -> object:
    """The ``dv`` preset at test size (a tiny DiT, few steps), its recipe unchanged."""
    from diffplan.config import DiTConfig

    dv = get_preset("dv", horizon=4, batch_size=16, checkpoint_every=5, log_every=5, **train_fields)
    return replace(dv, unet=DiTConfig(hidden_size=16, depth=1, num_heads=2))


def test_dv_run_learns_a_td_state_value_and_resumes_bit_identically(hopper_dataset: str, tmp_path: Path) -> None:
    import json

    from diffplan.models import StateValue

    steps = {"denoiser_steps": 12, "inverse_steps": 10, "state_value_steps": 300}
    train(dataset=hopper_dataset, out=tmp_path / "straight", preset=_dv_tiny(**steps), device="cpu", progress=False)
    part = {"denoiser_steps": 5, "inverse_steps": 10, "state_value_steps": 150}
    train(dataset=hopper_dataset, out=tmp_path / "resumed", preset=_dv_tiny(**part), device="cpu", progress=False)
    train(dataset=hopper_dataset, out=tmp_path / "resumed", preset=_dv_tiny(**steps), device="cpu", progress=False,
          resume=True)  # fmt: skip
    for sub in ("unet", "state_value"):
        a = load_file(str(tmp_path / "straight" / sub / "diffusion_pytorch_model.safetensors"))
        b = load_file(str(tmp_path / "resumed" / sub / "diffusion_pytorch_model.safetensors"))
        assert all((a[k] == b[k]).all() for k in a), sub
    losses = np.array(
        json.loads((tmp_path / "straight" / "training" / "state_value" / "state.json").read_text())["losses"]
    )
    assert losses[-10:, 1].mean() < 0.5 * losses[:5, 1].mean()
    value = StateValue.from_pretrained(tmp_path / "straight" / "state_value")
    # outputs are returns in units of the data's largest absolute return (random Hopper: about -1 near a fall)
    assert 0.0 < value.config.value_scale and value.config.obs_dim == 11


def _td_trainer(hopper_dataset: str, out: Path, **values: float) -> Trainer:
    dv = _dv_tiny(state_value_steps=1)
    preset = replace(dv, value_targets=replace(dv.value_targets, **values))
    return Trainer(dataset=hopper_dataset, out=out, preset=preset, device="cpu", progress=False)


def test_state_value_loss_is_the_squared_td_error_or_its_expectile(hopper_dataset: str, tmp_path: Path) -> None:
    import torch

    from diffplan.models import StateValue

    plain = _td_trainer(hopper_dataset, tmp_path / "a", expectile=0.5, discount=0.9)
    high = _td_trainer(hopper_dataset, tmp_path / "b", expectile=0.9, discount=0.9)
    model = StateValue(obs_dim=11)
    for trainer in (plain, high):  # the target network: a model whose output is 1 everywhere
        trainer._target = type("EMA", (), {"shadow_params": [torch.zeros_like(p) for p in model.parameters()]})()
        trainer._target.shadow_params[-1].fill_(1.0)
    batch = plain.phase_functions("state_value")[0](0, 0)
    state, reward, _, terminal = batch
    with torch.no_grad():
        u = reward / plain.data.value_scale + 0.9 * (~terminal) * 1.0 - model(state)
        want_plain = (u**2).mean()
        want_high = (2 * torch.where(u > 0, 0.9, 0.1) * u**2).mean()
        torch.testing.assert_close(plain._state_value_loss(model, batch), want_plain)
        torch.testing.assert_close(high._state_value_loss(model, batch), want_high)


def test_value_weighted_loss_weighs_each_window_by_its_return(hopper_dataset: str, tmp_path: Path) -> None:
    import torch

    weighted = Trainer(dataset=hopper_dataset, out=tmp_path / "w", preset=_dv_tiny(), device="cpu", progress=False)
    dv = _dv_tiny()
    flat = replace(dv, diffusion=replace(dv.diffusion, value_weight=0.0))
    plain = Trainer(dataset=hopper_dataset, out=tmp_path / "p", preset=flat, device="cpu", progress=False)
    wb, pb = weighted.phase_functions("unet")[0](3, 0), plain.phase_functions("unet")[0](3, 0)
    assert len(wb) == 4 and len(pb) == 3
    assert all(torch.equal(a, b) for a, b in zip(wb[:3], pb))  # the same windows, noise and steps
    _, values = weighted._windows(weighted._step_generator(0, 3, 0))
    torch.testing.assert_close(wb[3], weighted.data.value_weights(values, factor=2.0))
    model = weighted._build("unet")
    with torch.no_grad():
        per = (weighted._weights * (model(wb[0], wb[1]).sample.permute(0, 2, 1) - wb[2]) ** 2).mean(dim=(1, 2))
        torch.testing.assert_close(weighted._denoiser_loss(model, wb), (per * wb[3]).mean())
        torch.testing.assert_close(plain._denoiser_loss(model, pb), per.mean())


def test_a_full_disk_at_a_checkpoint_keeps_the_last_one_and_resume_ends_bit_identical(
    hopper_dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import diffplan.training.checkpoint as checkpoint
    from diffplan.io import DiskFullError

    preset = get_preset("tiny", denoiser_steps=12, value_steps=4, checkpoint_every=4, gradient_accumulation_steps=1)
    train(dataset=hopper_dataset, out=tmp_path / "straight", preset=preset, device="cpu", progress=False)
    real, calls = checkpoint.save_file, []

    def full_at_the_second_checkpoint(tensors: dict, path: str) -> None:
        calls.append(path)
        if len(calls) > 3:  # the first checkpoint's three files are written, then the disk is full
            raise RuntimeError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space '
                               'left on device" })')  # fmt: skip
        real(tensors, path)

    monkeypatch.setattr(checkpoint, "save_file", full_at_the_second_checkpoint)
    run = tmp_path / "run"
    with pytest.raises(DiskFullError, match=r"could not write the checkpoint of step 8 .* no space left on device "
                       r"\(.* MB free in .*training, about .* MB needed\)"):  # fmt: skip
        train(dataset=hopper_dataset, out=run, preset=preset, device="cpu", progress=False)
    import json

    assert json.loads((run / "training" / "unet" / "state.json").read_text())["step"] == 4  # the last one, intact
    assert sorted(p.name for p in (run / "training").iterdir()) == ["progress.json", "unet"]  # no half-written copy
    monkeypatch.undo()  # space freed
    train(dataset=hopper_dataset, out=run, preset=preset, device="cpu", progress=False, resume=True)
    for sub in ("unet", "value_function"):
        a = load_file(str(tmp_path / "straight" / sub / "diffusion_pytorch_model.safetensors"))
        b = load_file(str(run / sub / "diffusion_pytorch_model.safetensors"))
        assert all((a[k] == b[k]).all() for k in a), sub


def test_a_second_trainer_on_a_folder_being_written_refuses_at_once(hopper_dataset: str, tmp_path: Path) -> None:
    import os

    from diffplan.io import FolderLockedError, writer_lock

    run = tmp_path / "run"
    preset = get_preset("tiny", denoiser_steps=4, value_steps=4)
    with writer_lock(run):  # another writer holds the folder
        with pytest.raises(FolderLockedError, match=rf"is being written by pid {os.getpid()} on "):
            train(dataset=hopper_dataset, out=run, preset=preset, device="cpu", progress=False)
        assert not (run / "training").exists()  # refused before any write
    res = train(dataset=hopper_dataset, out=run, preset=preset, device="cpu", progress=False)
    assert res.steps == {"unet": 4, "value_function": 4}
