"""Small file helpers shared by every writer: atomic writes and checked JSON reads."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` for a writer that wants a file name (savefig, imageio,
    safetensors, stable-baselines3): renamed onto ``path`` when the block ends, removed if it raises.

    The temporary name keeps ``path``'s suffix (writers choose their format by it) and starts with
    a dot; the file is flushed to disk before the rename and gets mode 0644.

    Args:
        path: destination file; its folder is created when missing.

    Yields:
        The temporary path to write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.chmod(0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
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

    The file is read again just before the write, so that entries other processes wrote meanwhile
    stay; missing levels are created.

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
    table = read_json(path) if Path(path).exists() else {}
    node = table
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    old = node.get(keys[-1])
    node[keys[-1]] = old | value if merge and isinstance(old, dict) and isinstance(value, dict) else value
    atomic_write_json(path, table)
    return table


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
