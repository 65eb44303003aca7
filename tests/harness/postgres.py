"""A private PostgreSQL server for tests and benchmarks (Debian's `postgresql` package).

`initdb` refuses to run as root, so as root the cluster belongs to `nobody` (uid 65534) and
both `initdb` and `postgres` run under `setpriv`. The server listens on 127.0.0.1 on a port
the OS chose, trusts local connections for the superuser `cp`, and is stopped by its PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from .ports import free_port

NOBODY = 65534
USER = "cp"


def postgres_bindir() -> Path:
    """The directory of `initdb` and `postgres`: $PG_BINDIR, else the newest Debian version."""
    if os.environ.get("PG_BINDIR"):
        return Path(os.environ["PG_BINDIR"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    on_path = shutil.which("postgres")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")


class PostgresServer:
    """One running cluster; `url(name)` addresses a database in it."""

    def __init__(self, directory: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.directory = directory
        self.port = port
        self.process = process

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database `name`; its URL."""
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name`, ending the sessions still connected to it."""
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT) of the postmaster by PID; SIGKILL when it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _as_owner(argv: list[str]) -> list[str]:
    """`argv` run as the cluster's owner: nobody when we are root, else ourselves."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]


@contextmanager
def running_postgres(durable: bool = False, timeout: float = 60.0) -> Iterator[PostgresServer]:
    """A fresh cluster in a temporary directory, started, and removed when the block ends.

    `durable=False` turns fsync off (tests: much faster CREATE DATABASE, nothing to keep);
    benchmarks pass True to pay what a real commit pays.
    """
    bindir = postgres_bindir()
    # As root, under /tmp: nobody must be able to reach it, whatever $TMPDIR is.
    root = Path(tempfile.mkdtemp(prefix="cp-postgres-", dir="/tmp" if os.geteuid() == 0 else None))
    data = root / "data"
    try:
        data.mkdir()
        if os.geteuid() == 0:
            os.chown(root, NOBODY, NOBODY)
            os.chown(data, NOBODY, NOBODY)
        subprocess.run(
            _as_owner(
                [str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )
        port = free_port()
        settings = ["-c", "listen_addresses=127.0.0.1", "-p", str(port), "-k", str(data)]
        if not durable:
            settings += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        log = (root / "server.log").open("wb")
        process = subprocess.Popen(
            _as_owner([str(bindir / "postgres"), "-D", str(data), *settings]),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        server = PostgresServer(root, port, process)
        try:
            _wait_ready(server, bindir, timeout)
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _wait_ready(server: PostgresServer, bindir: Path, timeout: float) -> None:
    """Return once the server accepts connections (pg_isready), or raise with its log."""
    deadline = time.monotonic() + timeout
    ready = [str(bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(server.port)]
    ready += ["-U", USER, "-t", "1"]
    while subprocess.run(ready, check=False).returncode != 0:
        if server.process.poll() is not None:
            raise RuntimeError(f"postgres exited with {server.process.returncode}:\n{server.log()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"postgres not ready after {timeout} s:\n{server.log()}")
        time.sleep(0.05)
