"""Which store a `--db` value names: a SQLite file path, or a PostgreSQL URL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .base import Store, StoreError
from .postgres import PostgresStore, is_postgres_url, migrate_database
from .sqlite import SQLiteStore


def open_store(db: str | Path, *, migrate: bool = False, create: bool = True) -> Store:
    """The store `db` names: `postgresql://…` or `postgres://…` opens PostgreSQL (migrated
    first with `migrate`), anything else is the path of a SQLite file (created when missing,
    unless `create` is False). StoreError, one line, when it cannot be opened."""
    text = str(db)
    if _is_postgres(text):
        return PostgresStore(text, migrate=migrate)
    return _sqlite(text, create)


def migrate(db: str | Path) -> tuple[int, int]:
    """Bring the schema of the database `db` names to the latest version: (before, after)."""
    text = str(db)
    if _is_postgres(text):
        return migrate_database(text)
    store = _sqlite(text, create=True)  # SQLite migrates as it opens
    try:
        return store.opened_at_version, store.schema_version()
    finally:
        store.close()


def _is_postgres(db: str) -> bool:
    """True for a PostgreSQL URL, False for a path; StoreError for another URL scheme."""
    if is_postgres_url(db):
        return True
    if "://" in db:
        scheme = db.split("://", 1)[0]
        raise StoreError(
            f"{db}: unsupported database URL scheme {scheme!r} "
            "(a SQLite file path or postgresql://…)"
        )
    return False


def _sqlite(path: str, create: bool) -> SQLiteStore:
    if not create and not Path(path).is_file():
        raise StoreError(f"{path}: no such SQLite file")
    try:
        return SQLiteStore(path)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: {exc}") from None
