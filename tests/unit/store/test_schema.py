"""Versioned schemas: migrations applied once, a database at another version refused with one
line, SQLite files from before versioning still opening."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from controlplane.store import PostgresStore, SchemaError, SQLiteStore
from controlplane.store.postgres import migrate_database
from controlplane.store.schema import LATEST

from .conftest import Backend, config_with


def controlplane(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_database_at_a_newer_schema_version_is_refused(backend: Backend) -> None:
    backend.execute(
        "INSERT INTO schema_migrations (version, name, applied_at)"
        " VALUES (99, 'from the future', '2030-01-01T00:00:00+00:00')"
    )
    with pytest.raises(SchemaError, match=f"schema version 99 is newer .* knows \\({LATEST}\\)"):
        backend.open()
    for command in (["db", "migrate"], ["db", "export", "out.jsonl"], ["serve"]):
        result = controlplane(*command, "--db", backend.db)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "schema version 99 is newer" in result.stderr


def test_postgres_refuses_an_unmigrated_database_until_migrated(postgres_url: str) -> None:
    with pytest.raises(SchemaError, match="has no controlplane schema"):
        PostgresStore(postgres_url)
    refused = controlplane("serve", "--db", postgres_url, "--api", "127.0.0.1:0")
    assert refused.returncode == 2
    assert refused.stderr.splitlines() == [
        f"{postgres_url} has no controlplane schema (this controlplane needs {LATEST}): run"
        f" `controlplane db migrate --db {postgres_url}`, or `serve --migrate`"
    ]
    migrated = controlplane("db", "migrate", "--db", postgres_url)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == (
        f"{postgres_url}: schema version {LATEST} (migrated from version 0)\n"
    )
    again = controlplane("db", "migrate", "--db", postgres_url)
    assert again.stdout == f"{postgres_url}: schema version {LATEST} (nothing to do)\n"
    store = PostgresStore(postgres_url)
    try:
        assert store.commit(config_with("a"), None, "alice").number == 1
    finally:
        store.close()


def test_replicas_migrating_at_once_apply_each_migration_once(postgres_url: str) -> None:
    barrier = threading.Barrier(4)
    results: list[tuple[int, int]] = []

    def migrate() -> None:
        barrier.wait()
        results.append(migrate_database(postgres_url))

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [(0, LATEST)] + [(LATEST, LATEST)] * 3
    with psycopg.connect(postgres_url) as conn:
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [v for (v,) in versions] == list(range(1, LATEST + 1))


def test_an_unreachable_database_is_one_line_exit_2(postgres_server: object) -> None:
    url = "postgresql://cp@127.0.0.1:1/nothing"
    for command in (["db", "migrate"], ["db", "export", "out.jsonl"], ["serve"]):
        result = controlplane(*command, "--db", url)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"{url}: cannot connect: ")
        assert result.stderr.count("\n") == 1


def test_a_password_never_shows_in_messages() -> None:
    url = "postgresql://cp:s3cret@127.0.0.1:1/nothing"
    result = controlplane("db", "migrate", "--db", url)
    assert result.returncode == 2
    assert "s3cret" not in result.stderr
    assert result.stderr.startswith("postgresql://cp:***@127.0.0.1:1/nothing: cannot connect")
    in_query = controlplane("db", "migrate", "--db", "postgresql://127.0.0.1:1/x?password=s3cret")
    assert in_query.returncode == 2 and "s3cret" not in in_query.stderr
    assert in_query.stderr.startswith("postgresql://127.0.0.1:1/x?password=***: cannot connect")


def test_an_unsupported_url_scheme_is_refused() -> None:
    result = controlplane("db", "migrate", "--db", "mysql://db/cp")
    assert result.returncode == 2
    assert result.stderr == (
        "mysql://db/cp: unsupported database URL scheme 'mysql'"
        " (a SQLite file path or postgresql://…)\n"
    )


def test_a_sqlite_file_from_before_versioning_opens_as_version_1(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as old:  # what the store wrote before migrations were versioned
        old.execute("PRAGMA journal_mode=WAL")
        old.execute(
            "CREATE TABLE IF NOT EXISTS revisions (number INTEGER PRIMARY KEY,"
            " created_at TEXT NOT NULL, author TEXT NOT NULL, message TEXT NOT NULL,"
            " config TEXT NOT NULL, content_hash TEXT NOT NULL)"
        )
    made = SQLiteStore(tmp_path / "made.db")
    revision = made.commit(config_with("a"), None, "alice", "before versioning")
    made.close()
    with sqlite3.connect(tmp_path / "made.db") as source, sqlite3.connect(path) as old:
        old.executemany(
            "INSERT INTO revisions VALUES (?, ?, ?, ?, ?, ?)",
            source.execute("SELECT * FROM revisions").fetchall(),
        )
    store = SQLiteStore(path)
    try:
        assert store.opened_at_version == 1 and store.schema_version() == LATEST
        assert store.head() == revision
        assert store.commit(config_with("b"), 1, "bob").number == 2
    finally:
        store.close()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT version, name FROM schema_migrations").fetchall() == [
            (1, "revisions"),
            (2, "reports"),
        ]


def test_a_missing_sqlite_file_is_created_at_the_latest_version(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    result = controlplane("db", "migrate", "--db", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: schema version {LATEST} (migrated from version 0)\n"
    store = SQLiteStore(path)
    try:
        assert store.opened_at_version == LATEST and store.head() is None
    finally:
        store.close()


def test_a_migration_the_database_refuses_is_one_line_exit_2(postgres_url: str) -> None:
    name = postgres_url.rsplit("/", 1)[1]
    role = f"reader_{name}"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')  # may not create tables in public
    reader_url = postgres_url.replace("://cp@", f"://{role}@")
    result = controlplane("db", "migrate", "--db", reader_url)
    assert result.returncode == 2
    assert result.stderr == f"{reader_url}: migrating failed: permission denied for schema public\n"
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        assert admin.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)
        admin.execute(f'DROP ROLE "{role}"')
