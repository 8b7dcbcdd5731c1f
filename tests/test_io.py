"""Atomic writes: a file is either its old content or its complete new content, never a mix."""

import json
import stat
from pathlib import Path

import pytest

from diffplan.io import atomic_path, atomic_write_bytes, atomic_write_json, read_json, update_json


def test_atomic_path_renames_a_complete_file_with_its_suffix(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "figure.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".png" and tmp.name.startswith(".")
        tmp.write_bytes(b"png bytes")
        assert not target.exists()  # nothing at the destination until the block ends
    assert target.read_bytes() == b"png bytes"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["figure.png"]


def test_a_failed_write_leaves_the_old_file_and_no_leftover(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    atomic_write_json(target, {"step": 1})
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(target) as tmp:
            tmp.write_text('{"step": 2, "trunc')
            raise RuntimeError("writer died")
    assert read_json(target) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_write_bytes_and_json_replace_the_old_content(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    atomic_write_json(tmp_path / "r.json", {"a": [1, 2]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": [1, 2]}


def test_read_json_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        read_json(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_a_directory_swap_killed_between_its_renames_is_recovered(tmp_path: Path) -> None:
    from diffplan.io import recover_dir, replace_dir

    dst = tmp_path / "unet"
    dst.mkdir()
    (dst / "state.json").write_text('{"step": 5}')
    dst.rename(tmp_path / ".old-unet")  # killed here: the old folder aside, the new one not moved in
    recover_dir(dst)
    assert read_json(dst / "state.json") == {"step": 5}
    new = tmp_path / ".unet-tmp"
    new.mkdir()
    (new / "state.json").write_text('{"step": 10}')
    replace_dir(new, dst)
    assert read_json(dst / "state.json") == {"step": 10} and sorted(p.name for p in tmp_path.iterdir()) == ["unet"]


def test_update_json_sets_nested_entries_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    update_json(path, ["a", "x"], {"mean": 1.0, "n": 5})
    update_json(path, ["b"], 3)
    assert update_json(path, ["a", "x"], {"mean": 2.0}, merge=True) == {"a": {"x": {"mean": 2.0, "n": 5}}, "b": 3}
    assert update_json(path, ["a", "x"], {"mean": 4.0})["a"]["x"] == {"mean": 4.0}  # replaced without merge
    assert json.loads(path.read_text()) == {"a": {"x": {"mean": 4.0}}, "b": 3}
    with pytest.raises(ValueError, match="at least one key"):
        update_json(path, [], 1)
