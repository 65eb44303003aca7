"""Every store test runs against both stores: a SQLite file and a PostgreSQL database."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from controlplane.model import Config, parse_config
from controlplane.store import PostgresStore, SQLiteStore, Store
from controlplane.store.postgres import migrate_database


def config_with(*clusters: str) -> Config:
    return parse_config(
        {"clusters": [{"name": c, "endpoints": [{"address": "127.0.0.1:9000"}]} for c in clusters]}
    )


WAIT = 20.0
"""Seconds a test waits for something that normally takes milliseconds."""


class Heard:
    """The numbers a listener was told, waited on without sleeping."""

    def __init__(self) -> None:
        self.numbers: list[int] = []
        self._changed = threading.Condition()

    def __call__(self, number: int) -> None:
        with self._changed:
            self.numbers.append(number)
            self._changed.notify_all()

    def wait_for(self, number: int, timeout: float = WAIT) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: number in self.numbers, timeout)


@dataclass
class Backend:
    """One migrated, empty database and how to open (another) store object on it."""

    name: str
    db: str
    opener: Callable[[], Store]
    execute: Callable[[str], None]
    """Run SQL on the database, beside the store (another connection)."""
    refusal: str
    """SQL making the database fail an INSERT by the author {author!r}, inside the commit."""
    failure: type[Exception]
    opened: list[Store] = field(default_factory=list)

    def open(self) -> Store:
        """A new store object on the database (another connection, as another replica)."""
        store = self.opener()
        self.opened.append(store)
        return store

    def refuse_commits_by(self, author: str) -> None:
        """Make the database itself fail an INSERT by `author`, inside the commit's
        transaction, raising `failure`."""
        for statement in self.refusal.format(author=author).split(";;"):
            self.execute(statement)

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


def sqlite_backend(path: Path) -> Backend:
    SQLiteStore(path).close()  # created and migrated, like the PostgreSQL database

    def execute(statement: str) -> None:
        with sqlite3.connect(path) as other:
            other.execute(statement)

    refusal = (
        "CREATE TRIGGER refuse AFTER INSERT ON revisions WHEN NEW.author = '{author}'"
        " BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )
    return Backend(
        "sqlite", str(path), lambda: SQLiteStore(path), execute, refusal, sqlite3.IntegrityError
    )


def postgres_backend(url: str) -> Backend:
    migrate_database(url)

    def execute(statement: str) -> None:
        with psycopg.connect(url, autocommit=True) as other:
            other.execute(statement)  # type: ignore[call-overload]

    refusal = (
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.author = '{author}' THEN RAISE EXCEPTION 'refused'; END IF;"
        " RETURN NEW; END $$;;"
        "CREATE TRIGGER refuse AFTER INSERT ON revisions FOR EACH ROW EXECUTE FUNCTION refuse()"
    )
    return Backend(
        "postgres",
        url,
        lambda: PostgresStore(url),
        execute,
        refusal,
        psycopg.errors.RaiseException,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        made = sqlite_backend(tmp_path / "store.db")
    else:
        made = postgres_backend(request.getfixturevalue("postgres_url"))
    yield made
    made.close_all()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()
