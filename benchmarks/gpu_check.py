"""The GPU figures of issue 11 in one run: planning table, training steps/s, time split.

    python benchmarks/gpu_check.py [--out results/gpu_check.json] [--quick]

Run through benchmarks/gpu_check.sh on a machine with only torch installed. Every section is
written to the JSON file as soon as it is measured, and a section that fails records its error
instead of stopping the others.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from datetime import date
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # run as a script: import the package as `python -m benchmarks.NAME` does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, build_pipes, machine, random_hopper_dataset  # noqa: E402
from benchmarks.plan_speed import CONFIGS, FAST, diffusers_speed, episode_speed  # noqa: E402
from benchmarks.profile_split import planning_split, train_rate, training_split  # noqa: E402

IDENTICAL = "ddpm-20 (identical settings)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "results" / "gpu_check.json"))
    parser.add_argument("--decisions", type=int, default=30)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="few decisions and steps (a smoke test)")
    parser.add_argument(
        "--sections",
        default="planning,profile,train,graphs,compile-graphs,resume,bf16",
        help="comma-separated subset of: planning, profile, train, graphs, compile (eager compiled "
        "training, ~2 more minutes), compile-graphs, resume, bf16",
    )
    parser.add_argument("--device", default="cuda", help="cuda; cpu only to smoke-test this script")
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="combine the JSON files of several runs (oldest first) into --out instead of measuring",
    )
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, Path(args.out))
        return
    if args.quick:
        args.decisions, args.train_steps = 4, 20
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check needs a CUDA device; none is visible")
    started = time.perf_counter()
    result: dict[str, Any] = {
        "date": date.today().isoformat(),
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "machine": machine(),
        "errors": {},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        result["seconds"] = time.perf_counter() - started
        out.write_text(json.dumps(result, indent=2) + "\n")

    def section(name: str, fn: Any) -> Any:
        t0 = time.perf_counter()
        try:
            value = fn()
        except Exception as err:  # record and go on: one broken section must not hide the others
            traceback.print_exc()
            result["errors"][name] = f"{type(err).__name__}: {err}"
            value = None
        print(f"[{time.perf_counter() - started:6.1f} s] {name} ({time.perf_counter() - t0:.1f} s)", flush=True)
        save()
        return value

    sections = set(args.sections.split(","))
    ours, theirs = build_pipes(None, device)
    planning: dict[str, Any] = {}
    result["planning"] = planning
    if "planning" in sections:
        planning_table(args, ours, theirs, device, result, section)
    if "profile" in sections:
        ours.use_cuda_graphs(False)  # the split needs the Python-level network calls that a graph replay skips
        result["profile_planning"] = section(
            "profile planning",
            lambda pipe=ours: [
                planning_split(pipe, n_envs=k, decisions=min(args.decisions, 20), device=torch.device(device))
                for k in (1, 64)
            ],
        )
    del ours, theirs
    if device == "cuda":
        torch.cuda.empty_cache()
    training_table(args, device, sections, result, section)
    save()
    print("\n" + json.dumps({k: v for k, v in result.items() if not isinstance(v, (dict, list))}, indent=1))
    for key, row in planning.items():
        if row:
            ms, rate = row["seconds_per_call"] * 1e3, row["decisions_per_second"]
            print(f"{key:<24} {ms:9.2f} ms per call {rate:10.1f} decisions/s")
    for key, row in result.get("training", {}).items():
        if row:
            print(
                f"{key:<32} {row['steps_per_s']:8.1f} steps/s {row['samples_per_s']:9.0f} samples/s "
                f"(warm-up {row['warmup_seconds']:.1f} s)"
            )
    if result["errors"]:
        print("errors:", json.dumps(result["errors"], indent=1))


SUMMARY = (
    "gpu",
    "fast_k1_ms",
    "fast_k64_decisions_per_s",
    "fast_k256_decisions_per_s",
    "identical_speedup_vs_diffusers",
    "paper_b32_steps_per_s",
    "paper_b256_steps_per_s",
    "small_b64_steps_per_s",
    "samples_ratio_b256_vs_b32",
    "cuda_graphs_same_seed_same_plan",
    "resume_bit_identical",
    "straight_runs_bit_identical",
    "graph_capture_seconds",
)


def merge(paths: list[str], out: Path) -> None:
    """Each summary key from the last run that measured it (with the run's file named), plus every run."""
    runs = {Path(p).name: json.loads(Path(p).read_text()) for p in paths}
    merged: dict[str, Any] = {"runs": runs, "source": {}}
    for name, run in runs.items():
        for key in SUMMARY:
            value = run.get(key)
            if value is not None and value == value:  # skip missing and NaN
                merged[key], merged["source"][key] = value, name
    out.write_text(json.dumps(merged, indent=2) + "\n")
    print(json.dumps({k: merged.get(k) for k in SUMMARY}, indent=1))


def planning_table(
    args: argparse.Namespace, ours: Any, theirs: Any, device: str, result: dict[str, Any], section: Any
) -> None:
    """diffusers vs ours at identical settings, and `fast_config` at 1, 64 and 256 envs, eager and
    with CUDA graphs; same-seed determinism of the graphed planner."""
    planning = result["planning"]
    t_diffusers = section("diffusers", lambda: diffusers_speed(theirs, 3, device))
    result["diffusers_seconds_per_decision"] = t_diffusers
    for graphs in (False, True):
        ours.use_cuda_graphs(graphs)
        tag = "cuda_graphs" if graphs else "eager"
        planning[f"identical_{tag}"] = section(
            f"identical {tag}", lambda: episode_speed(ours, CONFIGS[IDENTICAL], max(3, args.decisions // 6), 1, device)
        )
        for k in (1, 64, 256):
            planning[f"fast_k{k}_{tag}"] = section(
                f"fast k={k} {tag}", lambda: episode_speed(ours, CONFIGS[FAST], args.decisions, k, device)
            )
        if graphs:
            result["graph_capture_seconds"] = ours.graph_capture_seconds
    best = {
        key: min(
            (planning.get(f"{key}_{tag}") or {"seconds_per_call": float("inf")})["seconds_per_call"]
            for tag in ("eager", "cuda_graphs")
        )
        for key in ("identical", "fast_k1", "fast_k64", "fast_k256")
    }
    result.update(
        {
            "fast_k1_ms": best["fast_k1"] * 1e3,
            "fast_k64_decisions_per_s": 64 / best["fast_k64"],
            "fast_k256_decisions_per_s": 256 / best["fast_k256"],
            "identical_speedup_vs_diffusers": (t_diffusers or float("nan")) / best["identical"],
        }
    )

    def same_seed_same_plan() -> bool:
        obs = ours.normalizer.observations.shift
        a, b = (
            ours.plan(obs, generator=torch.Generator(device=device).manual_seed(3), **CONFIGS[FAST]).actions
            for _ in range(2)
        )
        return bool((a == b).all())

    ours.use_cuda_graphs(True)
    result["cuda_graphs_same_seed_same_plan"] = section("determinism", same_seed_same_plan)


def _train_small(
    dataset: str, out: Path, steps: list[tuple[int, int]], *, device: str | None, cuda_graphs: bool
) -> dict[str, torch.Tensor]:
    """Train the `small` preset to each ``(denoiser, value)`` step count in turn (resuming); the
    final weights of both networks."""
    from safetensors.torch import load_file

    from diffplan.presets import get_preset
    from diffplan.training import train

    for i, (denoiser, value) in enumerate(steps):
        preset = get_preset("small", denoiser_steps=denoiser, value_steps=value, checkpoint_every=5)
        train(
            dataset=dataset,
            out=out,
            preset=preset,
            device=device,
            progress=False,
            resume=i > 0,
            cuda_graphs=cuda_graphs,
        )
    return {
        f"{sub}.{k}": v
        for sub in ("unet", "value_function")
        for k, v in load_file(str(out / sub / "diffusion_pytorch_model.safetensors")).items()
    }


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def resume_is_bit_identical(dataset: str, folder: Path, *, device: str | None, cuda_graphs: bool) -> bool:
    """`small` preset: 30 + 20 steps straight, and 15 + 10 steps resumed to 30 + 20, give equal weights."""
    straight = _train_small(dataset, folder / "straight", [(30, 20)], device=device, cuda_graphs=cuda_graphs)
    resumed = _train_small(dataset, folder / "resumed", [(15, 10), (30, 20)], device=device, cuda_graphs=cuda_graphs)
    return _equal(straight, resumed)


def repeat_is_bit_identical(dataset: str, folder: Path, *, device: str | None, cuda_graphs: bool) -> bool:
    """Two straight `small` runs of 30 + 20 steps give equal weights."""
    runs = [_train_small(dataset, folder / str(i), [(30, 20)], device=device, cuda_graphs=cuda_graphs) for i in (0, 1)]
    return _equal(*runs)


def training_table(
    args: argparse.Namespace, device: str, sections: set[str], result: dict[str, Any], section: Any
) -> None:
    """Training steps/s: small b64, paper b32 and b256, eager, captured as CUDA graphs, compiled, bf16."""
    train_device = None if device == "cuda" else "cpu"  # None: accelerate's choice, the GPU
    training: dict[str, Any] = {}
    result["training"] = training
    shapes = (("small", 64), ("paper", 32), ("paper", 256))
    with tempfile.TemporaryDirectory() as tmp:
        dataset = random_hopper_dataset(Path(tmp))
        if "profile" in sections:
            result["profile_training"] = section(
                "profile training",
                lambda: [
                    training_split(dataset, preset_name=name, steps=20, device=train_device)
                    for name in ("paper", "small")
                ],
            )
        variants: tuple[tuple[str, str, Any, dict[str, Any]], ...] = (
            ("eager", "train", shapes, {}),
            ("graphs", "graphs", shapes, {"cuda_graphs": True}),
            ("compile", "compile", shapes[1:], {"compile": True, "warmup": 20}),
            ("compile_graphs", "compile-graphs", shapes[1:], {"compile": True, "cuda_graphs": True, "warmup": 20}),
        )
        for tag, wanted, sizes, kwargs in variants:
            if wanted not in sections:
                continue
            for name, batch in sizes:
                if kwargs.get("compile"):
                    torch._dynamo.reset()  # each compiled run compiles afresh
                training[f"{name}_b{batch}_{tag}"] = section(
                    f"train {name} b{batch} {tag}",
                    lambda: train_rate(
                        dataset,
                        preset_name=name,
                        batch_size=batch,
                        steps=args.train_steps,
                        device=train_device,
                        **kwargs,
                    ),
                )
        if "resume" in sections:
            result["resume_bit_identical"] = section(
                "resume",
                lambda: {
                    tag: resume_is_bit_identical(dataset, Path(tmp) / tag, device=train_device, cuda_graphs=graphs)
                    for tag, graphs in (("eager", False), ("graphs", device == "cuda"))
                },
            )
            result["straight_runs_bit_identical"] = section(
                "repeat",
                lambda: {
                    tag: repeat_is_bit_identical(
                        dataset, Path(tmp) / f"repeat-{tag}", device=train_device, cuda_graphs=graphs
                    )
                    for tag, graphs in (("eager", False), ("graphs", device == "cuda"))
                },
            )
        if "bf16" in sections:
            torch._dynamo.reset()
            training["paper_b32_bf16"] = section(
                "train paper b32 bf16",
                lambda: train_rate(
                    dataset,
                    preset_name="paper",
                    batch_size=32,
                    steps=args.train_steps,
                    device=train_device,
                    mixed_precision="bf16",
                ),
            )

    def best_rate(prefix: str) -> float:
        rates = [v["steps_per_s"] for k, v in training.items() if k.startswith(prefix) and v and "bf16" not in k]
        return max(rates) if rates else float("nan")

    result.update(
        {
            "paper_b32_steps_per_s": best_rate("paper_b32"),
            "paper_b256_steps_per_s": best_rate("paper_b256"),
            "small_b64_steps_per_s": best_rate("small_b64"),
        }
    )
    result["samples_ratio_b256_vs_b32"] = 8 * result["paper_b256_steps_per_s"] / result["paper_b32_steps_per_s"]


if __name__ == "__main__":
    main()
