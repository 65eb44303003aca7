"""The versioned schema of a store: numbered migrations, the same versions in both dialects.

A database records the migrations applied to it in `schema_migrations` (version, name, time);
its schema version is the highest one. A store opens only a database at `LATEST`: an older
one must be migrated first (`controlplane db migrate`), a newer one belongs to a newer
controlplane. Version N means the same tables in SQLite and in PostgreSQL, so a history
exported from one imports into the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import SchemaError


@dataclass(frozen=True)
class Migration:
    """One step of the schema, as SQLite and PostgreSQL spell it."""

    version: int
    name: str
    sqlite: str
    postgres: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "revisions",
        # Exactly the table the store created before migrations were versioned.
        sqlite="""
            CREATE TABLE IF NOT EXISTS revisions (
                number       INTEGER PRIMARY KEY,
                created_at   TEXT    NOT NULL,
                author       TEXT    NOT NULL,
                message      TEXT    NOT NULL,
                config       TEXT    NOT NULL,
                content_hash TEXT    NOT NULL
            )
        """,
        # `config` is text, not jsonb: the content hash is of this exact text.
        postgres="""
            CREATE TABLE revisions (
                number       BIGINT      PRIMARY KEY CHECK (number > 0),
                created_at   TIMESTAMPTZ NOT NULL,
                author       TEXT        NOT NULL,
                message      TEXT        NOT NULL,
                config       TEXT        NOT NULL,
                content_hash TEXT        NOT NULL
            )
        """,
    ),
    Migration(
        2,
        "reports",
        # What each replica reports of the subjects it serves (opaque text), and each
        # replica's lease; times are seconds since the epoch (the database's clock on
        # PostgreSQL, so replicas' clocks need not agree).
        sqlite="""
            CREATE TABLE replicas (
                replica    TEXT PRIMARY KEY,
                expires_at REAL NOT NULL
            );
            CREATE TABLE reports (
                subject    TEXT NOT NULL,
                replica    TEXT NOT NULL REFERENCES replicas ON DELETE CASCADE,
                body       TEXT NOT NULL,
                written_at REAL NOT NULL,
                PRIMARY KEY (subject, replica)
            )
        """,
        postgres="""
            CREATE TABLE replicas (
                replica    TEXT             PRIMARY KEY,
                expires_at DOUBLE PRECISION NOT NULL
            );
            CREATE TABLE reports (
                subject    TEXT             NOT NULL,
                replica    TEXT             NOT NULL REFERENCES replicas ON DELETE CASCADE,
                body       TEXT             NOT NULL,
                written_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (subject, replica)
            )
        """,
    ),
)

LATEST = MIGRATIONS[-1].version
"""The schema version this controlplane reads and writes."""

MIGRATIONS_TABLE = {
    "sqlite": """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT    NOT NULL,
            applied_at TEXT    NOT NULL
        )
    """,
    "postgres": """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER     PRIMARY KEY,
            name       TEXT        NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )
    """,
}


def pending(version: int, where: str) -> tuple[Migration, ...]:
    """The migrations a database at `version` still needs (SchemaError when it is newer)."""
    if version > LATEST:
        raise too_new(version, where)
    return MIGRATIONS[version:]


def too_new(version: int, where: str) -> SchemaError:
    return SchemaError(
        f"{where}: schema version {version} is newer than this controlplane knows ({LATEST});"
        " upgrade controlplane"
    )


def check(version: int, where: str) -> None:
    """Refuse a database whose schema is not `LATEST`, saying what to do."""
    if version > LATEST:
        raise too_new(version, where)
    if version < LATEST:
        state = "has no controlplane schema" if version == 0 else f"is at schema version {version}"
        raise SchemaError(
            f"{where} {state} (this controlplane needs {LATEST}): run"
            f" `controlplane db migrate --db {where}`, or `serve --migrate`"
        )
