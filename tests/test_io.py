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


def _bump(path: str, worker: int, n: int) -> None:
    """One process's share of ``test_update_json_from_two_processes_keeps_every_update``."""
    from diffplan.io import update_json

    for i in range(n):
        update_json(path, [f"w{worker}", str(i)], i)


def test_update_json_from_two_processes_keeps_every_update(tmp_path: Path) -> None:
    import multiprocessing

    path = str(tmp_path / "table.json")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_bump, args=(path, w, 40)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    table = read_json(path)
    assert {k: len(v) for k, v in table.items()} == {"w0": 40, "w1": 40}  # no update lost to the other


def test_a_second_writer_is_refused_with_the_holder_and_a_released_lock_is_free(tmp_path: Path) -> None:
    import os
    import socket

    from diffplan.io import FolderLockedError, writer_lock

    run = tmp_path / "run"
    with writer_lock(run):
        holder = read_json(run / ".writer.json")
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        with pytest.raises(FolderLockedError, match=rf"run is being written by pid {os.getpid()} on .*, started 20"):
            with writer_lock(run):
                pass
    assert not (run / ".writer.json").exists()
    with writer_lock(run):  # released: the next writer takes it
        pass


def test_a_full_disk_is_one_clear_error_and_leaves_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from diffplan.io import DiskFullError

    target = tmp_path / "scores.json"
    atomic_write_json(target, {"old": True})

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(DiskFullError, match=r"could not write .*scores.json: no space left on device \(.* MB free in "
                       r".*, about 0.0 MB needed\)"):  # fmt: skip
        atomic_write_json(target, {"new": True})
    monkeypatch.undo()
    assert read_json(target) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["scores.json"]  # no half-written file beside it


def test_output_paths_below_a_file_are_refused(tmp_path: Path) -> None:
    from diffplan.io import check_output

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match=r"--json .*file/x.json cannot be written: .*file is a file, not a folder"):
        check_output(a_file / "x.json", kind="file", flag="--json")
    with pytest.raises(ValueError, match="is a folder; expected a file name"):
        check_output(tmp_path, kind="file", flag="--json")
    with pytest.raises(ValueError, match="is a file; expected a folder"):
        check_output(a_file, kind="folder", flag="--plots")
    check_output(tmp_path / "new" / "deeper" / "x.json", kind="file", flag="--json")  # creatable: fine
    check_output(None, kind="file", flag="--json")
