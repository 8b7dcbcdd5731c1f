"""``make demo`` / ``diffplan demo``: the whole loop at tiny scale on Hopper-v5.

Collects random-policy episodes into a Minari dataset inside ``workdir``, trains the ``tiny``
preset briefly, and evaluates one episode. Re-running reuses the dataset and the finished run.
"""

from __future__ import annotations

import os
from pathlib import Path

from diffplan.evaluation import EvalResult

ENV_ID = "Hopper-v5"
DATASET_ID = "diffplan-demo/hopper-random-v0"


def run_demo(*, workdir: Path, seed: int = 0, collect_steps: int = 5_000, train_steps: int = 1_500,
             max_episode_steps: int = 200) -> EvalResult:
    """Collect, train and evaluate; prints each stage and where its output went.

    Args:
        workdir: folder for the dataset (``datasets/``) and the run (``run/``).
        seed: seed of collection, training and evaluation.
        collect_steps: random-policy steps to collect.
        train_steps: optimizer steps of each network.
        max_episode_steps: length limit of the evaluation episode.

    Returns:
        The evaluation of one episode.
    """
    from diffplan.collect.collect import collect, dataset_exists
    from diffplan.evaluation import evaluate
    from diffplan.planning import ValueGuidedRLPipeline
    from diffplan.presets import get_preset
    from diffplan.training import train

    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["MINARI_DATASETS_PATH"] = str((workdir / "datasets").resolve())
    print(f"[1/3] dataset {DATASET_ID}: {collect_steps} random-policy steps in {ENV_ID}")
    if dataset_exists(DATASET_ID):
        print("      already collected, reusing it")
    else:
        collect(env_id=ENV_ID, behavior="random", steps=collect_steps, seed=seed, dataset_id=DATASET_ID)
    run_dir = workdir / "run"
    print(f"[2/3] training the tiny preset for {train_steps} steps per network into {run_dir}")
    preset = get_preset("tiny", denoiser_steps=train_steps, value_steps=train_steps, seed=seed)
    train(dataset=DATASET_ID, out=run_dir, preset=preset, device="cpu", resume=(run_dir / "training").exists())
    print(f"[3/3] evaluating one episode (at most {max_episode_steps} steps)")
    pipe = ValueGuidedRLPipeline.from_pretrained(run_dir)
    result = evaluate(pipe=pipe, episodes=1, seed=seed, max_episode_steps=max_episode_steps)
    print(f"run folder: {run_dir.resolve()}  (loss curves: {run_dir.resolve() / 'training' / 'losses.png'})")
    return result
