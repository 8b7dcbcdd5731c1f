"""Every CLI command, run in-process."""

import json
from pathlib import Path

import pytest

from diffplan.cli import main


def test_collect_and_datasets(minari_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(
            [
                "collect",
                "Hopper-v5",
                "--behavior",
                "random",
                "--steps",
                "120",
                "--seed",
                "1",
                "--dataset-id",
                "cli/hopper-tiny-v0",
            ]
        )
        == 0
    )
    assert "wrote cli/hopper-tiny-v0" in capsys.readouterr().out
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "cli/hopper-tiny-v0" in out and "Hopper-v5" in out and "120" in out
    # the same id again is refused, and the data is left as it was
    assert (
        main(["collect", "Hopper-v5", "--behavior", "random", "--steps", "50", "--dataset-id", "cli/hopper-tiny-v0"])
        == 2
    )
    assert "already exists" in capsys.readouterr().err
    assert main(["datasets"]) == 0 and "120" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (
            ["collect", "Nope-v0", "--behavior", "random", "--steps", "5", "--dataset-id", "cli/x-v0"],
            "unknown environment id",
        ),
        (["collect", "Hopper-v5", "--behavior", "sac", "--steps", "5", "--dataset-id", "cli/y-v0"], "needs --policy"),
        (["train", "nope/none-v0", "--out", "unused", "--preset", "tiny"], "no local Minari dataset"),
        (["train", "test/hopper-random-v0", "--out", "unused", "--preset", "huge"], "unknown preset 'huge'"),
        (["evaluate", "no-such-run"], "no shipped run named 'no-such-run'"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    argv: list, message: str, hopper_dataset: str, capsys: pytest.CaptureFixture
) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_train_evaluate_runs(hopper_dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                hopper_dataset,
                "--out",
                str(run),
                "--preset",
                "tiny",
                "--train.denoiser-steps",
                "10",
                "--train.value-steps",
                "10",
                "--device",
                "cpu",
                "--mixed-precision",
                "no",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "unet: 10 steps" in out and f"run folder: {run}" in out
    out_json = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                str(run),
                "--episodes",
                "2",
                "--seed",
                "3",
                "--num-envs",
                "2",
                "--max-episode-steps",
                "5",
                "--plan.batch-size",
                "2",
                "--plan.sampler",
                "ddim",
                "--plan.num-inference-steps",
                "3",
                "--plan.warm-start-steps",
                "2",
                "--cuda-graphs",
                "--json",
                str(out_json),
            ]
        )
        == 0
    )  # --cuda-graphs: a no-op on the CPU
    assert "normalized score" in capsys.readouterr().out
    data = json.loads(out_json.read_text())
    assert data["episodes"] == 2 and data["planner"] == {
        "batch_size": 2,
        "sampler": "ddim",
        "num_inference_steps": 3,
        "warm_start_steps": 2,
        "mode": "replan",
        "replan_every": 1,
        "actions": "plan",
    }
    assert main(["runs"]) == 0
    from diffplan.planning.runs import list_runs

    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[0] for ln in lines] == list_runs() and "hopper-medium" in list_runs()


def test_runs_lists_the_stored_score(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    shipped = tmp_path / "runs"
    shutil.copytree(tiny_run, shipped / "scored")
    shutil.copytree(tiny_run, shipped / "unscored")
    info = json.loads((shipped / "scored" / "diffplan.json").read_text())
    shutil.copytree(tiny_run, shipped / "unseen")
    info["extra"]["score"] = {"iqm": 51.25, "ci95": [47.0, 55.5], "mean": 50.0, "episodes": 50, "seeds": 1}
    (shipped / "scored" / "diffplan.json").write_text(json.dumps(info))
    info["extra"]["score"] |= {"episodes": 20, "eval_seed": 5000, "unseen": True, "success_rate": 0.65, "seeds": 3}
    (shipped / "unseen" / "diffplan.json").write_text(json.dumps(info))
    monkeypatch.setattr("diffplan.planning.runs.shipped_runs_dir", lambda: shipped)
    assert main(["runs"]) == 0
    scored, unscored, unseen = capsys.readouterr().out.splitlines()
    assert scored.split()[:3] == ["scored", "test/hopper-random-v0", "tiny"]
    assert scored.endswith("IQM 51.2 [47.0, 55.5], mean 50.0 (50 episodes; 1 training seed)")
    assert unscored.startswith("unscored ") and unscored.endswith("score: see RESULTS.md")
    assert unseen.endswith(
        "IQM 51.2 [47.0, 55.5], mean 50.0, success 65 % (20 episodes, seeds 5000-5019, unseen; 3 training seeds)"
    )


def test_evaluate_without_flags_runs_the_stored_evaluation(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    info = json.loads((run / "diffplan.json").read_text())
    info["evaluation"] = {"episodes": 3, "seed": 7, "num_envs": 2, "replan_every": 2}
    (run / "diffplan.json").write_text(json.dumps(info))
    out = tmp_path / "eval.json"
    base = ["evaluate", str(run), "--max-episode-steps", "4", "--json", str(out)]
    assert main(base) == 0
    stored = json.loads(out.read_text())
    assert (stored["episodes"], stored["seed"], stored["num_envs"], stored["planner"]["replan_every"]) == (3, 7, 2, 2)
    assert main([*base, "--episodes", "1", "--seed", "0", "--replan-every", "1"]) == 0
    given = json.loads(out.read_text())
    assert (given["episodes"], given["seed"], given["num_envs"], given["planner"]["replan_every"]) == (1, 0, 1, 1)


def test_demo(
    minari_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setenv("MINARI_DATASETS_PATH", os.environ["MINARI_DATASETS_PATH"])  # restored afterwards
    out_json = tmp_path / "demo.json"
    assert (
        main(
            [
                "demo",
                "--from-scratch",
                "--workdir",
                str(tmp_path / "demo"),
                "--json",
                str(out_json),
                "--collect-steps",
                "300",
                "--train-steps",
                "10",
                "--max-episode-steps",
                "5",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "[1/3]" in out and "[3/3]" in out and "run folder:" in out
    assert json.loads(out_json.read_text())["episodes"] == 1
    assert (tmp_path / "demo" / "run" / "diffplan.json").is_file()


def test_demo_shipped_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("imageio")
    out_json = tmp_path / "demo.json"
    assert main(["demo", "--workdir", str(tmp_path / "demo"), "--json", str(out_json), "--max-episode-steps", "4"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out_json.read_text())
    assert data["env_id"] == "Hopper-v5" and data["episodes"] == 1 and data["lengths"] == [4]
    assert data["normalized_score"] is not None and "normalized score" in out
    videos = list((tmp_path / "demo").glob("episode.*"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0
    assert (tmp_path / "demo" / "plan_vs_executed.png").stat().st_size > 0


def test_version(capsys: pytest.CaptureFixture) -> None:
    from importlib import metadata

    import diffplan

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert (
        capsys.readouterr().out.strip()
        == f"diffplan {metadata.version('diffplan')}"
        == f"diffplan {diffplan.__version__}"
    )


# ---- goal-conditioned planning in PointMaze (fixture maze_run: tests/conftest.py)


def test_evaluate_cli_track_mode_with_plots(maze_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from diffplan.cli import main

    out_json = tmp_path / "e.json"
    assert (
        main(
            [
                "evaluate",
                str(maze_run),
                "--mode",
                "track",
                "--episodes",
                "2",
                "--max-episode-steps",
                "5",
                "--plan.batch-size",
                "2",
                "--plots",
                str(tmp_path / "pics"),
                "--task",
                "single",
                "--json",
                str(out_json),
            ]
        )
        == 0
    )
    assert "success rate" in capsys.readouterr().out
    assert (tmp_path / "pics" / "episode_000.png").is_file()
    import json

    assert json.loads(out_json.read_text())["planner"]["task"] == "single"
    assert (
        main(
            [
                "evaluate",
                str(maze_run),
                "--mode",
                "replan",
                "--actions",
                "inverse",
                "--walls",
                "--episodes",
                "1",
                "--max-episode-steps",
                "4",
                "--plan.batch-size",
                "2",
                "--plan.goal-arrivals",
                "3",
                "--json",
                str(out_json),
            ]
        )
        == 0
    )
    planner = json.loads(out_json.read_text())["planner"]
    assert planner["actions"] == "inverse" and planner["walls"] is True and planner["goal_arrivals"] == 3


def test_render_cli_draws_a_maze_episode_and_its_denoising(
    maze_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from diffplan.cli import main

    assert (
        main(
            [
                "render",
                str(maze_run),
                "--out",
                str(tmp_path / "r"),
                "--max-episode-steps",
                "6",
                "--plan.batch-size",
                "3",
                "--task",
                "single",
            ]
        )
        == 0
    )
    assert "maze picture" in capsys.readouterr().out
    for name in ("episode_000.png", "denoising.png"):
        assert (tmp_path / "r" / name).stat().st_size > 5_000


def test_help_loads_no_heavy_library() -> None:
    """`diffplan --help` must answer at once: the CLI module imports neither torch nor diffusers nor gymnasium."""
    import subprocess
    import sys

    code = "import sys, diffplan.cli; print(sorted(m for m in ('torch', 'diffusers', 'gymnasium') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    parser_help = subprocess.run(
        [sys.executable, "-m", "diffplan.cli", "evaluate", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--cuda-graphs" in parser_help and "--plan.batch-size" in parser_help


def test_every_config_field_is_a_flag_with_its_docstring(capsys: pytest.CaptureFixture) -> None:
    """The CLI is generated from PlanConfig and TrainConfig: each field a flag, its docstring the help."""
    import dataclasses

    from diffplan.config import PlanConfig, TrainConfig

    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # help lines are wrapped
    for prefix, cls in (("train", TrainConfig), ("plan", PlanConfig)):
        for f in dataclasses.fields(cls):
            assert f"--{prefix}.{f.name.replace('_', '-')}" in text, f.name
    assert "plans sampled per decision" in text and "windows per micro-batch" in text


def test_set_flags_reach_the_stored_run(hopper_dataset: str, tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = ["train", hopper_dataset, "--out", str(run), "--preset", "tiny", "--device", "cpu",
            "--train.denoiser-steps", "4", "--train.value-steps", "3", "--train.learning-rate", "0.003",
            "--plan.batch-size", "5", "--plan.sampler", "ddim"]  # fmt: skip
    assert main(argv) == 0
    info = json.loads((run / "diffplan.json").read_text())
    train = info["preset"]["train"]
    assert (train["denoiser_steps"], train["value_steps"], train["learning_rate"]) == (4, 3, 0.003)
    assert train["batch_size"] == 16  # unset: the preset's
    assert info["plan"]["batch_size"] == 5 and info["plan"]["sampler"] == "ddim"
    with pytest.raises(SystemExit) as done:
        main(["evaluate", str(run), "--plan.sampler", "euler"])  # not one of the sampler's choices
    assert done.value.code == 2


def test_unavailable_devices_and_wrong_output_paths_fail_before_any_work(
    tiny_run: Path, hopper_dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import torch

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["evaluate", str(tiny_run), "--device", "foo"], "unknown device 'foo'"),
        (["evaluate", str(tiny_run), "--json", str(tmp_path)], "is a folder; expected a file name"),
        (["evaluate", str(tiny_run), "--plots", str(a_file)], "is a file; expected a folder"),
        (["render", str(tiny_run), "--out", str(a_file)], "is a file; expected a folder"),
        (["train", hopper_dataset, "--out", str(a_file), "--preset", "tiny"], "is a file; expected a run folder"),
        (["evaluate", str(tiny_run), "--plan.num-inference-steps", "-1"], "expected num_inference_steps >= 1, got -1"),
        (["evaluate", str(tiny_run), "--json", str(a_file / "x.json")], f"cannot be written: {a_file} is a file"),
        (["evaluate", str(tiny_run), "--plots", str(a_file / "p")], f"cannot be written: {a_file} is a file"),
        (["demo", "--json", str(a_file / "x.json")], f"cannot be written: {a_file} is a file"),
        (["train", hopper_dataset, "--out", str(a_file / "run")], f"cannot be written: {a_file} is a file"),
        (["evaluate", str(tiny_run), "--seed", "-5"], "expected seed >= 0, got -5 (an integer)"),
        (["evaluate", str(tiny_run), "--max-episode-steps", "0"], "expected max_episode_steps >= 1, got 0"),
        (["evaluate", str(tiny_run), "--replan-every", "0"], "expected replan_every >= 1, got 0"),
        (["render", str(tiny_run), "--seed", "-1"], "expected seed >= 0, got -1"),
        (
            ["collect", "Hopper-v5", "--behavior", "random", "--steps", "5", "--dataset-id", "t/x-v0", "--seed", "-2"],
            "expected seed >= 0, got -2",
        ),
        (["demo", "--from-scratch", "--train-steps", "0"], "expected train_steps >= 1, got 0"),
        (["train", hopper_dataset, "--out", str(tmp_path / "neg"), "--train.seed", "-3"], "expected seed >= 0, got -3"),
    ]
    if not torch.cuda.is_available():
        gpu_run = ["train", hopper_dataset, "--out", str(tmp_path / "gpu"), "--device", "cuda"]
        cases += [(["evaluate", str(tiny_run), "--device", "cuda"], "has no CUDA GPU"), (gpu_run, "has no CUDA GPU")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)  # one line, no traceback
    assert not (tmp_path / "gpu").exists() and not (tmp_path / "neg").exists()


def test_resume_keeps_the_stored_step_targets(
    hopper_dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    base = ["train", hopper_dataset, "--out", str(run), "--preset", "tiny", "--device", "cpu"]
    assert main([*base, "--train.denoiser-steps", "6", "--train.value-steps", "4"]) == 0
    capsys.readouterr()
    first = json.loads((run / "diffplan.json").read_text())["extra"]["train_seconds"]
    assert set(first) == {"unet", "value_function"} and all(s > 0 for s in first.values())
    assert main([*base, "--resume"]) == 0  # no step flags: the run's own targets (not the preset's 200)
    out = capsys.readouterr().out
    assert "unet: 6 steps" in out and "value_function: 4 steps" in out
    assert main([*base, "--resume", "--train.denoiser-steps", "8"]) == 0  # a flag raises the target
    info = json.loads((run / "diffplan.json").read_text())
    assert info["extra"]["train_steps"] == {"unet": 8, "value_function": 4}
    seconds = info["extra"]["train_seconds"]  # the wall time is summed over the resumed invocations
    assert seconds["unet"] > first["unet"] and seconds["value_function"] == first["value_function"]
    assert info["preset"]["train"]["denoiser_steps"] == 8 and info["preset"]["train"]["value_steps"] == 4


def test_more_bad_input_gets_one_clear_line(
    tiny_run: Path, hopper_dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import shutil

    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_run, unfinished)
    (unfinished / "diffplan.json").unlink()  # interrupted before its final write
    cases = [
        (["train", hopper_dataset, "--out", str(tmp_path / "neg"), "--train.denoiser-steps", "-5"],
         "expected denoiser_steps >= 1, got -5"),
        (["evaluate", str(tiny_run), "--mode", "track"], "mode 'track' PD-follows the planned positions"),
        (["collect", "Hopper-v5", "--behavior", "random", "--steps", "5", "--dataset-id", "a/b-v0"],
         "A namespace has at least two characters"),
        (["evaluate", str(unfinished)], "has not finished"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "neg").exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["evaluate", "hopper-medium", "--plan.batch-size", "abc"], "Error parsing --plan.batch-size"),
        (["evaluate", "hopper-medium", "--bogus", "1"], "Unrecognized options: --bogus, 1"),
        (["evalu"], "Unrecognized options: evalu"),
    ],
)
def test_usage_errors_are_one_line_too(argv: list, message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2 and message in err and err.count("\n") == 1, err


def test_presets_lists_each_preset_with_its_denoiser_and_levels(capsys: pytest.CaptureFixture) -> None:
    from diffplan.presets import PRESETS

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert any(line.startswith(f"{name} ") for line in out.splitlines()), name
    line = next(x for x in out.splitlines() if x.startswith("dv-small "))
    assert "DiT" in line and "states " in line
    assert "+ fine level" in next(x for x in out.splitlines() if x.startswith("small-c2f "))


def test_planner_choice_flags_reach_the_planner(states_run: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["evaluate", str(states_run), "--episodes", "1", "--max-episode-steps", "3", "--plan.batch-size", "4"]
    assert main([*args, "--plan.rank-by", "q", "--plan.n-guide-steps", "0"]) == 0
    with pytest.raises(SystemExit) as done:
        main([*args, "--plan.rank-by", "best"])
    assert done.value.code == 2 and "invalid choice 'best' for argument '--plan.rank-by'" in capsys.readouterr().err
