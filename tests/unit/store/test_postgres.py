"""The PostgreSQL store as several replicas use it: racing writers, NOTIFY to every replica,
re-reading the head after a lost LISTEN connection or a lost notification."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from controlplane.store import Conflict, PostgresStore, content_hash
from controlplane.store.content import config_json
from controlplane.store.postgres import CHANNEL, migrate_database

from .conftest import Heard, config_with


@pytest.fixture
def url(postgres_url: str) -> str:
    migrate_database(postgres_url)
    return postgres_url


@pytest.fixture
def replicas(url: str) -> Iterator[list[PostgresStore]]:
    """Four store objects on one database, each with its own connections."""
    stores = [PostgresStore(url) for _ in range(4)]
    yield stores
    for store in stores:
        store.close()


def server_side(url: str) -> tuple[str, str]:
    """The URL of the server's `postgres` database (to watch another one), and the name of
    the database of `url`."""
    base, name = url.rsplit("/", 1)
    return f"{base}/postgres", name


def backends(url: str, application: str) -> list[int]:
    """PIDs of the server processes serving `application` on the database of `url`."""
    admin, name = server_side(url)
    with psycopg.connect(admin) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
            (name, application),
        ).fetchall()
    return [pid for (pid,) in rows]


def terminate(url: str, application: str) -> None:
    """End the server side of `application`'s connections, returning once they are gone."""
    pids = backends(url, application)
    assert pids, f"no {application} connection"
    with psycopg.connect(server_side(url)[0]) as conn:
        for pid in pids:
            conn.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))


def test_replicas_racing_on_each_revision_let_exactly_one_win(
    replicas: list[PostgresStore],
) -> None:
    rounds = 10
    outcomes: dict[int, list[str]] = {n: [] for n in range(1, rounds + 1)}
    barrier = threading.Barrier(len(replicas))
    failures: list[BaseException] = []

    def race(i: int, store: PostgresStore) -> None:
        try:
            for number in range(1, rounds + 1):
                barrier.wait()
                try:
                    store.commit(config_with(f"r{i}n{number}"), number - 1 or None, f"replica{i}")
                    outcomes[number].append("won")
                except Conflict as exc:
                    assert exc.expected == (number - 1 or None) and exc.head == number
                    outcomes[number].append("conflict")
        except threading.BrokenBarrierError:
            pass  # another replica failed: its failure is the one reported
        except BaseException as exc:  # the others must not wait for it at the barrier
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=race, args=(i, s)) for i, s in enumerate(replicas)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    for number, results in outcomes.items():
        assert sorted(results) == ["conflict"] * 3 + ["won"], number
    assert [m.number for m in replicas[0].list()] == list(range(rounds, 0, -1))


COMMITTER = """
import json, sys
from controlplane.model import parse_config
from controlplane.store import Conflict, PostgresStore
url, name, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = PostgresStore(url)
won = lost = 0
for i in range(attempts):
    head = store.head()
    config = parse_config({"clusters": [{"name": f"{name}-{i}",
        "endpoints": [{"address": "127.0.0.1:9000"}]}]})
    try:
        store.commit(config, head.number if head else None, name)
        won += 1
    except Conflict:
        lost += 1
store.close()
print(json.dumps({"won": won, "lost": lost}))
"""


def test_processes_racing_each_win_exactly_the_revisions_they_committed(url: str) -> None:
    attempts = 40
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", COMMITTER, url, f"process{i}", str(attempts)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    results = {}
    for i, process in enumerate(processes):
        out, _ = process.communicate(timeout=120)
        assert process.returncode == 0
        results[f"process{i}"] = json.loads(out)
    store = PostgresStore(url)
    try:
        history = store.list(limit=1000)
        assert [m.number for m in history] == list(range(len(history), 0, -1))
        authors = Counter(m.author for m in history)
        for name, result in results.items():
            assert result["won"] + result["lost"] == attempts
            assert authors[name] == result["won"]
        print(f"\n3 processes x {attempts} attempts: {results}")
    finally:
        store.close()


def test_a_commit_is_announced_to_the_other_replicas(replicas: list[PostgresStore]) -> None:
    writer, *others = replicas
    heard = [Heard() for _ in others]
    for store, listener in zip(others, heard, strict=True):
        store.subscribe(listener)
    for number in range(1, 21):
        writer.commit(config_with(f"c{number}"), number - 1 or None, "alice")
    for store, listener in zip(others, heard, strict=True):
        assert listener.wait_for(20)
        assert listener.numbers == sorted(set(listener.numbers))  # increasing, no repeats
        assert store.get(20).config == config_with("c20")


def test_a_commit_from_another_process_is_announced(url: str) -> None:
    store = PostgresStore(url)
    heard = Heard()
    store.subscribe(heard)
    try:
        result = subprocess.run(
            [sys.executable, "-c", COMMITTER, url, "elsewhere", "1"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert json.loads(result.stdout) == {"won": 1, "lost": 0}, result.stderr
        assert heard.wait_for(1)
        assert store.get(1).author == "elsewhere"
    finally:
        store.close()


def test_a_commit_made_while_the_listen_connection_was_down_is_announced_on_reconnect(
    url: str, replicas: list[PostgresStore]
) -> None:
    writer = replicas[0]
    follower = PostgresStore(url, safety_interval=3600)  # only the reconnect can find it
    heard = Heard()
    follower.subscribe(heard)
    admin_url, name = server_side(url)
    try:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            terminate(url, "controlplane-listen")
            assert backends(url, "controlplane-listen") == []
            # the NOTIFY of this commit reaches no one: the follower is not listening
            writer.commit(config_with("meanwhile"), None, "alice")
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert heard.wait_for(1)
        assert heard.numbers == [1]
        assert len(backends(url, "controlplane-listen")) == 1
    finally:
        follower.close()


def test_a_revision_written_without_notify_is_found_by_the_safety_reread(url: str) -> None:
    follower = PostgresStore(url, safety_interval=0.2)
    heard = Heard()
    follower.subscribe(heard)
    config = config_with("quiet")
    try:
        with psycopg.connect(url) as conn:  # a writer that sends no NOTIFY
            conn.execute(
                "INSERT INTO revisions VALUES (1, now(), 'quiet', '', %s, %s)",
                (config_json(config), content_hash(config)),
            )
        assert heard.wait_for(1)
        assert follower.get(1).config == config
    finally:
        follower.close()


def test_notifications_that_are_not_revision_numbers_are_ignored(
    replicas: list[PostgresStore],
) -> None:
    writer, follower = replicas[:2]
    heard = Heard()
    follower.subscribe(heard)
    with psycopg.connect(writer.url, autocommit=True) as conn:
        for payload in ("x", "-5", "0", str(2**70), ""):
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))
    writer.commit(config_with("a"), None, "alice")
    assert heard.wait_for(1)
    assert heard.numbers == [1]


def test_a_store_reconnects_after_losing_its_connection(
    url: str, replicas: list[PostgresStore]
) -> None:
    store = replicas[0]
    store.commit(config_with("a"), None, "alice")
    terminate(url, "controlplane")
    assert store.head().number == 1  # type: ignore[union-attr]
    assert store.commit(config_with("b"), 1, "bob").number == 2
