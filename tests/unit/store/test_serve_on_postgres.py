"""`controlplane serve --db postgresql://…` end to end: a real server process on PostgreSQL
whose REST writes are revisions another replica's store reads and hears, and the other way."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from controlplane.model import load_file
from controlplane.store import PostgresStore
from tests.harness.ports import free_port

from .conftest import Heard, config_with

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.fixture
def server(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    """`controlplane serve` on a new database (migrated at start, seeded with the
    quickstart); yields the API URL once it answers; stopped by its PID."""
    api = free_port()
    command = [
        str(Path(sys.executable).with_name("controlplane")),
        "serve",
        "--db", postgres_url,
        "--migrate",
        "--config", str(EXAMPLES / "quickstart.yaml"),
        "--api", f"127.0.0.1:{api}",
        "--xds", f"127.0.0.1:{free_port()}",
        "--insecure-local",
        "--workdir", str(tmp_path / "run"),
    ]  # fmt: skip
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{api}"
    try:
        deadline = time.monotonic() + 30
        while not _answers(url):
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "serve did not answer in 30 s"
            time.sleep(0.05)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/config", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_write_through_serve_is_a_revision_another_replica_reads_and_hears(
    server: str, postgres_url: str
) -> None:
    replica = PostgresStore(postgres_url)
    heard = Heard()
    replica.subscribe(heard)
    try:
        seeded = replica.head()
        assert seeded is not None and seeded.number == 1
        assert seeded.config == load_file(EXAMPLES / "quickstart.yaml")

        put = httpx.put(
            f"{server}/v1/config",
            json=config_with("replaced").model_dump(mode="json"),
            headers={"If-Match": '"1"', "X-Change-Message": "from the API"},
            timeout=10,
        )
        assert put.status_code == 200, put.text
        assert put.headers["ETag"] == '"2"'
        assert heard.wait_for(2)
        assert replica.get(2).config == config_with("replaced")
        assert replica.get(2).message == "from the API"

        replica.commit(config_with("from", "elsewhere"), 2, "replica-b", "written on B")
        answer = httpx.get(f"{server}/v1/config", timeout=10)
        assert answer.headers["ETag"] == '"3"'
        stale = httpx.put(
            f"{server}/v1/config",
            json=config_with("late").model_dump(mode="json"),
            headers={"If-Match": '"2"'},
            timeout=10,
        )
        assert stale.status_code == 412 and stale.headers["ETag"] == '"3"'
    finally:
        replica.close()
