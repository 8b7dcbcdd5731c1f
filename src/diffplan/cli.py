"""Command line: parse, build objects, call. No logic lives here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from diffplan.presets import PRESETS


def _add_planner_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("planner (default: the run's stored settings)")
    g.add_argument("--batch-size", type=int, help="plans per decision")
    g.add_argument("--n-guide-steps", type=int, help="value-gradient steps per denoising step")
    g.add_argument("--scale", type=float, help="guidance step size")
    g.add_argument("--t-stopgrad", type=int, help="no guidance below this diffusion step")
    g.add_argument("--sampler", choices=["ddpm", "ddim", "dpmsolver++"], help="denoising sampler")
    g.add_argument("--steps", dest="num_inference_steps", type=int, help="denoising steps")
    g.add_argument("--warm-start-steps", type=int, help="denoising steps of warm-started decisions")
    g.add_argument("--replan-threshold", type=float, help="state jump (normalized) that forces a cold start")
    g.add_argument(
        "--goal-arrivals",
        type=int,
        help="goal tasks: spread plans over this many goal arrival steps, take the earliest consistent one",
    )


def _add_execution_flags(p: argparse.ArgumentParser, *, default_mode: str) -> None:
    p.add_argument(
        "--mode",
        choices=["replan", "track"],
        default=default_mode,
        help="replan: closed loop with the planner's actions; track: plan once, PD-follow the plan",
    )
    p.add_argument(
        "--actions",
        choices=["plan", "inverse"],
        default="plan",
        help="replan mode: the plan's sampled actions, or the run's inverse dynamics to the next planned state",
    )
    p.add_argument(
        "--walls", action="store_true", help="mazes: rank plans that cross the maze's walls last (uses the map)"
    )
    p.add_argument(
        "--task",
        choices=["multi", "single"],
        default="multi",
        help="PointMaze: a random goal per episode (multi) or the maze's fixed goal (single)",
    )


def _planner_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        "batch_size",
        "n_guide_steps",
        "scale",
        "t_stopgrad",
        "sampler",
        "num_inference_steps",
        "warm_start_steps",
        "replan_threshold",
        "goal_arrivals",
    )
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    """The ``diffplan`` argument parser (one sub-command per job)."""
    from importlib import metadata

    parser = argparse.ArgumentParser(prog="diffplan", description="value-guided diffusion planning")
    parser.add_argument("--version", action="version", version=f"diffplan {metadata.version('diffplan')}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("collect", help="roll out a behaviour policy into a Minari dataset")
    p.add_argument("env_id")
    p.add_argument("--behavior", required=True, help="random, sac or waypoint (PointMaze)")
    p.add_argument("--policy", help="medium, expert (shipped) or a SAC actor .safetensors file (behavior sac)")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset-id", required=True, help="new Minari id, e.g. diffplan/hopper-random-v0")

    sub.add_parser("datasets", help="list local Minari datasets")

    p = sub.add_parser("behavior", help="train and ship SAC behaviour policies (extra: collect)")
    bsub = p.add_subparsers(dest="behavior_command", required=True)
    b = bsub.add_parser("train", help="train SAC with evaluated snapshots (resumable)")
    b.add_argument("env_id")
    b.add_argument("--steps", type=int, required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--snapshot-every", type=int, default=10_000)
    b.add_argument("--learning-starts", type=int, default=100)
    b = bsub.add_parser("ship", help="pick medium and expert snapshots, evaluate them, store them")
    b.add_argument("run_dir")
    b.add_argument("--dest", help="destination folder (default: the package's policies folder)")
    b.add_argument("--episodes", type=int, default=20)
    b = bsub.add_parser("export-replay", help="the replay buffer up to the medium snapshot as a dataset")
    b.add_argument("run_dir")
    b.add_argument("--dataset-id", required=True)
    b.add_argument("--until-step", type=int, help="last step (default: the medium snapshot's)")

    p = sub.add_parser("train", help="train the denoiser and the value network")
    p.add_argument("dataset", help="Minari dataset id or D4RL-style .hdf5 file")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--preset", default="small", help=", ".join(PRESETS))
    p.add_argument("--env-id", help="environment (default: the dataset's)")
    p.add_argument("--denoiser-steps", type=int)
    p.add_argument("--value-steps", type=int)
    p.add_argument("--inverse-steps", type=int, help="steps of the inverse dynamics model (replan --actions inverse)")
    p.add_argument("--horizon", type=int)
    p.add_argument("--stride", type=int, help="environment steps per planned step")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu, cuda, ... (default: accelerate's choice)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the networks (GPU; the first steps pay the compilation)"
    )
    p.add_argument(
        "--mixed-precision",
        choices=["no", "bf16"],
        default="no",
        help="bf16 autocast of the forward passes (GPUs with bf16; off by default)",
    )
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="one CUDA device: capture each optimizer step as a CUDA graph and replay it (fastest on a GPU)",
    )

    p = sub.add_parser("evaluate", help="run episodes with a trained planner")
    p.add_argument("run", help="run folder or shipped run name")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--max-episode-steps", type=int)
    p.add_argument("--env-id", help="environment (default: the run's)")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="on a CUDA device: capture each planning call's shape once as a CUDA graph and replay it",
    )
    p.add_argument("--json", help="write the results as JSON here")
    _add_execution_flags(p, default_mode="replan")
    p.add_argument("--replan-every", type=int, help="steps between plans in replan mode (default: the run's stride)")
    p.add_argument("--plots", help="folder for a picture of each episode's plans and executed path")
    _add_planner_flags(p)

    p = sub.add_parser(
        "render",
        help="video of one episode and a plot of planned vs executed states "
        "(mazes: the plans over the walls and a denoising strip)",
    )
    p.add_argument("run", help="run folder or shipped run name")
    p.add_argument("--out", default="render", help="output folder")
    _add_execution_flags(p, default_mode="track")  # used by mazes
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-episode-steps", type=int)
    p.add_argument("--env-id", help="environment (default: the run's)")
    _add_planner_flags(p)

    sub.add_parser("runs", help="list the runs shipped with diffplan")

    p = sub.add_parser("demo", help="one recorded Hopper-v5 episode with the shipped hopper-medium run")
    p.add_argument("--run", default="hopper-medium", help="run folder or shipped run name")
    p.add_argument("--workdir", default="diffplan-demo", help="folder for the video and the plot")
    p.add_argument("--json", help="write the evaluation JSON here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-episode-steps", type=int, help="length limit of the episode (default: the env's)")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="instead: collect random data, train the tiny preset briefly, evaluate one episode",
    )
    p.add_argument("--collect-steps", type=int, default=5_000, help="--from-scratch: random-policy steps")
    p.add_argument("--train-steps", type=int, default=1_500, help="--from-scratch: optimizer steps per network")
    return parser


def _cmd_collect(args: argparse.Namespace) -> int:
    from diffplan.collect.collect import collect

    res = collect(
        env_id=args.env_id,
        behavior=args.behavior,
        steps=args.steps,
        seed=args.seed,
        dataset_id=args.dataset_id,
        policy=args.policy,
    )
    print(
        f"wrote {res.dataset_id}: {res.episodes} episodes, {res.steps} steps, mean return {res.mean_return:.1f} "
        f"in {res.seconds:.1f} s"
    )
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from diffplan.datasets import dataset_table

    print(dataset_table())
    return 0


def _cmd_behavior(args: argparse.Namespace) -> int:
    from diffplan.collect.behavior import BehaviorTrainConfig, export_replay, select_snapshots, ship_policies, train_sac

    if args.behavior_command == "export-replay":
        n = export_replay(run_dir=args.run_dir, dataset_id=args.dataset_id, until_step=args.until_step)
        print(f"wrote {args.dataset_id}: {n} transitions")
        return 0
    if args.behavior_command == "train":
        cfg = BehaviorTrainConfig(
            env_id=args.env_id,
            total_steps=args.steps,
            seed=args.seed,
            snapshot_every=args.snapshot_every,
            learning_starts=args.learning_starts,
        )
        chosen = select_snapshots(index_path=train_sac(config=cfg, out_dir=args.out))
    else:
        chosen = ship_policies(run_dir=args.run_dir, dest=args.dest, episodes=args.episodes)
    for name, snap in chosen.items():
        print(f"{name}: step {snap.get('step', snap.get('train_step'))}, mean return {snap['mean_return']:.1f}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from diffplan.presets import get_preset
    from diffplan.training import train

    overrides = {
        k: v
        for k, v in (
            ("denoiser_steps", args.denoiser_steps),
            ("value_steps", args.value_steps),
            ("inverse_steps", args.inverse_steps),
            ("horizon", args.horizon),
            ("stride", args.stride),
            ("seed", args.seed),
        )
        if v is not None
    }
    res = train(
        dataset=args.dataset,
        out=args.out,
        preset=get_preset(args.preset, **overrides),
        env_id=args.env_id,
        device=args.device,
        resume=args.resume,
        compile=args.compile,
        mixed_precision=args.mixed_precision,
        cuda_graphs=args.cuda_graphs,
    )
    for phase in res.steps:
        print(
            f"{phase}: {res.steps[phase]} steps, final loss {res.final_loss[phase]:.4g}, "
            f"{res.steps_per_second[phase]:.1f} steps/s"
        )
    print(f"run folder: {res.run_dir}")
    return 0


def _print_eval(res: Any) -> None:
    rows = [
        ("env", res.env_id),
        ("episodes", res.episodes),
        ("mean return", f"{res.mean_return:.1f}"),
        (
            "normalized score",
            "n/a" if res.normalized_score is None else f"{res.normalized_score:.1f} ± {res.stderr:.1f}",
        ),
        ("episode lengths", ", ".join(map(str, res.lengths))),
        ("success rate", "n/a" if res.success_rate is None else f"{100 * res.success_rate:.0f} %"),
        ("seconds / decision", f"{res.seconds_per_decision:.3f}"),
        ("seconds / plan", f"{res.seconds_per_plan:.3f}"),
        ("envs planned together", res.num_envs),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def _write_json(path: str | None, data: dict[str, Any]) -> None:
    if path:
        from diffplan.io import atomic_write_json

        atomic_write_json(path, data)
        print(f"wrote {path}")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from diffplan.evaluation import evaluate
    from diffplan.planning import ValueGuidedRLPipeline

    pipe = ValueGuidedRLPipeline.from_pretrained(args.run, device=args.device)
    if getattr(args, "cuda_graphs", False):
        pipe.use_cuda_graphs()
    res = evaluate(
        pipe=pipe,
        episodes=args.episodes,
        seed=args.seed,
        env_id=args.env_id,
        num_envs=args.num_envs,
        max_episode_steps=args.max_episode_steps,
        plan_kwargs=_planner_kwargs(args),
        mode=args.mode,
        replan_every=args.replan_every,
        plots_dir=args.plots,
        task=args.task,
        actions=args.actions,
        walls=args.walls,
    )
    _print_eval(res)
    _write_json(args.json, res.to_dict())
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from diffplan.envs.specs import is_maze
    from diffplan.planning import ValueGuidedRLPipeline
    from diffplan.render import render_episode, render_maze

    pipe = ValueGuidedRLPipeline.from_pretrained(args.run)
    env_id = args.env_id or (pipe.info.env_id if pipe.info else None)
    if is_maze(env_id):
        maze = render_maze(
            pipe=pipe,
            out_dir=args.out,
            seed=args.seed,
            env_id=args.env_id,
            mode=args.mode,
            task=args.task,
            max_episode_steps=args.max_episode_steps,
            plan_kwargs=_planner_kwargs(args),
            actions=args.actions,
            walls=args.walls,
        )
        print(f"{'reached' if maze.success else 'missed'} the goal, return {maze.episode_return:.1f}")
        print(f"maze picture: {maze.picture}\ndenoising strip: {maze.denoising}")
        return 0
    res = render_episode(
        pipe=pipe,
        out_dir=args.out,
        seed=args.seed,
        env_id=args.env_id,
        max_episode_steps=args.max_episode_steps,
        plan_kwargs=_planner_kwargs(args),
    )
    print(f"return {res.episode_return:.1f} in {res.steps} steps")
    print(f"video: {res.video} ({res.frames} frames)\nplot: {res.plot}")
    return 0


def _cmd_runs(args: argparse.Namespace) -> int:
    from diffplan.planning.runs import list_runs

    names = list_runs()
    print("\n".join(names) if names else "no runs are shipped with this version")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from diffplan.demo import run_demo, run_demo_from_scratch

    if args.from_scratch:
        res = run_demo_from_scratch(
            workdir=Path(args.workdir),
            seed=args.seed,
            collect_steps=args.collect_steps,
            train_steps=args.train_steps,
            max_episode_steps=args.max_episode_steps or 200,
        )
    else:
        res = run_demo(
            workdir=Path(args.workdir), run=args.run, seed=args.seed, max_episode_steps=args.max_episode_steps
        )
    _print_eval(res)
    _write_json(args.json, res.to_dict())
    return 0


COMMANDS = {
    "collect": _cmd_collect,
    "datasets": _cmd_datasets,
    "behavior": _cmd_behavior,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "runs": _cmd_runs,
    "render": _cmd_render,
    "demo": _cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diffplan`` console script; bad input exits with status 2 and a message."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError) as err:
        print(f"diffplan {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"diffplan {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
