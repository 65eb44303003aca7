"""The embedded store: one SQLite file in WAL mode, one table of revisions."""

from __future__ import annotations

import builtins
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from ..model import Config
from . import schema
from .base import (
    MAX_NUMBER,
    Conflict,
    NotEmpty,
    Report,
    ReportsListener,
    Revision,
    RevisionListener,
    RevisionMeta,
    RevisionNotFound,
    Store,
)
from .content import config_json, text_hash
from .listeners import Listeners, Signals

_META_COLUMNS = "number, created_at, author, message, content_hash"


class SQLiteStore(Store):
    """Revisions in a SQLite file (created when missing), durable once `commit` returns.

    Listeners hear of commits made through this object; another process writing to the
    same file is seen by `head()` but not announced (several replicas need the PostgreSQL
    store).

    Opening applies the schema migrations the file lacks (one process owns an embedded
    file, so upgrading it needs no separate step); a file written by a newer controlplane
    is refused (SchemaError). `opened_at_version` is the version the file had.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self._lock = threading.RLock()
        self._listeners = Listeners()
        self._signals = Signals()
        self._cached: Revision | None = None
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self.opened_at_version, _ = self.migrate()
        except BaseException:
            self._db.close()
            raise

    def schema_version(self) -> int:
        """The highest migration applied to the file (1 for a file from before migrations
        were recorded: its one table is migration 1)."""
        tables = {
            str(row[0])
            for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if "schema_migrations" in tables:
            row = self._db.execute("SELECT max(version) FROM schema_migrations").fetchone()
            return int(row[0] or 0)
        return 1 if "revisions" in tables else 0

    def migrate(self) -> tuple[int, int]:
        """Apply the migrations the file lacks, in one transaction: (version before, after)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self.schema_version()
                steps = schema.pending(before, self.path)
                self._db.execute(schema.MIGRATIONS_TABLE["sqlite"])
                recorded = self._db.execute("SELECT count(*) FROM schema_migrations").fetchone()
                if before == 1 and recorded[0] == 0:
                    self._record(schema.MIGRATIONS[0])
                for step in steps:
                    for statement in step.sqlite.split(";"):
                        self._db.execute(statement)
                    self._record(step)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return before, schema.LATEST

    def _record(self, step: schema.Migration) -> None:
        self._db.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (step.version, step.name, datetime.now(UTC).isoformat()),
        )

    def head(self) -> Revision | None:
        with self._lock:
            row = self._db.execute(
                "SELECT number, content_hash FROM revisions ORDER BY number DESC LIMIT 1"
            ).fetchone()
        if row is None:
            return None
        cached = self._cached
        if cached is not None and (cached.number, cached.content_hash) == tuple(row):
            return cached
        revision = self.get(int(row[0]))
        self._cached = revision
        return revision

    def get(self, number: int) -> Revision:
        cached = self._cached
        if cached is not None and cached.number == number:
            return cached
        if not 0 < number <= MAX_NUMBER:
            raise RevisionNotFound(number)
        with self._lock:
            row = self._db.execute(
                f"SELECT {_META_COLUMNS}, config FROM revisions WHERE number = ?", (number,)
            ).fetchone()
        if row is None:
            raise RevisionNotFound(number)
        meta = _meta(row[:5])
        config = Config.model_validate_json(row[5])
        return Revision(**vars(meta), config=config)

    def list(self, limit: int = 50, before: int | None = None) -> list[RevisionMeta]:
        query = f"SELECT {_META_COLUMNS} FROM revisions"
        params: tuple[int, ...] = ()
        if before is not None:
            query += " WHERE number < ?"
            params = (min(before, MAX_NUMBER + 1),)
        query += " ORDER BY number DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*params, min(max(0, limit), MAX_NUMBER))).fetchall()
        return [_meta(row) for row in rows]

    def commit(
        self, config: Config, expected: int | None, author: str, message: str = ""
    ) -> Revision:
        text = config_json(config)
        digest = text_hash(text)
        created_at = datetime.now(UTC)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT max(number) FROM revisions").fetchone()
                head = row[0] if row else None
                if head != expected:
                    raise Conflict(expected, head)
                number = (head or 0) + 1
                self._db.execute(
                    "INSERT INTO revisions (number, created_at, author, message, config,"
                    " content_hash) VALUES (?, ?, ?, ?, ?, ?)",
                    (number, created_at.isoformat(), author, message, text, digest),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        revision = Revision(number, created_at, author, message, digest, config)
        self._cached = revision
        self._listeners.announce(number)
        return revision

    def subscribe(self, listener: RevisionListener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def load_history(self, revisions: Iterable[Revision], replace: bool = False) -> int | None:
        head: int | None = None
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("SELECT 1 FROM revisions LIMIT 1").fetchone() is not None:
                    if not replace:
                        raise NotEmpty(f"{self.path} already holds revisions")
                    self._db.execute("DELETE FROM revisions")
                for r in revisions:
                    text = config_json(r.config)
                    self._db.execute(
                        "INSERT INTO revisions (number, created_at, author, message, config,"
                        " content_hash) VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            r.number,
                            r.created_at.isoformat(),
                            r.author,
                            r.message,
                            text,
                            text_hash(text),
                        ),
                    )
                    head = r.number
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._cached = None
        if head is not None:
            self._listeners.announce(head)
        return head

    def report(
        self,
        replica: str,
        lease: float,
        bodies: Mapping[str, str | None],
        fresh: bool = False,
    ) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO replicas (replica, expires_at) VALUES (?, ?) ON CONFLICT"
                    " (replica) DO UPDATE SET expires_at = excluded.expires_at",
                    (replica, now + lease),
                )
                if fresh:
                    self._db.execute("DELETE FROM reports WHERE replica = ?", (replica,))
                for subject, body in bodies.items():
                    if body is None:
                        self._db.execute(
                            "DELETE FROM reports WHERE subject = ? AND replica = ?",
                            (subject, replica),
                        )
                    else:
                        self._db.execute(
                            "INSERT INTO reports (subject, replica, body, written_at)"
                            " VALUES (?, ?, ?, ?) ON CONFLICT (subject, replica) DO UPDATE"
                            " SET body = excluded.body, written_at = excluded.written_at",
                            (subject, replica, body, now),
                        )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        self._signals.tell()

    def reports(self) -> builtins.list[Report]:
        with self._lock:
            rows = self._db.execute(
                "SELECT r.subject, r.replica, r.body, r.written_at,"
                " coalesce(l.expires_at, 0) > ? FROM reports r"
                " LEFT JOIN replicas l ON l.replica = r.replica",
                (time.time(),),
            ).fetchall()
        return [Report(str(s), str(r), str(b), float(w), bool(live)) for s, r, b, w, live in rows]

    def forget_replicas(self, gone_for: float) -> builtins.list[str]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                gone = [
                    str(row[0])
                    for row in self._db.execute(
                        "SELECT replica FROM replicas WHERE expires_at < ?",
                        (time.time() - gone_for,),
                    )
                ]
                for replica in gone:
                    self._db.execute("DELETE FROM reports WHERE replica = ?", (replica,))
                    self._db.execute("DELETE FROM replicas WHERE replica = ?", (replica,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if gone:
            self._signals.tell()
        return gone

    def subscribe_reports(self, listener: ReportsListener) -> Callable[[], None]:
        return self._signals.add(listener)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _meta(row: tuple[object, ...] | sqlite3.Row) -> RevisionMeta:
    number, created_at, author, message, digest = row
    return RevisionMeta(
        number=int(str(number)),
        created_at=datetime.fromisoformat(str(created_at)),
        author=str(author),
        message=str(message),
        content_hash=str(digest),
    )
