"""A PostgreSQL cluster a test owns, so that it can stop and start the server under a process.

The shared server that scripts/test starts (YIPANQI_TEST_PG_URL) must stay up for
every other test; a test that takes the database away needs a server of its own.
``PgCluster`` runs initdb in a fresh temp dir and starts and stops postgres with
pg_ctl on 127.0.0.1 (a port picked once, kept across restarts), as the ``postgres``
user when we are root (postgres refuses to run as root). Trust authentication, no
fsync: throwaway data only. Skips the test where no PostgreSQL binaries exist.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _bin_dir() -> Path | None:
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[4]))
    for d in reversed(dirs):
        if os.access(f"{d}/initdb", os.X_OK) and os.access(f"{d}/pg_ctl", os.X_OK):
            return Path(d)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    def __init__(self) -> None:
        found = _bin_dir()
        if found is None:
            pytest.skip("needs PostgreSQL's initdb and pg_ctl (apt-get install postgresql)")
        self.bin = found
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user is not None:
            try:
                subprocess.run(["id", "-u", self.user], check=True, capture_output=True)
            except subprocess.CalledProcessError:
                pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        self.dir = Path(tempfile.mkdtemp(prefix="yipanqi-pg-test."))
        if self.user is not None:
            shutil.chown(self.dir, self.user)
        self.data = self.dir / "data"
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.data), "--username=postgres", "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.dir}'\nfsync = off\n"
                       "synchronous_commit = off\nfull_page_writes = off\n")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bin / tool), *args]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, cwd=self.dir, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        self._run("pg_ctl", "start", "-D", str(self.data), "-w", "-t", "60", "-l", str(self.dir / "server.log"))

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clients are disconnected; ``immediate``: as a crash)."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")

    def close(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
