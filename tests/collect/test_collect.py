import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from diffplan.collect.collect import collect, dataset_exists


def _hashes(root: Path, dataset_id: str) -> dict[str, str]:
    folder = root / dataset_id / "data"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_gives_a_byte_identical_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashes = []
    for name in ("a", "b"):
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / name))
        collect(env_id="Hopper-v5", behavior="random", steps=250, seed=7, dataset_id="det/hopper-v0", progress=False)
        hashes.append(_hashes(tmp_path / name, "det/hopper-v0"))
    assert hashes[0] == hashes[1]
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "c"))
    collect(env_id="Hopper-v5", behavior="random", steps=250, seed=8, dataset_id="det/hopper-v0", progress=False)
    assert _hashes(tmp_path / "c", "det/hopper-v0") != hashes[0]


def test_waypoint_collection_is_a_goal_reaching_maze_dataset(minari_root: Path) -> None:
    import minari

    from diffplan.data.episodes import load_episodes

    res = collect(
        env_id="PointMaze_UMaze-v3",
        behavior="waypoint",
        steps=600,
        seed=0,
        dataset_id="test/umaze-waypoint-v0",
        progress=False,
    )
    assert res.steps == 600 and res.episodes == 2
    eps = load_episodes("test/umaze-waypoint-v0")
    assert (eps.obs_dim, eps.act_dim) == (4, 2)
    assert eps.returns().sum() >= 4  # a new goal each time one is reached: several per episode
    ds = minari.load_dataset("test/umaze-waypoint-v0")
    assert ds.spec.env_spec.kwargs["reset_target"] is True
    assert set(next(ds.iterate_episodes()).observations) == {"observation", "achieved_goal", "desired_goal"}


def test_waypoint_controller_reaches_the_goal_in_umaze() -> None:
    from diffplan.envs.maze import WaypointController
    from diffplan.envs.specs import make_env

    env = make_env("PointMaze_UMaze-v3")
    ctrl = WaypointController(env)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        reached = None
        for t in range(200):
            obs, _, _, _, info = env.step(ctrl(obs))
            if info["success"]:
                reached = t
                break
        assert reached is not None and reached < 150, (seed, reached)


def test_shortest_path_and_bad_cells() -> None:
    from diffplan.envs.maze import shortest_path

    free = np.array([[1, 1, 1], [0, 0, 1], [1, 1, 1]], dtype=bool)
    assert shortest_path(free, (0, 0), (2, 0)) == [(0, 0), (0, 1), (0, 2), (1, 2), (2, 2), (2, 1), (2, 0)]
    with pytest.raises(ValueError, match=r"goal cell \(1, 0\) is not a free cell"):
        shortest_path(free, (0, 0), (1, 0))


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(env_id="Nope-v1", behavior="random"), ValueError, "unknown environment id 'Nope-v1'"),
        (dict(env_id="Hopper-v5", behavior="expert"), ValueError, "unknown behavior 'expert'"),
        (dict(env_id="Hopper-v5", behavior="waypoint"), ValueError, "does not apply to Hopper-v5"),
        (dict(env_id="Hopper-v5", behavior="sac"), ValueError, "needs --policy"),
        (
            dict(env_id="Hopper-v5", behavior="sac", policy="superhuman"),
            FileNotFoundError,
            "no shipped 'superhuman' policy",
        ),
        (dict(env_id="Hopper-v5", behavior="random", dataset_id="bad id"), ValueError, "Malformed dataset ID"),
    ],
)
def test_bad_collect_input(minari_root: Path, kwargs: dict, error: type, match: str) -> None:
    args = dict(steps=10, seed=0, dataset_id="test/never-written-v0", progress=False) | kwargs
    with pytest.raises(error, match=match):
        collect(**args)
    import minari

    assert "test/never-written-v0" not in minari.list_local_datasets()


def test_existing_dataset_is_never_overwritten(hopper_dataset: str, minari_root: Path) -> None:
    before = _hashes(minari_root, hopper_dataset)
    with pytest.raises(ValueError, match="already exists"):
        collect(env_id="Hopper-v5", behavior="random", steps=10, seed=1, dataset_id=hopper_dataset, progress=False)
    assert _hashes(minari_root, hopper_dataset) == before


def test_a_collection_that_dies_while_writing_leaves_no_dataset(minari_root: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import minari

    from diffplan.datasets import dataset_table

    real = minari.create_dataset_from_buffers

    def dies(**kwargs):  # type: ignore[no-untyped-def]
        real(**kwargs)  # everything written ... then killed before the end
        raise KeyboardInterrupt

    monkeypatch.setattr(minari, "create_dataset_from_buffers", dies)
    with pytest.raises(KeyboardInterrupt):
        collect(env_id="Hopper-v5", behavior="random", steps=30, seed=0, dataset_id="test/dies-v0", progress=False)
    monkeypatch.setattr(minari, "create_dataset_from_buffers", real)
    assert not dataset_exists("test/dies-v0") and not list(minari_root.glob(".collect-*"))
    res = collect(env_id="Hopper-v5", behavior="random", steps=30, seed=0, dataset_id="test/dies-v0", progress=False)
    assert res.steps == 30 and dataset_exists("test/dies-v0")  # the id is free: nothing half-written holds it
    # a kill -9 leaves a hidden staging folder: not a dataset, reported by `diffplan datasets`
    (minari_root / ".collect-killed").mkdir()
    (minari_root / ".collect-killed" / "junk").write_text("partial")
    table = dataset_table()
    assert "test/dies-v0" in table and "unfinished collections" in table and ".collect-killed" in table
    shutil.rmtree(minari_root / ".collect-killed")


def test_a_broken_dataset_is_named_and_the_others_listed(minari_root: Path, hopper_dataset: str) -> None:
    from diffplan.datasets import dataset_rows, dataset_table

    collect(env_id="Hopper-v5", behavior="random", steps=20, seed=1, dataset_id="test/broken-v0", progress=False)
    data = minari_root / "test" / "broken-v0" / "data" / "main_data.hdf5"
    data.write_bytes(data.read_bytes()[:100])
    rows = {r["id"]: r for r in dataset_rows()}
    assert "error" in rows["test/broken-v0"] and "error" not in rows[hopper_dataset]
    assert "broken: test/broken-v0" in dataset_table()
    shutil.rmtree(minari_root / "test" / "broken-v0")


def test_a_datasets_root_that_is_a_file_is_refused(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from diffplan.cli import main

    root = tmp_path / "not_a_folder"
    root.write_text("x")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    assert main(["datasets"]) == 2
    with pytest.raises(ValueError, match="is a file; expected the folder of the local datasets"):
        collect(env_id="Hopper-v5", behavior="random", steps=5, seed=0, dataset_id="test/x-v0", progress=False)
