"""Files that hold personal data: created 0600, in directories created 0700, whatever the umask.

How this works: a file is created by ``os.open`` with mode 0600 and then ``fchmod``-ed to exactly
0600 (the umask can only remove bits, but a umask is not ours to trust either way), so no other
local user can read it at any moment. A directory we create (and each missing parent) is made
0700 the same way; a directory that already exists is the operator's choice and is left alone.
SQLite creates a database's ``-wal``, ``-shm`` and ``-journal`` files with the database file's
own mode, so a store whose file is 0600 keeps all of them 0600 (``store.db.open_engine``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def private_dir(path: Path | str) -> Path:
    """Make sure ``path`` is a directory; each one created here (parents too) is 0700."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:  # created meanwhile by someone else: theirs, leave it
            continue
        os.chmod(d, PRIVATE_DIR)
    return path


def make_private(path: Path | str) -> None:
    """Tighten an existing file of ours to 0600 (a store or backup written by an older release)."""
    try:
        os.chmod(path, PRIVATE_FILE)
    except FileNotFoundError:
        pass


def create_private(path: Path | str, *, truncate: bool = True) -> None:
    """Create ``path`` (0600) if it does not exist, or make it 0600 (and empty, with ``truncate``)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else 0), PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)


def open_private(path: Path | str, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for writing a new or replaced file, created 0600 (``w`` / ``wb`` modes)."""
    if not mode.startswith("w"):
        raise ValueError(f"open_private writes files; mode {mode!r}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise
