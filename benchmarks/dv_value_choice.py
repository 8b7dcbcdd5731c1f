"""Plain TD or an expectile for the ``dv`` preset's state value V(s), measured by the planner's score.

The state value only ranks the candidate plans, so the denoiser and the inverse dynamics of a trained
``dv`` run are kept and V(s) alone is trained again with each expectile: the run folder is copied without
its state value, its recorded preset gets the expectile, and ``train(..., resume=True)`` trains the one
missing phase. Every variant is scored on held-out episodes (reset seeds ``--eval-seed + i``, 1000 by
default, apart from the grid's 0-49): a choice made here is reported on the grid's episodes, never these.
Expectile 0.5 is the run as trained (its held-out score is the learning curve's last point when that
exists, results/learning_curves.json).

    python benchmarks/dv_value_choice.py hopper-medium --expectiles 0.7 0.9

results/dv_value_choice.json: ``{dataset: {"seed<k>": {"<expectile>": {"score", "stderr", "returns", ...}}}}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT  # noqa: E402
from benchmarks.grid import GridConfig, grid_datasets, run_dir  # noqa: E402
from benchmarks.learning_curves import evaluate_snapshot  # noqa: E402

OUT = ROOT / "results" / "dv_value_choice.json"


def variant(cfg: GridConfig, name: str, seed: int, expectile: float) -> Path:
    """The dv run of ``name`` and ``seed`` with its state value trained again at ``expectile``."""
    from diffplan.io import atomic_write_json, read_json
    from diffplan.training import train
    from diffplan.training.trainer import PROGRESS, stored_preset

    source = run_dir(cfg, name, "dv", seed)
    out = ROOT / "runs" / "choices" / name / f"dv-expectile{expectile}" / f"seed{seed}"
    if (out / "state_value").is_dir():
        return out
    skip = shutil.ignore_patterns("state_value", "logs", ".writer.*")
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out, ignore=skip)
    preset = stored_preset(out)
    if preset is None:
        raise FileNotFoundError(f"expected a trained dv run in {source}")
    preset = dataclasses.replace(preset, value_targets=dataclasses.replace(preset.value_targets, expectile=expectile))
    record = read_json(out / PROGRESS) | {"preset": preset.to_dict()}
    atomic_write_json(out / PROGRESS, record)
    train(dataset=cfg.datasets[name], out=out, preset=preset, device="cpu", resume=True, progress=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="grid dataset name, e.g. hopper-medium")
    parser.add_argument("--expectiles", type=float, nargs="+", default=[0.7, 0.9])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--eval-seed", type=int, default=1000)
    parser.add_argument("--num-envs", type=int, default=10)
    args = parser.parse_args()
    import torch

    from diffplan.io import update_json

    torch.set_num_threads(1)
    cfg = GridConfig(datasets=grid_datasets([args.dataset]))
    for expectile in args.expectiles:
        run = variant(cfg, args.dataset, args.seed, expectile)
        rec = evaluate_snapshot(run, episodes=args.episodes, eval_seed=args.eval_seed, num_envs=args.num_envs,
                                progress=True)  # fmt: skip
        update_json(OUT, [args.dataset, f"seed{args.seed}", str(expectile)], rec)
        print(f"{args.dataset} dv expectile {expectile}: {rec['score']:.1f} ± {rec['stderr']:.1f}")


if __name__ == "__main__":
    main()
