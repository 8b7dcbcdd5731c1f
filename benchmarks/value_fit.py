"""How well a run's value network predicts its targets: R² per diffusion step on the run's data.

The value network is trained on noised windows (start state inpainted) to predict the discounted
return of the window's first step (raw units: the preset's `value_targets`). This measures the
fraction of the targets' variance it explains at diffusion steps t = 0 (clean) .. T-1 (noise), on
`--windows` random windows of the run's dataset (its own normalizer, fixed noise per t).

`--standardized-steps N` also trains a fresh value network of the run's size for N steps on the same
windows with *standardized* targets ((v - mean) / std; its predictions are mapped back to raw units
before scoring) — the experiment of whether the raw-unit targets slow its training — and reports the
same R² every 2,000 steps. That loop is the trainer's value phase (same optimiser, batch and diffusers
`EMAModel`) without accelerate, resuming or checkpoints (an experiment, not a training path).

    python benchmarks/value_fit.py --run runs/grid/hopper-medium-replay/diffplan/seed0 [--standardized-steps 10000]

Merges {run: {"r2_by_t": {t: r2}, "standardized": {steps: {t: r2}}, ...}} into results/value_fit.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from diffusers import UNet1DModel

    from diffplan.config import TrainConfig
    from diffplan.data.windows import WindowDataset

Noiser = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
Scorer = Callable[..., dict[str, float]]

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, machine  # noqa: E402

OUT = ROOT / "results" / "value_fit.json"


def main() -> None:
    from diffplan.config import Preset
    from diffplan.data.episodes import load_episodes
    from diffplan.data.windows import WindowDataset
    from diffplan.diffusion.conditioning import Constraint, apply_constraints
    from diffplan.io import update_json
    from diffplan.models import build_value_function
    from diffplan.planning import ValueGuidedRLPipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="run folder or shipped run name")
    parser.add_argument("--windows", type=int, default=4096)
    parser.add_argument("--steps-t", type=int, nargs="*", default=None, help="diffusion steps to report (default: 6)")
    parser.add_argument("--standardized-steps", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)

    pipe = ValueGuidedRLPipeline.from_pretrained(args.run)
    info = pipe.info
    if pipe.value_function is None or info is None or info.preset is None or info.dataset_id is None:
        raise ValueError(
            f"{args.run} has no value network, recorded preset or dataset; expected a locomotion run folder"
        )
    preset = Preset.from_dict(info.preset)  # reads both the current and the older key names
    data = WindowDataset(
        episodes=load_episodes(info.dataset_id, env_id=info.env_id),
        horizon=int(info.horizon or 0),
        stride=info.stride,
        normalizer=pipe.normalizer.trajectory,
        discount=preset.value_targets.discount,
        termination_penalty=preset.value_targets.termination_penalty,
    )
    n_t = pipe.scheduler.config.num_train_timesteps
    report_t = args.steps_t or sorted({0, 2, n_t // 4, n_t // 2, 3 * n_t // 4, n_t - 1})
    act = data.act_dim

    def noised(x0: torch.Tensor, t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        xt = pipe.scheduler.add_noise(x0, torch.randn(x0.shape, generator=g), t)
        return apply_constraints(xt, [Constraint(index=0, start=act, values=x0[:, 0, act:])])

    x_eval, v_eval = data.sample(args.windows, generator=torch.Generator().manual_seed(args.seed + 123))

    def r2(model: UNet1DModel, shift: float = 0.0, scale: float = 1.0) -> dict[str, float]:
        out = {}
        with torch.no_grad():
            for t in report_t:
                steps = torch.full((len(x_eval),), t)
                xt = noised(x_eval, steps, torch.Generator().manual_seed(args.seed + t))
                pred = model(xt.permute(0, 2, 1), steps).sample.squeeze(-1) * scale + shift
                out[str(t)] = round(float(1 - ((pred - v_eval) ** 2).mean() / v_eval.var()), 4)
        return out

    record: dict[str, Any] = {
        "r2_by_t": r2(pipe.value_function.eval()),
        "target_mean": float(data.values.mean()),
        "target_std": float(data.values.std()),
        "value_steps": (info.extra.get("train_steps") or {}).get("value_function"),
        "windows": args.windows,
        "date": date.today().isoformat(),
        "machine": f"{machine()}, 1 thread",
    }
    print(f"{args.run}: R² by diffusion step {record['r2_by_t']}", flush=True)
    if args.standardized_steps:
        record["standardized"] = standardized_experiment(
            data=data, noised=noised, r2=r2, steps=args.standardized_steps, seed=args.seed, train=preset.train,
            n_t=n_t, build=lambda: build_value_function(config=preset.value_net, transition_dim=data.transition_dim),
        )  # fmt: skip
    update_json(args.out, [str(args.run)], record)
    print(f"wrote {args.out}")


def standardized_experiment(
    *,
    data: WindowDataset,
    noised: Noiser,
    r2: Scorer,
    steps: int,
    seed: int,
    train: TrainConfig,
    n_t: int,
    build: Callable[[], UNet1DModel],
) -> dict[str, dict[str, float]]:
    """Train a fresh value network on standardized targets (Adam at the preset's learning rate and
    batch, diffusers' ``EMAModel`` as the trainer's) and return its R² by diffusion step every 2,000 steps (and at the
    last), in raw units (the standardization undone on its output)."""
    from diffusers.training_utils import EMAModel

    mean, std = float(data.values.mean()), float(data.values.std())
    torch.manual_seed(seed)
    model, scored = build(), build()
    ema = EMAModel(model.parameters(), decay=train.ema_decay, update_after_step=train.ema_start)
    opt = torch.optim.Adam(model.parameters(), lr=train.learning_rate)
    g = torch.Generator().manual_seed(seed)
    out, started = {}, time.perf_counter()
    for step in range(1, steps + 1):
        x0, v = data.sample(train.batch_size, generator=g)
        t = torch.randint(0, n_t, (len(x0),), generator=g)
        loss = ((model(noised(x0, t, g).permute(0, 2, 1), t).sample.squeeze(-1) - (v - mean) / std) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.step(model.parameters())
        if step % 2000 == 0 or step == steps:
            ema.copy_to(scored.parameters())
            out[str(step)] = r2(scored.eval(), mean, std)
            print(f"standardized, step {step} ({time.perf_counter() - started:.0f} s): {out[str(step)]}", flush=True)
    return out


if __name__ == "__main__":
    main()
