"""Several runs trained in one process (diffplan.training.group): each run draws the batches it draws
alone, ends where it ends alone (within the tolerance below), is deterministic, resumes bit-identically
as a group and can be resumed alone; the CLI spelling."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffplan.presets import get_preset
from diffplan.training import train
from diffplan.training.group import group_runs, make_trainers, run_name, train_group

PRESET = get_preset("tiny", denoiser_steps=20, value_steps=20, checkpoint_every=10, gradient_accumulation_steps=2)


def _weights(run: Path, sub: str) -> dict[str, torch.Tensor]:
    return load_file(str(run / sub / "diffusion_pytorch_model.safetensors"))


def _group(dataset: str, out: Path, preset: object = PRESET, **kwargs: object) -> list:
    trainers = make_trainers(datasets=[dataset], seeds=[0, 1], out=out, preset=preset, progress=False)
    return train_group(trainers, progress=False, **kwargs)


def _outputs(run: Path) -> dict[str, torch.Tensor]:
    """The trained networks' outputs on one fixed batch (what planning reads from them)."""
    from diffplan import ValueGuidedRLPipeline

    pipe = ValueGuidedRLPipeline.from_pretrained(run)
    x = torch.randn(8, 14, 8, generator=torch.Generator().manual_seed(0))
    t = torch.arange(8) % 20
    with torch.no_grad():
        return {"unet": pipe.unet(x, t).sample, "value_function": pipe.value_function(x, t).sample}


def test_each_run_of_a_group_draws_its_own_batches_and_ends_as_alone(hopper_dataset: str, tmp_path: Path) -> None:
    trainers = make_trainers(datasets=[hopper_dataset], seeds=[0, 1], out=tmp_path / "g", preset=PRESET, progress=False)
    alone = make_trainers(datasets=[hopper_dataset], seeds=[1], out=tmp_path / "a", preset=PRESET, progress=False)[0]
    for phase in ("unet", "value_function"):
        grouped, solo = trainers[1].phase_functions(phase)[0](7, 1), alone.phase_functions(phase)[0](7, 1)
        assert all(torch.equal(a, b) for a, b in zip(grouped, solo)), phase  # the very same batches
    other = trainers[0].phase_functions("unet")[0](7, 1)
    assert not torch.equal(other[0], trainers[1].phase_functions("unet")[0](7, 1)[0])  # seeds differ
    results = train_group(trainers, progress=False)
    assert [r.steps for r in results] == [{"unet": 20, "value_function": 20}] * 2
    for seed in (0, 1):
        solo_run = tmp_path / f"solo{seed}"
        train(dataset=hopper_dataset, out=solo_run, preset=replace(PRESET, train=replace(PRESET.train, seed=seed)),
              device="cpu", progress=False)  # fmt: skip
        group_run = tmp_path / "g" / run_name(hopper_dataset) / f"seed{seed}"
        # Tolerance: the batched network runs other kernels (batched matrix products), so gradients
        # differ in the last bits; Adam turns the noise of a weight whose true gradient is zero (a bias
        # before a group norm) into steps of up to its learning rate, so a weight may differ by up to
        # lr x steps; the networks' outputs, what planning reads, agree to 1e-4 relative.
        for sub in ("unet", "value_function"):
            a, b = _weights(solo_run, sub), _weights(group_run, sub)
            assert a.keys() == b.keys()
            assert max(float((a[k] - b[k]).abs().max()) for k in a) <= PRESET.train.learning_rate * 20
        for sub, out in _outputs(solo_run).items():
            torch.testing.assert_close(_outputs(group_run)[sub], out, rtol=1e-4, atol=1e-4 * float(out.abs().max()))


def test_a_group_is_deterministic_resumes_bit_identically_and_a_run_resumes_alone(
    hopper_dataset: str, tmp_path: Path
) -> None:
    _group(hopper_dataset, tmp_path / "straight")
    _group(hopper_dataset, tmp_path / "again")
    half = replace(PRESET, train=replace(PRESET.train, denoiser_steps=10, value_steps=10))
    _group(hopper_dataset, tmp_path / "resumed", preset=half)
    resumed = make_trainers(datasets=[hopper_dataset], seeds=[0, 1], out=tmp_path / "resumed", preset=PRESET,
                            resume=True, progress=False)  # fmt: skip
    train_group(resumed, progress=False)
    name = run_name(hopper_dataset)
    for seed in (0, 1):
        for sub in ("unet", "value_function"):
            a = _weights(tmp_path / "straight" / name / f"seed{seed}", sub)
            for other in ("again", "resumed"):
                b = _weights(tmp_path / other / name / f"seed{seed}", sub)
                assert all(torch.equal(a[k], b[k]) for k in a), (other, seed, sub)
    # a run of a half-trained group resumed alone: its own checkpoint, its own Adam and EMA state
    _group(hopper_dataset, tmp_path / "split", preset=half)
    alone = tmp_path / "split" / name / "seed1"
    res = train(dataset=hopper_dataset, out=alone, preset=replace(PRESET, train=replace(PRESET.train, seed=1)),
                device="cpu", progress=False, resume=True)  # fmt: skip
    assert res.steps == {"unet": 20, "value_function": 20}
    want = _outputs(tmp_path / "straight" / name / "seed1")
    for sub, out in _outputs(alone).items():
        torch.testing.assert_close(out, want[sub], rtol=1e-4, atol=1e-4 * float(want[sub].abs().max()))


def test_one_by_one_gives_the_weights_of_single_runs(hopper_dataset: str, tmp_path: Path) -> None:
    short = replace(PRESET, train=replace(PRESET.train, denoiser_steps=6, value_steps=4))
    _group(hopper_dataset, tmp_path / "g", preset=short, stacked=False)
    train(dataset=hopper_dataset, out=tmp_path / "solo", preset=short, device="cpu", progress=False)
    for sub in ("unet", "value_function"):
        a, b = _weights(tmp_path / "solo", sub), _weights(tmp_path / "g" / run_name(hopper_dataset) / "seed0", sub)
        assert all(torch.equal(a[k], b[k]) for k in a), sub  # the same kernels: bit-identical


def test_group_names_and_bad_lists() -> None:
    assert run_name("diffplan/hopper/medium-v0") == "hopper-medium-v0"
    assert run_name("mujoco/hopper/medium-v0") == "hopper-medium-v0"
    assert run_name("test/hopper-random-v0") == "test-hopper-random-v0"
    assert run_name("data/d4rl_hopper.hdf5") == "d4rl_hopper"
    runs = group_runs(datasets=["a/b/c-v0", "a/b/d-v0"], seeds=[0, 2], out="runs/grid")
    assert [str(r[2]) for r in runs] == ["runs/grid/b-c-v0/seed0", "runs/grid/b-c-v0/seed2",
                                          "runs/grid/b-d-v0/seed0", "runs/grid/b-d-v0/seed2"]  # fmt: skip
    with pytest.raises(ValueError, match="expected distinct datasets and seeds"):
        group_runs(datasets=["a/b/c-v0"], seeds=[1, 1], out="x")
    with pytest.raises(ValueError, match=r"expected seed >= 0, got -1 \(an integer\)"):
        group_runs(datasets=["a/b/c-v0"], seeds=[-1], out="x")


def test_cli_trains_several_seeds_into_their_folders(hopper_dataset: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from diffplan.cli import main

    base = ["train", hopper_dataset, "--preset", "tiny", "--device", "cpu", "--out", str(tmp_path / "grid"),
            "--seeds", "0", "1", "--train.denoiser-steps", "4", "--train.value-steps", "3"]  # fmt: skip
    assert main(base) == 0
    out = capsys.readouterr().out
    for seed in (0, 1):
        run = tmp_path / "grid" / run_name(hopper_dataset) / f"seed{seed}"
        assert (run / "diffplan.json").is_file() and f"run folder: {run}" in out
    assert main([*base, "--resume", "--train.denoiser-steps", "6"]) == 0  # the group resumes, raising its steps
    assert "unet: 6 steps" in capsys.readouterr().out
    assert main([*base, "--cuda-graphs"]) == 2
    assert "several runs in one process train without --compile" in capsys.readouterr().err
