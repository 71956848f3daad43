"""Paths given by a user: accepted as ``str`` or ``os.PathLike``, refused cleanly otherwise.

A folder that cannot be created or a file that cannot be written is refused with a
:class:`~mutomo.errors.MutomoError` naming the path, the argument it came from and the reason,
before any work is done (so nothing computed is lost to a typo in an output path).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mutomo.errors import MutomoError, RunDirectoryError

PathLike = str | os.PathLike[str]

RERUN = "rerun `mutomo optimise` on this run directory to write it again"
"""What to do about a missing or damaged file of a run directory."""


def as_path(value: object, what: str) -> Path:
    """``value`` as a :class:`Path`; refuses anything that is not a ``str`` or ``os.PathLike``."""
    if isinstance(value, Path):
        return value
    if isinstance(value, (str, os.PathLike)) and str(os.fspath(value)):
        return Path(value)
    raise MutomoError(f"{what} must be a path (str or os.PathLike); got {value!r}")


def writable_dir(value: object, what: str) -> Path:
    """Create the folder ``value`` (and its parents) if needed; refuses one that cannot be."""
    path = as_path(value, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise RunDirectoryError(f"{what} {path}: exists and is not a folder") from None
    except OSError as exc:
        raise RunDirectoryError(f"{what} {path}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise RunDirectoryError(f"{what} {path}: the folder is not writable")
    return path


def writable_file(value: object, what: str) -> Path:
    """Check that the file ``value`` can be written (its folder is created if needed)."""
    path = as_path(value, what)
    if path.is_dir():
        raise RunDirectoryError(f"{what} {path}: is a folder; give a file name")
    writable_dir(path.parent if str(path.parent) else Path("."), f"{what}'s folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise RunDirectoryError(f"{what} {path}: the file is not writable")
    return path


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file beside it, synced, then renamed: a
    write killed half-way leaves the old file (or none), never a truncated one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path, what: str) -> Any:
    """The JSON file ``path`` of a run directory; refuses a missing or damaged one, naming it."""
    if not path.exists():
        raise RunDirectoryError(f"{path}: missing; {what}")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirectoryError(f"{path}: unreadable ({exc}); {what}") from None
