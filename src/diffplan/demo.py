"""``make demo`` / ``diffplan demo``: one Hopper-v5 episode with the shipped ``hopper-medium`` run.

Plans with the run's stored planner settings and executes the plans as ``diffplan evaluate`` does
(one rollout loop, :mod:`diffplan.rollout`), prints the return and the normalized
score, and writes a video of the episode and a plot of the first plan against the executed states.
``--from-scratch`` instead runs the whole loop at tiny scale (collect random episodes, train the
``tiny`` preset briefly, evaluate one episode), which needs no shipped run.
"""

from __future__ import annotations

import os
from pathlib import Path

from diffplan.evaluation import EvalResult

DEFAULT_RUN = "hopper-medium"
SCRATCH_ENV_ID = "Hopper-v5"
SCRATCH_DATASET_ID = "diffplan-demo/hopper-random-v0"


def run_demo(
    *, workdir: Path, run: str = DEFAULT_RUN, seed: int = 0, max_episode_steps: int | None = None
) -> EvalResult:
    """One rendered episode with a trained run.

    Args:
        workdir: folder for ``episode.mp4`` and ``plan_vs_executed.png``.
        run: run folder or shipped run name.
        seed: reset seed and planner seed.
        max_episode_steps: cut the episode (default: the env's limit, 1000 for Hopper-v5).

    Returns:
        The evaluation of the episode (the JSON of ``diffplan evaluate``).
    """
    from diffplan.evaluation import summarize
    from diffplan.planning import ValueGuidedRLPipeline
    from diffplan.planning.runs import resolve_run
    from diffplan.render import render_episode

    run_dir = resolve_run(run)
    pipe = ValueGuidedRLPipeline.from_pretrained(run_dir)
    env_id = pipe.info.env_id if pipe.info else None
    if env_id is None:
        raise ValueError(f"run {run} records no env id")
    print(f"run {run} ({run_dir}): {env_id}, trained on {pipe.info.dataset_id if pipe.info else '?'}")
    print(f"planning one episode (seed {seed}) and recording it ...")
    res = render_episode(pipe=pipe, out_dir=workdir, seed=seed, max_episode_steps=max_episode_steps)
    print(f"video: {res.video.resolve()}\nplot:  {res.plot.resolve()}")
    return summarize(
        pipe=pipe,
        env_id=env_id,
        seed=seed,
        result=res.rollout,
        num_envs=1,
        planner={"run": str(run), "mode": "replan", "replan_every": res.replan_every, "actions": "plan"},
    )


def run_demo_from_scratch(
    *, workdir: Path, seed: int = 0, collect_steps: int = 5_000, train_steps: int = 1_500, max_episode_steps: int = 200
) -> EvalResult:
    """Collect, train and evaluate at tiny scale; prints each stage and where its output went.

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
    print(f"[1/3] dataset {SCRATCH_DATASET_ID}: {collect_steps} random-policy steps in {SCRATCH_ENV_ID}")
    if dataset_exists(SCRATCH_DATASET_ID):
        print("      already collected, reusing it")
    else:
        collect(env_id=SCRATCH_ENV_ID, behavior="random", steps=collect_steps, seed=seed, dataset_id=SCRATCH_DATASET_ID)
    run_dir = workdir / "run"
    print(f"[2/3] training the tiny preset for {train_steps} steps per network into {run_dir}")
    preset = get_preset("tiny", denoiser_steps=train_steps, value_steps=train_steps, seed=seed)
    train(dataset=SCRATCH_DATASET_ID, out=run_dir, preset=preset, device="cpu", resume=(run_dir / "training").exists())
    print(f"[3/3] evaluating one episode (at most {max_episode_steps} steps)")
    pipe = ValueGuidedRLPipeline.from_pretrained(run_dir)
    result = evaluate(pipe=pipe, episodes=1, seed=seed, max_episode_steps=max_episode_steps)
    print(f"run folder: {run_dir.resolve()}  (loss curves: {run_dir.resolve() / 'training' / 'losses.png'})")
    return result
