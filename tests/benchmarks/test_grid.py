"""benchmarks/grid.py on the tiny preset with two training seeds: training, cached evaluation,
statistics, provenance, the table and the figure (the d3rlpy baselines run in their own
environment, so their result files are written here in the format d3rlpy_baselines.py writes)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def grid() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grid", ROOT / "benchmarks" / "grid.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["grid"] = module  # dataclasses resolve their module
    spec.loader.exec_module(module)
    return module


def _config(grid: ModuleType, dataset: str, root: Path, **changes: object) -> object:
    row = grid.PlannerRow(
        "tiny", plan={"batch_size": 2, "num_inference_steps": 2}, train={"denoiser_steps": 20, "value_steps": 20}
    )
    fields = {"datasets": {"hopper-random": dataset}, "planners": {"diffplan": row}, "baselines": ("bc",),
              "seeds": (0, 1), "episodes": 3, "max_episode_steps": 8,
              "num_envs": 3, "root": root, "records": root, "reps": 200}  # fmt: skip
    return grid.GridConfig(**(fields | changes))


def _bc_result(path: Path, returns: list[float], **changes: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"algo": "bc", "config": "reproduction", "returns": returns, "steps": 5000, "train_seconds": 30.0,
              "stopped": "budget", "curve": [[5000, 30.0, 12.0]], "seed": 0, "eval_seed": 0}  # fmt: skip
    path.write_text(json.dumps(result | changes))


def test_grid_trains_evaluates_and_summarizes_two_seeds(
    grid: ModuleType, hopper_dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffplan.data.episodes import load_minari
    from diffplan.envs.specs import reference_scores

    cfg = _config(grid, hopper_dataset, tmp_path / "grid")
    for seed, returns in [(0, [10.0, 20.0, 30.0]), (1, [40.0, 50.0, 60.0])]:
        _bc_result(tmp_path / "grid" / "hopper-random" / "bc" / f"seed{seed}.json", returns)
    results = grid.run_grid(cfg, full=True, progress=False)  # trains both seeds; the bc results exist
    row = results[hopper_dataset]
    assert set(row) == {"behavior", "bc", "diffplan"}
    eps = load_minari(hopper_dataset)
    refs = reference_scores(eps.env_id, ref_min=eps.ref_min_score, ref_max=eps.ref_max_score)
    bc = [refs.normalize(r) for r in (10.0, 20.0, 30.0, 40.0, 50.0, 60.0)]
    assert row["bc"]["mean"] == pytest.approx(np.mean(bc)) and row["bc"]["seeds"] == 2
    assert row["behavior"]["mean"] == pytest.approx(np.mean([refs.normalize(r) for r in eps.returns()]))
    plan = row["diffplan"]
    assert plan["seeds"] == 2 and plan["episodes"] == 6 and len(plan["seed_means"]) == 2
    assert plan["ci95"][0] <= plan["iqm"] <= plan["ci95"][1]
    runs = plan["runs"]
    assert [r["seed"] for r in runs] == [0, 1] and runs[0]["weights_hash"] != runs[1]["weights_hash"]
    assert runs[0]["steps"] == {"unet": 20, "value_function": 20} and runs[0]["minutes"] > 0
    assert {c["dataset_hash"] for c in row.values()} == {grid.dataset_hash(hopper_dataset)}
    assert set(plan["p_improvement"]) == {"behavior", "bc"}
    assert all(0 <= lo <= p <= hi <= 1 for p, lo, hi in plan["p_improvement"].values())
    for seed in (0, 1):  # the seeds' run folders hold what they were trained with
        info = json.loads(
            (tmp_path / "grid" / "hopper-random" / "diffplan" / f"seed{seed}" / "diffplan.json").read_text()
        )
        assert info["preset"]["train"]["seed"] == seed and info["plan"]["batch_size"] == 2

    # a second pass reuses the cached evaluations: nothing is trained or evaluated again
    def no_evaluation(**_: object) -> None:
        raise AssertionError("evaluated again")

    monkeypatch.setattr("diffplan.evaluation.evaluate", no_evaluation)
    assert grid.run_grid(cfg, full=True, progress=False) == results
    # ... unless the protocol changes
    with pytest.raises(AssertionError, match="evaluated again"):
        grid.run_grid(_config(grid, hopper_dataset, tmp_path / "grid", episodes=4), full=False, progress=False)

    # the records outlive the run folders (a new machine without runs/): the cell is the same, and a record
    # of another protocol cannot be evaluated again
    import shutil

    for seed in (0, 1):
        shutil.rmtree(tmp_path / "grid" / "hopper-random" / "diffplan" / f"seed{seed}")
    assert grid.run_grid(cfg, full=False, progress=False) == results
    with pytest.raises(ValueError, match=r"made with episodes=3; the grid now uses episodes=4, and the run folder"):
        grid.run_grid(_config(grid, hopper_dataset, tmp_path / "grid", episodes=4), full=False, progress=False)

    table = grid.markdown(results)
    assert hopper_dataset in table and "IQM" in table
    poi = plan["p_improvement"]["bc"]
    assert f"| {hopper_dataset} | diffplan | " in table and f"{poi[0]:.2f} [{poi[1]:.2f}, {poi[2]:.2f}]" in table
    grid.figure(results, tmp_path / "grid.png")
    grid.curves_figure(results, tmp_path / "curves.png")
    for png in ("grid.png", "curves.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    assert row["bc"]["runs"][0]["curve"] == [[5000, 30.0, pytest.approx(refs.normalize(12.0))]]


def test_grid_trains_without_evaluating_when_told(
    grid: ModuleType, hopper_dataset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_evaluation(**_: object) -> None:
        raise AssertionError("evaluated")

    monkeypatch.setattr("diffplan.evaluation.evaluate", no_evaluation)
    cfg = _config(grid, hopper_dataset, tmp_path, baselines=(), seeds=(0,))
    assert grid.run_grid(cfg, full=True, evaluate=False, progress=False) == {}
    assert (tmp_path / "hopper-random" / "diffplan" / "seed0" / "diffplan.json").is_file()
    assert not (tmp_path / "hopper-random" / "diffplan" / "seed0.json").exists()  # no evaluation record


def test_grid_trains_on_when_the_rows_steps_are_raised(grid: ModuleType, hopper_dataset: str, tmp_path: Path) -> None:
    import shutil

    cfg = _config(grid, hopper_dataset, tmp_path, baselines=())
    run = grid.train_planner(cfg, "hopper-random", "diffplan", 0, progress=False)
    first = grid.weights_hash(run)
    assert grid.train_planner(cfg, "hopper-random", "diffplan", 0, progress=False) == run  # finished: kept
    assert grid.weights_hash(run) == first
    longer = grid.PlannerRow(
        "tiny", plan=cfg.planners["diffplan"].plan, train={"denoiser_steps": 30, "value_steps": 20}
    )
    cfg = _config(grid, hopper_dataset, tmp_path, baselines=(), planners={"diffplan": longer})
    grid.train_planner(cfg, "hopper-random", "diffplan", 0, progress=False)
    info = json.loads((run / "diffplan.json").read_text())
    assert info["extra"]["train_steps"] == {"unet": 30, "value_function": 20} and grid.weights_hash(run) != first
    shutil.rmtree(run / "training")  # e.g. a shipped run copied in: no state to go on from
    cfg = _config(grid, hopper_dataset, tmp_path, baselines=(), planners={"diffplan": grid.PlannerRow(
        "tiny", plan=longer.plan, train={"denoiser_steps": 40, "value_steps": 20})})  # fmt: skip
    with pytest.raises(ValueError, match="holds no training state to go on from"):
        grid.train_planner(cfg, "hopper-random", "diffplan", 0, progress=False)


def test_grid_rows_family_settings_train_that_familys_runs(
    grid: ModuleType, hopper_dataset: str, tmp_path: Path
) -> None:
    base = _config(grid, hopper_dataset, tmp_path, baselines=()).planners["diffplan"]
    row = dataclasses.replace(base, families={"hopper": grid.Overrides(train={"horizon": 4}, plan={"scale": 0.5})})
    assert row.settings("walker2d-medium") == (base.train, base.plan)  # another family: the row's own
    cfg = _config(grid, hopper_dataset, tmp_path, baselines=(), planners={"diffplan": row})
    run = grid.train_planner(cfg, "hopper-random", "diffplan", 0, progress=False)
    info = json.loads((run / "diffplan.json").read_text())
    assert info["horizon"] == 4 and info["plan"]["planning_horizon"] == 4 and info["plan"]["scale"] == 0.5
    cfg = _config(grid, hopper_dataset, tmp_path, baselines=(), planners={"diffplan": base})  # horizon 8
    with pytest.raises(ValueError, match="trained with horizon 4, the row's is 8"):
        grid.train_planner(cfg, "hopper-random", "diffplan", 0, progress=False)


def test_grid_rows_chosen_settings_reach_the_evaluation_and_its_cache_key(
    grid: ModuleType, hopper_dataset: str, tmp_path: Path
) -> None:
    base = _config(grid, hopper_dataset, tmp_path, baselines=()).planners["diffplan"]
    chosen = dataclasses.replace(base, chosen={"hopper-random": {"scale": 0.0}})
    cfg = _config(grid, hopper_dataset, tmp_path, baselines=(), planners={"diffplan": chosen})
    run = grid.train_planner(cfg, "hopper-random", "diffplan", 0, progress=False)
    record = grid.evaluate_planner(cfg, "hopper-random", "diffplan", 0, progress=False)
    assert record["plan_kwargs"] == {"scale": 0.0} and record["planner"]["scale"] == 0.0
    assert json.loads((run / "diffplan.json").read_text())["plan"].get("scale") != 0.0  # stored settings kept
    cells = grid.collect_scores(cfg, "hopper-random", progress=False)
    assert cells["diffplan"]["runs"][0]["plan_kwargs"] == {"scale": 0.0}
    plain = _config(grid, hopper_dataset, tmp_path, baselines=(), planners={"diffplan": base})
    again = grid.evaluate_planner(plain, "hopper-random", "diffplan", 0, progress=False)  # not the cached one
    assert again["plan_kwargs"] is None and "scale" not in again["planner"]
    assert "plan_kwargs" not in grid.collect_scores(plain, "hopper-random", progress=False)["diffplan"]["runs"][0]


def test_grid_trains_again_a_baseline_stopped_before_the_plateau_rule_allows(
    grid: ModuleType, hopper_dataset: str, tmp_path: Path
) -> None:
    cfg = _config(grid, hopper_dataset, tmp_path, bench_python=tmp_path / "no-venv" / "python")
    path = tmp_path / "hopper-random" / "bc" / "seed0.json"
    _bc_result(path, [1.0, 2.0, 3.0], stopped="plateau", steps=60_000, planned_steps=100_000)
    assert grid.train_baseline(cfg, "hopper-random", "bc", 0) == path  # stopped in the second half: kept
    _bc_result(path, [1.0, 2.0, 3.0], stopped="plateau", steps=35_000, planned_steps=100_000)
    with pytest.raises(FileNotFoundError, match="expected the d3rlpy environment"):  # trained again
        grid.train_baseline(cfg, "hopper-random", "bc", 0)
    _bc_result(path, [1.0, 2.0, 3.0], stopped="budget", steps=35_000, planned_steps=100_000)
    assert grid.train_baseline(cfg, "hopper-random", "bc", 0) == path


def test_grid_trains_again_a_baseline_whose_budget_is_under_the_diffplan_runs_time(
    grid: ModuleType, hopper_dataset: str, tmp_path: Path
) -> None:
    cfg = _config(grid, hopper_dataset, tmp_path, bench_python=tmp_path / "no-venv" / "python", baseline_minutes=20.0)
    path = tmp_path / "hopper-random" / "bc" / "seed0.json"
    _bc_result(path, [1.0, 2.0, 3.0], budget_minutes=19.5)  # within 5 % of the 20 minutes: kept
    assert grid.train_baseline(cfg, "hopper-random", "bc", 0) == path
    _bc_result(path, [1.0, 2.0, 3.0], budget_minutes=10.0)
    with pytest.raises(FileNotFoundError, match="expected the d3rlpy environment"):  # trained again
        grid.train_baseline(cfg, "hopper-random", "bc", 0)


def test_baseline_budget_follows_the_seeds_method_else_the_next_planner_row_with_runs(
    grid: ModuleType, hopper_dataset: str, tmp_path: Path
) -> None:
    cfg = _config(grid, hopper_dataset, tmp_path, planners={}, seeds=(0, 1, 2), baseline_minutes=20.0)

    def record(method: str, seed: int, minutes: float) -> None:
        path = grid.record_path(cfg, "hopper-random", method, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"minutes": minutes}))

    assert grid.baseline_budget(cfg, "hopper-random", 0) == 20.0
    record("dv", 1, 38.0)  # dv's seeds only (as on a dataset made again): their mean, or the seed's own
    record("dv", 2, 42.0)
    assert grid.baseline_budget(cfg, "hopper-random", 0) == 40.0
    assert grid.baseline_budget(cfg, "hopper-random", 2) == 42.0
    record("diffplan", 1, 25.0)
    assert grid.baseline_budget(cfg, "hopper-random", 2) == 25.0  # the seed's method comes first


def test_baseline_budget_reads_a_planner_seed_without_folder_or_record_from_the_results_table(
    grid: ModuleType, hopper_dataset: str, tmp_path: Path
) -> None:
    table = tmp_path / "grid.json"
    cfg = _config(grid, hopper_dataset, tmp_path, planners={}, seeds=(0, 1, 2), baseline_minutes=20.0, table=table)
    assert grid.baseline_budget(cfg, "hopper-random", 1) == 20.0  # no table yet
    cell = {"runs": [{"seed": 0, "minutes": 21.5}, {"seed": 2, "minutes": None}]}
    table.write_text(json.dumps({hopper_dataset: {"diffplan": cell, "dv": {"runs": [{"seed": 1, "minutes": 45.0}]}}}))
    assert grid.baseline_budget(cfg, "hopper-random", 0) == 21.5
    assert grid.baseline_budget(cfg, "hopper-random", 1) == 21.5  # the seed's method's other seeds, before dv
    path = grid.record_path(cfg, "hopper-random", "diffplan", 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"minutes": 30.0}))
    assert grid.baseline_budget(cfg, "hopper-random", 0) == 30.0  # a record comes before the table


def test_grid_refuses_results_of_another_protocol(grid: ModuleType, hopper_dataset: str, tmp_path: Path) -> None:
    cfg = _config(grid, hopper_dataset, tmp_path, planners={})
    _bc_result(tmp_path / "hopper-random" / "bc" / "seed0.json", [1.0, 2.0], eval_seed=0)
    with pytest.raises(ValueError, match="evaluated on 2 episodes from seed 0; expected 3 from 0"):
        grid.collect_scores(cfg, "hopper-random", progress=False)


def test_grid_refuses_a_run_trained_on_other_data(grid: ModuleType, hopper_dataset: str, tmp_path: Path) -> None:
    cfg = _config(grid, hopper_dataset, tmp_path, baselines=())
    run = grid.train_planner(cfg, "hopper-random", "diffplan", 0, progress=False)
    info = json.loads((run / "diffplan.json").read_text())
    assert info["extra"]["dataset_hash"] == grid.dataset_hash(hopper_dataset)
    info["extra"]["dataset_hash"] = "f" * 64  # e.g. a shipped run whose dataset was made on another machine
    (run / "diffplan.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="was trained on other data .* one grid cell holds runs of one dataset"):
        grid.collect_scores(cfg, "hopper-random", progress=False)


def test_grid_refuses_a_baseline_trained_on_other_data(grid: ModuleType, hopper_dataset: str, tmp_path: Path) -> None:
    cfg = _config(grid, hopper_dataset, tmp_path, planners={})
    path = grid.record_path(cfg, "hopper-random", "bc", 0)
    _bc_result(path, [1.0, 2.0, 3.0], dataset_hash=grid.dataset_hash(hopper_dataset))
    assert grid.collect_scores(cfg, "hopper-random", progress=False)["bc"]["runs"][0]["seed"] == 0
    _bc_result(path, [1.0, 2.0, 3.0], dataset_hash="0" * 64)
    with pytest.raises(ValueError, match="was trained on other data"):
        grid.collect_scores(cfg, "hopper-random", progress=False)


def test_grid_table_keeps_one_datasets_cells(grid: ModuleType, tmp_path: Path) -> None:
    old, new = "a" * 64, "b" * 64
    table = {"d/x-v0": {"bc": {"dataset_hash": old}, "dv": {"dataset_hash": old}}}
    grid.check_same_data(table, "d/x-v0", {"dv": {"dataset_hash": old}}, tmp_path)  # same data: merges
    grid.check_same_data(table, "d/y-v0", {"dv": {"dataset_hash": new}}, tmp_path)  # another dataset id
    grid.check_same_data(table, "d/x-v0", {"bc": {"dataset_hash": new}, "dv": {"dataset_hash": new}}, tmp_path)
    with pytest.raises(ValueError, match=r"cells bc were made on dataset aaaaaaaaaaaa, these on bbbbbbbbbbbb"):
        grid.check_same_data(table, "d/x-v0", {"dv": {"dataset_hash": new}}, tmp_path)


def test_grid_skips_datasets_that_are_not_made(
    grid: ModuleType, hopper_dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cfg = _config(grid, hopper_dataset, tmp_path, datasets={"hopper-medium": "test/not-made-v0"})
    assert grid.run_grid(cfg, full=False, progress=False) == {}
    assert "skipped (no local dataset; --full makes them): hopper-medium" in capsys.readouterr().out


def test_grid_names_and_missing_weights(grid: ModuleType, tmp_path: Path) -> None:
    assert grid.grid_datasets(["walker2d-medium-replay"]) == {
        "walker2d-medium-replay": "diffplan/walker2d/medium-replay-v0"
    }
    assert len(grid.grid_datasets()) == 9
    with pytest.raises(ValueError, match="expected grid datasets among"):
        grid.grid_datasets(["hopper-expert"])
    with pytest.raises(FileNotFoundError, match="expected weight files"):
        grid.weights_hash(tmp_path)


def test_grid_relative_standing_over_the_datasets_with_both_baselines(grid: ModuleType) -> None:
    def cell(mean: float, seeds: int = 3) -> dict[str, float]:
        return {"mean": mean, "seeds": seeds}

    ids = grid.grid_datasets(["hopper-medium", "walker2d-medium", "walker2d-medium-expert"])
    results = {
        ids["hopper-medium"]: {"bc": cell(40.0), "iql": cell(60.0), "dv": cell(100.0, 2)},
        ids["walker2d-medium"]: {"bc": cell(50.0), "iql": cell(80.0), "dv": cell(70.0)},
        ids["walker2d-medium-expert"]: {
            "bc": cell(60.0),
            "iql": cell(100.0),
            "dv": cell(30.0),
            "dv-150k": cell(90.0, 1),
        },  # fmt: skip
        "elsewhere/no-iql-v0": {"bc": cell(0.0), "dv": cell(1000.0)},  # left out: no IQL cell
    }
    got = grid.standing(results, "dv")
    assert got["datasets"] == 3 and got["seeds"] == [2, 3]
    assert got["mean"] == pytest.approx(200 / 3) and got["bc"] == pytest.approx(50) and got["iql"] == pytest.approx(80)
    assert got["standing"] == pytest.approx((200 / 3 - 50) / 30)
    assert (got["at_least_iql"], got["at_least_bc"]) == (1, 2)
    chosen = grid.standing(results, "dv", choices={"walker2d-medium-expert": "dv-150k"})
    assert chosen["mean"] == pytest.approx(260 / 3) and chosen["at_least_bc"] == 3 and chosen["seeds"] == [1, 3]
    assert grid.standing(results, "diffplan") is None
    table = grid.standing_markdown(results)
    assert "| dv | 3 | 2–3 | 66.7 | 50.0 | 80.0 | 0.56 | 1 of 3 | 2 of 3 |" in table
    assert "| dv with its choices | 3 | 1–3 | 86.7 |" in table
    # a second table (a dataset made again elsewhere) adds the datasets the first lacks a full cell of; a
    # dataset complete in both keeps the first table's cells
    remade = {
        ids["hopper-medium"]: {"bc": cell(0.0), "iql": cell(10.0), "dv": cell(0.0)},  # not used: the first has it
        "diffplan/halfcheetah/medium-replay-v0": {"bc": cell(10.0), "iql": cell(20.0), "dv": cell(35.0, 1)},
    }
    both = grid.first_complete([results, remade], "dv")
    assert both[ids["hopper-medium"]] is results[ids["hopper-medium"]] and len(both) == 4
    assert "| dv | 4 | 1–3 | 58.8 | 40.0 | 65.0 | 0.75 | 2 of 4 | 3 of 4 |" in grid.standing_markdown(results, remade)
