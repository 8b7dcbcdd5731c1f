"""Scale-out: the trainer under ``accelerate launch`` with two CPU processes (DDP over gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from diffplan.planning import ValueGuidedRLPipeline

SCRIPT = Path(__file__).with_name("accelerate_train.py")


def _launch(dataset: str, out: Path, steps: int, *extra: str) -> None:
    accelerate = Path(sys.executable).with_name("accelerate")
    # `--cpu` alone starts one process (several need MPI); `--multi_gpu` starts them with torchrun,
    # and with no GPU visible the trainer's Accelerator(cpu=True) joins them over gloo
    cmd = [
        str(accelerate),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        str(SCRIPT),
        dataset,
        str(out),
        str(steps),
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_processes_train_a_run_that_loads_and_resumes(hopper_dataset: str, tmp_path: Path) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _launch(hopper_dataset, straight, 20)
    # the two processes drew different batches
    a = json.loads((straight / "batches-0-of-2.json").read_text())
    b = json.loads((straight / "batches-1-of-2.json").read_text())
    assert len(a) == len(b) == 40 and not np.allclose(a, b)
    pipe = ValueGuidedRLPipeline.from_pretrained(straight)
    plan = pipe.plan(np.r_[1.25, np.zeros(10)], batch_size=3, generator=torch.Generator().manual_seed(0))
    assert plan.actions.shape == (3, 8, 3) and np.isfinite(plan.actions).all()
    # a run stopped at step 10 and resumed with two processes ends where the straight one did
    _launch(hopper_dataset, resumed, 10)
    _launch(hopper_dataset, resumed, 20, "--resume")
    assert len(json.loads((resumed / "batches-0-of-2.json").read_text())) == 20  # only the missing steps ran
    for sub in ("unet", "value_function"):
        x = load_file(str(straight / sub / "diffusion_pytorch_model.safetensors"))
        y = load_file(str(resumed / sub / "diffusion_pytorch_model.safetensors"))
        assert all(torch.equal(x[k], y[k]) for k in x), sub
    info = json.loads((resumed / "diffplan.json").read_text())
    assert info["extra"]["train_steps"] == {"unet": 20, "value_function": 20}
