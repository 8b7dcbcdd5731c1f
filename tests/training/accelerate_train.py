"""Run under ``accelerate launch`` by test_accelerate.py: trains the ``tiny`` preset and records,
per process, a fingerprint of every batch it drew (to show that processes see different data).

    accelerate launch --num_processes 2 --cpu accelerate_train.py DATASET OUT STEPS [--resume]
"""

import json
import sys
from pathlib import Path

import torch

from diffplan.presets import get_preset
from diffplan.training.trainer import Trainer


def main() -> None:
    dataset, out, steps = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(1)
    preset = get_preset("tiny", denoiser_steps=steps, value_steps=steps, checkpoint_every=10, log_every=5)
    trainer = Trainer(
        dataset=dataset, out=out, preset=preset, device="cpu", progress=False, resume="--resume" in sys.argv
    )
    seen: list[float] = []
    phase_functions = trainer.phase_functions

    def recording(phase: str):  # type: ignore[no-untyped-def]
        batch_fn, loss_fn = phase_functions(phase)

        def batch(step: int, micro: int):  # type: ignore[no-untyped-def]
            b = batch_fn(step, micro)
            seen.append(float(b[0].sum()))
            return b

        return batch, loss_fn

    trainer.phase_functions = recording  # type: ignore[method-assign]
    trainer.train()
    rank = trainer.accelerator.process_index
    (out / f"batches-{rank}-of-{trainer.accelerator.num_processes}.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    main()
