from pathlib import Path

import pytest

from diffplan.collect.behavior import (
    BehaviorTrainConfig,
    select_snapshots,
    ship_policies,
    train_sac,
)
from diffplan.collect.collect import collect
from diffplan.collect.policies import resolve_policy


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sac")
    cfg = BehaviorTrainConfig(env_id="Hopper-v5", total_steps=200, snapshot_every=100, eval_episodes=1)
    train_sac(config=cfg, out_dir=out)
    return out


def test_snapshots_are_saved_evaluated_and_resumable(sac_run: Path) -> None:
    import json

    index = json.loads((sac_run / "snapshots.json").read_text())
    assert [s["step"] for s in index["snapshots"]] == [100, 200]
    assert all((sac_run / s["file"]).is_file() for s in index["snapshots"])
    # resuming with more steps continues from step 200 instead of starting over
    cfg = BehaviorTrainConfig(env_id="Hopper-v5", total_steps=300, snapshot_every=100, eval_episodes=1)
    train_sac(config=cfg, out_dir=sac_run)
    index = json.loads((sac_run / "snapshots.json").read_text())
    assert [s["step"] for s in index["snapshots"]] == [100, 200, 300]
    from stable_baselines3.common.save_util import load_from_pkl

    buf = load_from_pkl(sac_run / "state" / "replay.pkl")
    assert buf.pos == 300  # the state saved at a snapshot holds every step up to it
    # the resume started a new episode: the episode stored before it ends there, cut by the time limit
    assert buf.dones[199, 0] == 1 and buf.timeouts[199, 0] == 1
    chosen = select_snapshots(index_path=sac_run / "snapshots.json", expert_window=0.0)
    assert chosen["expert"]["step"] == 300
    with pytest.raises(ValueError, match="use another --out folder"):
        train_sac(config=BehaviorTrainConfig(env_id="Hopper-v5", total_steps=300, seed=5), out_dir=sac_run)


def test_ship_and_collect_with_a_policy(
    sac_run: Path, tmp_path: Path, minari_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    entry = ship_policies(run_dir=sac_run, dest=tmp_path / "policies", episodes=2)
    assert set(entry) == {"medium", "expert"} and entry["expert"]["episodes"] == 2
    registry = json.loads((tmp_path / "policies" / "policies.json").read_text())
    assert registry["Hopper-v5"]["medium"]["file"] == "Hopper-v5/medium.safetensors"
    monkeypatch.setattr("diffplan.collect.policies.policies_dir", lambda: tmp_path / "policies")
    assert resolve_policy(env_id="Hopper-v5", policy="expert").name == "expert.safetensors"
    res = collect(
        env_id="Hopper-v5",
        behavior="sac",
        policy="medium",
        steps=120,
        seed=0,
        dataset_id="test/hopper-sac-v0",
        progress=False,
    )
    assert res.steps == 120
    # the same seed gives a byte-identical dataset with a policy too
    import hashlib
    import os

    digests = []
    for root in ("a", "b"):
        monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / root))
        collect(
            env_id="Hopper-v5",
            behavior="sac",
            policy="expert",
            steps=150,
            seed=3,
            dataset_id="det/sac-v0",
            progress=False,
        )
        data = tmp_path / root / "det" / "sac-v0" / "data"
        digests.append({f: hashlib.sha256((data / f).read_bytes()).hexdigest() for f in sorted(os.listdir(data))})
    assert digests[0] == digests[1]
    # a policy trained for Hopper refuses to drive Walker2d
    with pytest.raises(ValueError, match="was trained for Hopper-v5, not Walker2d-v5"):
        collect(
            env_id="Walker2d-v5",
            behavior="sac",
            policy=str(tmp_path / "policies" / "Hopper-v5" / "medium.safetensors"),
            steps=10,
            seed=0,
            dataset_id="test/walker-sac-v0",
            progress=False,
        )


def test_export_replay_up_to_a_step(sac_run: Path, minari_root: Path) -> None:
    import minari

    from diffplan.collect.behavior import export_replay
    from diffplan.data.episodes import load_episodes

    n = export_replay(run_dir=sac_run, dataset_id="test/hopper-replay-v0", until_step=150)
    assert n == 150
    eps = load_episodes("test/hopper-replay-v0")
    assert eps.num_steps == 150 and eps.env_id == "Hopper-v5"
    ds = minari.load_dataset("test/hopper-replay-v0")
    first = next(ds.iterate_episodes())
    # consecutive observations chain: each step's next observation is the following step's observation
    assert first.observations.shape[0] == len(first.rewards) + 1
    with pytest.raises(ValueError, match="already exists"):
        export_replay(run_dir=sac_run, dataset_id="test/hopper-replay-v0", until_step=100)
    with pytest.raises(ValueError, match="fewer than the 100000 asked for"):
        export_replay(run_dir=sac_run, dataset_id="test/hopper-replay-big-v0", until_step=100_000)


def test_export_replay_default_step_warns_when_not_the_shipped_policys(
    sac_run: Path, minari_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import warnings

    from diffplan.collect.behavior import export_replay

    medium = select_snapshots(index_path=sac_run / "snapshots.json")["medium"]["step"]
    registry = {"Hopper-v5": {"medium": {"train_step": medium + 1000}}}
    (tmp_path / "policies.json").write_text(json.dumps(registry))
    monkeypatch.setattr("diffplan.collect.behavior.policies_dir", lambda: tmp_path)
    with pytest.warns(UserWarning, match=f"pass --until-step {medium + 1000}"):
        assert export_replay(run_dir=sac_run, dataset_id="test/hopper-replay-w-v0") == medium
    registry["Hopper-v5"]["medium"]["train_step"] = medium
    (tmp_path / "policies.json").write_text(json.dumps(registry))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert export_replay(run_dir=sac_run, dataset_id="test/hopper-replay-x-v0") == medium


def test_snapshot_selection_rule(tmp_path: Path) -> None:
    import json

    returns = {10: 100, 20: 900, 30: 350, 40: 3000, 50: 2500, 60: 1000, 70: 2900, 80: 2600}
    index = {"config": {}, "snapshots": [{"step": k, "mean_return": v, "file": ""} for k, v in returns.items()]}
    (tmp_path / "snapshots.json").write_text(json.dumps(index))
    chosen = select_snapshots(index_path=tmp_path / "snapshots.json")
    # expert: best of the last quarter (steps >= 60), not the dip at the end nor the early peak at 40
    assert chosen["expert"]["step"] == 70
    # medium: closest to a third of 2900 (= 967): step 60 (1000)
    assert chosen["medium"]["step"] == 60


def test_medium_replay_made_from_nothing_stops_at_the_shipped_medium_level(
    minari_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from diffplan.collect.behavior import make_medium_replay
    from diffplan.data.episodes import load_episodes

    monkeypatch.setattr("diffplan.collect.behavior.policies_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="expected a shipped medium policy of Hopper-v5"):
        make_medium_replay(env_id="Hopper-v5", run_dir=tmp_path / "none", dataset_id="test/mr-none-v0")
    registry = {"Hopper-v5": {"medium": {"train_step": 40, "mean_return": -1e9}}}
    (tmp_path / "policies.json").write_text(json.dumps(registry))
    run = tmp_path / "reached"
    kw = {"env_id": "Hopper-v5", "snapshot_every": 50}
    assert make_medium_replay(run_dir=run, dataset_id="test/mr-a-v0", **kw) == 50  # the first snapshot reaches it
    assert [s["step"] for s in json.loads((run / "snapshots.json").read_text())["snapshots"]] == [50]
    assert load_episodes("test/mr-a-v0").num_steps == 50
    assert make_medium_replay(run_dir=run, dataset_id="test/mr-b-v0", **kw) == 50  # resumed: not trained further
    assert [s["step"] for s in json.loads((run / "snapshots.json").read_text())["snapshots"]] == [50]
    registry["Hopper-v5"]["medium"]["mean_return"] = 1e9
    (tmp_path / "policies.json").write_text(json.dumps(registry))
    with pytest.raises(ValueError, match="did not reach the medium level 1000000000.0 in 100 steps"):
        make_medium_replay(run_dir=tmp_path / "short", dataset_id="test/mr-c-v0", max_steps=100, **kw)
    snaps = json.loads((tmp_path / "short" / "snapshots.json").read_text())["snapshots"]
    assert [s["step"] for s in snaps] == [50, 100]
