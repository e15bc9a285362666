"""A real PostgreSQL from Debian's packages for the tests: initdb in a temporary folder as a
non-root user (the tests run as root in CI; the server refuses to), listening on a unix
socket in that folder only."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

PG_USER = "aigc-pg"  # created when the tests run as root


def pg_bin() -> Path | None:
    """The folder of Debian's initdb and pg_ctl (newest version), or None when not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _as_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER], check=True)
    return ["runuser", "-u", PG_USER, "--"]


class PostgresServer:
    """initdb + pg_ctl start/stop; `url` is a SQLAlchemy URL on the unix socket."""

    def __init__(self) -> None:
        bin_dir = pg_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="aigc-pg-"))  # short: a socket path has ~100 bytes
        self.data = self.root / "data"
        self.prefix = _as_user()
        if self.prefix:
            shutil.chown(self.root, PG_USER, PG_USER)
        os.chmod(self.root, 0o755)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
        self.url = f"postgresql+psycopg://postgres@/postgres?host={self.root}"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self.prefix, str(self.bin / tool), *args], check=True, capture_output=True, cwd=self.root)

    def start(self) -> None:
        options = f"-c listen_addresses='' -k {self.root} -c fsync=off -c max_connections=50"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log.txt"), "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def create_database(self, name: str) -> str:
        """A fresh empty database on this server; its URL."""
        import psycopg

        with psycopg.connect(host=str(self.root), user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@/{name}?host={self.root}"

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def wait_ready(server: PostgresServer, seconds: float = 30) -> None:
    import psycopg

    deadline = time.monotonic() + seconds
    while True:
        try:
            psycopg.connect(host=str(server.root), user="postgres", dbname="postgres").close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def pg():
    """A PostgreSQL server of the module's own, started in a temporary folder."""
    if pg_bin() is None:
        pytest.skip("PostgreSQL is not installed; scripts/test.sh installs it")
    server = PostgresServer()
    server.start()
    yield server
    server.close()
