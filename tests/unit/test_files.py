"""Files holding personal data are 0600, their new directories 0700, whatever the umask; log lines
are escaped and carry no refused value."""

from __future__ import annotations

import io
import logging
import os
import stat
from pathlib import Path

import pytest

from runtime.serve import EscapingFormatter
from store.files import create_private, open_private, private_dir
from store.store import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():  # type: ignore[no-untyped-def]
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_sqlite_store_and_its_wal_and_shm_are_0600_in_a_0700_directory(tmp_path: Path, umask_022: None) -> None:
    db = tmp_path / "new" / "deeper" / "node.db"
    store = Store.open(f"sqlite:///{db}", owner="province-44")
    try:
        store.set_cursor("push", 0, 1)  # a write: SQLite creates -wal and -shm
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm")]
        assert all(p.exists() for p in files)
        assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
        assert mode(db.parent) == 0o700 and mode(db.parent.parent) == 0o700
    finally:
        store.close()


def test_an_older_0644_store_is_tightened_when_opened(tmp_path: Path, umask_022: None) -> None:
    db = tmp_path / "node.db"
    store = Store.open(f"sqlite:///{db}", owner="province-44")
    store.close()
    for p in (db, Path(f"{db}-wal")):
        if p.exists():
            os.chmod(p, 0o644)
    store = Store.open(f"sqlite:///{db}", owner="province-44")
    store.close()
    assert mode(db) == 0o600
    assert mode(tmp_path) == stat.S_IMODE(os.stat(tmp_path).st_mode)  # an existing directory is left alone


def test_private_files(tmp_path: Path, umask_022: None) -> None:
    d = private_dir(tmp_path / "a" / "b")
    assert mode(tmp_path / "a") == 0o700 and mode(d) == 0o700
    with open_private(d / "export.csv", "w") as f:
        f.write("x")
    assert mode(d / "export.csv") == 0o600
    os.chmod(d / "export.csv", 0o644)
    with open_private(d / "export.csv", "w") as f:  # overwritten: 0600 again
        f.write("y")
    assert mode(d / "export.csv") == 0o600
    create_private(d / "backup.db")
    assert mode(d / "backup.db") == 0o600
    with pytest.raises(ValueError):
        open_private(d / "x", "r")


def test_log_lines_are_escaped_one_record_one_line() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(EscapingFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("test.escaping")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("peer said: %s", "bad\nWARNING forged line \x1b[2J\u009b\u202e")
    finally:
        log.removeHandler(handler)
    assert out.getvalue() == "WARNING peer said: bad\\x0aWARNING forged line \\x1b[2J\\x9b\\u202e\n"
