"""kill -9 at random moments: every dataset and run folder is afterwards complete or absent/resumable,
and a resumed training run ends bit-identical to an uninterrupted one. Slow (subprocesses): run with
``pytest -m slow tests/test_faults.py``."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow

DIFFPLAN = [sys.executable, "-m", "diffplan.cli"]


def _killed_at(argv: list[str], env: dict, seconds: float) -> int | None:
    """Run ``argv``; SIGKILL it after ``seconds`` unless it ended first. Returns its exit code (None if killed)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def test_collect_killed_at_random_moments_leaves_complete_or_no_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffplan.data.episodes import load_minari

    env = dict(os.environ, MINARI_DATASETS_PATH=str(tmp_path), OMP_NUM_THREADS="1")
    rng = np.random.default_rng(0)
    outcomes = []
    for k in range(6):
        dataset_id = f"faults/c{k}-v0"
        code = _killed_at([*DIFFPLAN, "collect", "Hopper-v5", "--behavior", "random", "--steps", "30000",
                           "--dataset-id", dataset_id], env, float(rng.uniform(3.0, 8.0)))  # fmt: skip
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
        import minari

        listed = dataset_id in minari.list_local_datasets()
        if listed:  # complete and loadable
            assert load_minari(dataset_id).num_steps == 30000
        outcomes.append("complete" if listed else "absent")
        assert code in (None, 0)
    listing = subprocess.run([*DIFFPLAN, "datasets"], env=env, capture_output=True, text=True)
    assert listing.returncode == 0 and "broken" not in listing.stdout, listing.stdout
    print("collect outcomes:", outcomes)


def test_train_killed_at_random_moments_resumes_bit_identical(hopper_dataset: str, tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    base = ["train", hopper_dataset, "--preset", "tiny", "--device", "cpu", "--train.denoiser-steps", "1500",
            "--train.value-steps", "1000", "--train.checkpoint-every", "25"]  # fmt: skip
    assert subprocess.run([*DIFFPLAN, *base, "--out", str(tmp_path / "straight")], env=env,
                          capture_output=True).returncode == 0  # fmt: skip
    rng = np.random.default_rng(1)
    kills, started = 0, time.perf_counter()
    out = ["--out", str(tmp_path / "killed")]
    for _ in range(20):  # kill, resume, kill, ... until a run finishes
        resume = ["--resume"] if (tmp_path / "killed" / "training").exists() else []
        code = _killed_at([*DIFFPLAN, *base, *out, *resume], env, float(rng.uniform(4.0, 9.0)))
        if code == 0:
            break
        assert code is None
        kills += 1
    else:
        code = subprocess.run([*DIFFPLAN, *base, *out, "--resume"], env=env).returncode
    assert code == 0 and kills >= 1, kills
    for sub in ("unet", "value_function"):
        a = load_file(str(tmp_path / "straight" / sub / "diffusion_pytorch_model.safetensors"))
        b = load_file(str(tmp_path / "killed" / sub / "diffusion_pytorch_model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), sub
    assert not list((tmp_path / "killed").rglob(".*-*"))  # no temporary leftovers
    print(f"train: {kills} kills in {time.perf_counter() - started:.0f} s, resumed bit-identical")


def test_two_trainers_on_one_folder_the_second_refuses_and_a_killed_holders_lock_is_taken_over(
    hopper_dataset: str, tmp_path: Path
) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    base = ["train", hopper_dataset, "--preset", "tiny", "--device", "cpu", "--train.denoiser-steps", "3000",
            "--train.value-steps", "200", "--train.checkpoint-every", "25"]  # fmt: skip
    assert subprocess.run([*DIFFPLAN, *base, "--out", str(tmp_path / "straight")], env=env,
                          capture_output=True).returncode == 0  # fmt: skip
    run = ["--out", str(tmp_path / "run")]
    first = subprocess.Popen([*DIFFPLAN, *base, *run], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "run" / "training" / "unet" / "state.json").exists():  # it is training
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.2)
        started = time.perf_counter()
        second = subprocess.run([*DIFFPLAN, *base, *run, "--resume"], env=env, capture_output=True, text=True)
        refused_in = time.perf_counter() - started
        assert second.returncode == 2, second.stderr
        assert f"is being written by pid {first.pid} on " in second.stderr and second.stderr.count("\n") == 1
        assert first.poll() is None  # the holder goes on
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    assert (tmp_path / "run" / ".writer.json").exists()  # the killed holder's record is left behind ...
    third = subprocess.run([*DIFFPLAN, *base, *run, "--resume"], env=env, capture_output=True, text=True)
    assert third.returncode == 0, third.stderr  # ... and its lock, released by the OS, is taken over
    for sub in ("unet", "value_function"):
        a = load_file(str(tmp_path / "straight" / sub / "diffusion_pytorch_model.safetensors"))
        b = load_file(str(tmp_path / "run" / sub / "diffusion_pytorch_model.safetensors"))
        assert all(torch.equal(a[k], b[k]) for k in a), sub
    print(f"second writer refused in {refused_in:.1f} s")
