"""Many runs in one process: aggregate optimizer steps/s of N runs trained together against one run alone.

For each preset and N in ``--n``, N seeds of the preset's denoiser phase are trained together
(``diffplan.training.group``: one batched network, one Adam, one EMA) on a random-policy Hopper-v5
dataset, and one run is trained alone with the ordinary trainer, in the same process, one after the
other. The figure is steps/s after ``--warmup`` steps (excluded), measured over ``--steps`` steps:
aggregate = N x the group's steps/s; speedup = aggregate / the single run's steps/s.

    python benchmarks/many_runs.py [--device cpu] [--threads 1] [--presets small dv] [--n 1 3 9 27]

Writes results/many_runs.json (``{device: {preset: {"rows": {N: {"steps_per_s", "speedup"}}, ...}}}``)
and, with ``--gpu-check FILE``, the keys ``many_runs_n27_speedup``, ``many_runs_n27_steps_per_s`` and
``many_runs_preset`` into that file, as benchmarks/gpu_check.sh does.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (  # noqa: E402
    ROOT,
    machine,
    random_hopper_dataset,  # noqa: E402
)


def measure(preset_name: str, n: int, *, dataset: str, root: Path, warmup: int, steps: int, device: str) -> float:
    """Aggregate denoiser steps/s of ``n`` runs of ``preset_name`` trained together (alone when ``n`` is 1):
    ``warmup`` steps untimed, then ``steps`` more resumed, timed inside the training loop (the rate the
    trainer reports, which leaves out building the runs and writing their folders)."""
    from diffplan.presets import get_preset
    from diffplan.training.group import make_trainers, train_group

    # the denoiser phase is timed; the other phases get no steps (a states-only preset keeps the least
    # inverse dynamics it needs: one step)
    inverse = 1 if get_preset(preset_name).diffusion.states_only else 0
    preset = get_preset(preset_name, value_steps=0, inverse_steps=inverse, critic_steps=0, state_value_steps=0,
                        checkpoint_every=10**9, log_every=10**9)  # fmt: skip
    out = root / f"{preset_name}-{n}"
    rate = 0.0
    for total, resume in ((warmup, False), (warmup + steps, True)):
        trainers = make_trainers(datasets=[dataset], seeds=list(range(n)), out=out, resume=resume, device=device,
                                 preset=replace(preset, train=replace(preset.train, denoiser_steps=total)),
                                 progress=False)  # fmt: skip
        results = train_group(trainers, progress=False) if n > 1 else [trainers[0].train()]
        rate = results[0].steps_per_second["unet"]
    return n * rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--presets", nargs="+", default=["small", "dv"])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 3, 9, 27])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "results" / "many_runs.json"))
    parser.add_argument("--gpu-check", help="also write the n = 27 keys into this JSON file")
    args = parser.parse_args()
    import torch

    from diffplan.io import update_json

    torch.set_num_threads(args.threads)
    table: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        dataset = random_hopper_dataset(Path(tmp) / "data")
        for name in args.presets:
            alone = measure(name, 1, dataset=dataset, root=Path(tmp), warmup=args.warmup, steps=args.steps,
                            device=args.device)  # fmt: skip
            rows = {"1": {"steps_per_s": alone, "speedup": 1.0}}
            for n in (k for k in args.n if k > 1):
                agg = measure(name, n, dataset=dataset, root=Path(tmp), warmup=args.warmup, steps=args.steps,
                              device=args.device)  # fmt: skip
                rows[str(n)] = {"steps_per_s": agg, "speedup": agg / alone}
            table[name] = rows
            for n, row in rows.items():
                print(f"{name:<8} N={n:<3} {row['steps_per_s']:9.1f} aggregate steps/s  {row['speedup']:5.2f}x alone",
                      flush=True)  # fmt: skip
    device = args.device.split(":")[0]
    for name, rows in table.items():  # other presets' rows of this device stay
        record = {"rows": rows, "threads": args.threads, "steps": args.steps, "warmup": args.warmup,
                  "machine": machine(), "date": date.today().isoformat()}  # fmt: skip
        update_json(args.out, [device, name], record)
    if args.gpu_check:
        best = args.presets[-1]
        top = table[best].get("27")
        if top is not None:
            for key, value in (("many_runs_n27_speedup", top["speedup"]), ("many_runs_n27_steps_per_s",
                               top["steps_per_s"]), ("many_runs_preset", best)):  # fmt: skip
                update_json(args.gpu_check, [key], value)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
