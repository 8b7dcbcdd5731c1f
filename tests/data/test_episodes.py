from pathlib import Path

import h5py
import numpy as np
import pytest

from diffplan.data.episodes import load_episodes, load_hdf5


def test_minari_dataset_loads(hopper_dataset: str) -> None:
    import minari

    eps = load_episodes(hopper_dataset)
    assert eps.env_id == "Hopper-v5"
    assert (eps.obs_dim, eps.act_dim) == (11, 3)
    assert eps.num_steps == 800
    assert eps.ref_min_score is not None and eps.ref_max_score is not None
    ds = minari.load_dataset(hopper_dataset)
    assert ds.total_steps == eps.num_steps and ds.total_episodes == len(eps.episodes)
    first = next(ds.iterate_episodes())
    np.testing.assert_array_equal(eps.episodes[0].observations, first.observations[:-1])
    assert eps.episodes[0].terminated == bool(first.terminations[-1])


def test_fingerprint_names_the_data_not_the_copy(hopper_dataset: str) -> None:
    import dataclasses

    eps = load_episodes(hopper_dataset)
    assert eps.fingerprint() == load_episodes(hopper_dataset).fingerprint()  # loaded again: the same
    first = eps.episodes[0]
    nudged = dataclasses.replace(first, rewards=first.rewards + np.where(np.arange(len(first)) == 3, 1e-9, 0.0))
    assert dataclasses.replace(eps, episodes=[nudged, *eps.episodes[1:]]).fingerprint() != eps.fingerprint()
    assert dataclasses.replace(eps, episodes=eps.episodes[::-1]).fingerprint() != eps.fingerprint()  # order counts


def test_unknown_minari_id_names_local_datasets(hopper_dataset: str) -> None:
    with pytest.raises(FileNotFoundError, match=r"no local Minari dataset 'nope/none-v0'.*test/hopper-random-v0"):
        load_episodes("nope/none-v0")


def _write_d4rl(path: Path, n: int = 30) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["observations"] = rng.normal(size=(n, 4))
        f["actions"] = rng.normal(size=(n, 2))
        f["rewards"] = np.ones(n)
        terminals = np.zeros(n, dtype=bool)
        terminals[9] = True
        timeouts = np.zeros(n, dtype=bool)
        timeouts[19] = True
        f["terminals"] = terminals
        f["timeouts"] = timeouts
        f.attrs["env_id"] = "Fake-v0"


def test_d4rl_hdf5_splits_on_terminals_and_timeouts(tmp_path: Path) -> None:
    path = tmp_path / "data.hdf5"
    _write_d4rl(path)
    eps = load_hdf5(path)
    assert [len(e) for e in eps.episodes] == [10, 10, 10]
    assert [e.terminated for e in eps.episodes] == [True, False, False]
    assert eps.env_id == "Fake-v0"


def test_bad_hdf5_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="D4RL-style HDF5"):
        load_hdf5(tmp_path / "missing.hdf5")
    corrupt = tmp_path / "corrupt.hdf5"
    corrupt.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        load_hdf5(corrupt)
    partial = tmp_path / "partial.hdf5"
    with h5py.File(partial, "w") as f:
        f["observations"] = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"lacks \['actions'"):
        load_hdf5(partial)
    nan = tmp_path / "nan.hdf5"
    _write_d4rl(nan)
    with h5py.File(nan, "a") as f:
        f["rewards"][3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        load_hdf5(nan)
