"""Small file helpers shared by every writer: atomic writes, checked JSON reads, one-writer locks
and one clear error for a full disk."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

WRITER_LOCK = ".writer.lock"  # in a run folder: held by the one process writing it
WRITER_INFO = ".writer.json"  # beside it: who holds it (pid, host, start time)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A write failed for lack of space (or quota); the message says what, where and how much."""


class FolderLockedError(ValueError):
    """Another live process is writing the folder (its lock is held)."""


def _is_disk_full(err: BaseException) -> bool:
    """An ``OSError`` of no space or quota, or another library's error that wraps one (safetensors)."""
    if isinstance(err, OSError) and err.errno in _NO_SPACE:
        return True
    text = str(err)
    return any(s in text for s in ("No space left on device", "Disk quota exceeded", "StorageFull"))


def _megabytes(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


@contextlib.contextmanager
def disk_full_reported(what: str, where: str | Path, *, needed: int | None = None) -> Iterator[None]:
    """Turn a full disk (or quota) inside the block into one :class:`DiskFullError` naming ``what``
    could not be written in ``where``, the space free there and, when known, the ``needed`` bytes.
    Other errors pass unchanged.
    """
    try:
        yield
    except DiskFullError:
        raise
    except Exception as err:
        if not _is_disk_full(err):
            raise
        place = Path(where)
        while not place.exists() and place != place.parent:
            place = place.parent
        free = shutil.disk_usage(place).free
        need = "" if needed is None else f", about {_megabytes(needed)} needed"
        raise DiskFullError(
            errno.ENOSPC,
            f"could not write {what}: no space left on device ({_megabytes(free)} free in {place}{need}); "
            "what was there before is intact: free some space and run again",
        ) from err


@contextlib.contextmanager
def atomic_path(path: str | Path, *, needed: int | None = None) -> Iterator[Path]:
    """A temporary file beside ``path`` for a writer that wants a file name (savefig, imageio,
    safetensors, stable-baselines3): renamed onto ``path`` when the block ends, removed if it raises.

    The temporary name keeps ``path``'s suffix (writers choose their format by it) and starts with
    a dot; the file is flushed to disk before the rename and gets mode 0644.

    Args:
        path: destination file; its folder is created when missing.
        needed: the bytes to be written, when known (for the message of a full disk).

    Yields:
        The temporary path to write.

    Raises:
        DiskFullError: no space for the file (the old file, if any, is intact).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        with disk_full_reported(str(path), path.parent, needed=needed):
            yield tmp
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        tmp.chmod(0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`).

    Raises:
        DiskFullError: no space for the file (the old file, if any, is intact).
    """
    with atomic_path(path, needed=len(data)) as tmp:
        tmp.write_bytes(data)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    """Read a JSON file, naming the file in the error when it is missing or corrupt.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not valid JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected the JSON file {path}, but it does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from err


def update_json(path: str | Path, keys: Sequence[str], value: Any, *, merge: bool = False) -> dict[str, Any]:
    """Set ``table[k1][k2]...`` of a JSON results file to ``value`` and write it back atomically.

    The read, the change and the write happen under a file lock (``path`` + ``.lock``), so that
    entries other processes write meanwhile stay; missing levels are created.

    Args:
        path: the JSON file (a missing file starts as ``{}``).
        keys: the path of nested keys (at least one).
        value: the new entry.
        merge: when the old and new entries are both dicts, keep the old entry's other keys.

    Returns:
        The whole table as written.
    """
    if not keys:
        raise ValueError("expected at least one key to update, got none")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        table = read_json(path) if Path(path).exists() else {}
        node = table
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        old = node.get(keys[-1])
        node[keys[-1]] = old | value if merge and isinstance(old, dict) and isinstance(value, dict) else value
        atomic_write_json(path, table)
    return table


def _refusal(folder: Path) -> FolderLockedError:
    """The error of a second writer, naming the lock's holder as it recorded itself."""
    try:
        who = json.loads((folder / WRITER_INFO).read_text())
        holder = f"pid {who['pid']} on {who['host']}, started {who['started']}"
    except (OSError, ValueError, KeyError):
        holder = "another process"
    return FolderLockedError(
        f"{folder} is being written by {holder}; wait for it to end or stop it (nothing was changed)"
    )


def check_unlocked(folder: str | Path) -> None:
    """Refuse early (before loading anything) a folder whose writer lock another process holds.

    Raises:
        FolderLockedError: it is held; the message names the holder.
    """
    folder = Path(folder)
    if not (folder / WRITER_LOCK).is_file():
        return
    lock = FileLock(folder / WRITER_LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise _refusal(folder) from None
    lock.release()


@contextlib.contextmanager
def writer_lock(folder: str | Path) -> Iterator[None]:
    """Hold ``folder``'s one-writer lock for the block, or refuse at once.

    The lock is an OS file lock (``filelock``) on ``folder/.writer.lock``: the operating system
    drops it when its process ends, so a lock left by a killed process is taken over by the next
    writer. Who holds it (pid, host, start time) is written beside it for the refusal message.
    Readers need no lock.

    Raises:
        FolderLockedError: another process holds the lock; the message names it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / WRITER_LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise _refusal(folder) from None
    try:
        started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        atomic_write_json(folder / WRITER_INFO, {"pid": os.getpid(), "host": socket.gethostname(), "started": started})
        yield
    finally:
        (folder / WRITER_INFO).unlink(missing_ok=True)
        lock.release()


def check_output(path: str | Path | None, *, kind: str, flag: str) -> None:
    """Refuse, before any work, an output location that cannot be written: for ``kind="file"`` a
    folder, for ``kind="folder"`` a file, and for either a path below a file.

    Raises:
        ValueError: naming the flag, the path and what is in the way.
    """
    if path is None:
        return
    path = Path(path)
    if kind == "file" and path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; expected a file name to write")
    if kind == "folder" and path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is a file; expected a folder to write into")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{flag} {path} cannot be written: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise ValueError(f"{flag} {path} cannot be written: no permission to write in {parent}")
            break


def recover_dir(dst: str | Path) -> None:
    """Undo a :func:`replace_dir` killed between its two renames: the old folder comes back."""
    dst = Path(dst)
    old = dst.with_name(f".old-{dst.name}")
    if not dst.exists() and old.is_dir():
        old.rename(dst)


def replace_dir(src: str | Path, dst: str | Path) -> None:
    """Move the finished folder ``src`` to ``dst``, replacing any previous ``dst``.

    The old folder is renamed aside before the new one moves in, so ``dst`` is at every moment
    either the complete old or the complete new folder (or, for an instant, absent).
    """
    import shutil

    src, dst = Path(src), Path(dst)
    old = dst.with_name(f".old-{dst.name}")
    recover_dir(dst)
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    src.rename(dst)
    shutil.rmtree(old, ignore_errors=True)
