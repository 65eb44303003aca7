"""The embedded store: one SQLite file in WAL mode, one table of revisions."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ..model import Config
from .base import Conflict, Revision, RevisionListener, RevisionMeta, RevisionNotFound, Store
from .content import config_json, text_hash

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS revisions (
    number       INTEGER PRIMARY KEY,
    created_at   TEXT    NOT NULL,
    author       TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    config       TEXT    NOT NULL,
    content_hash TEXT    NOT NULL
)
"""

MAX_NUMBER = 2**63 - 2
"""The largest revision number SQLite's INTEGER holds (with room for `before` one above)."""

_META_COLUMNS = "number, created_at, author, message, content_hash"


class SQLiteStore(Store):
    """Revisions in a SQLite file (created when missing), durable once `commit` returns.

    Listeners hear of commits made through this object; another process writing to the
    same file is seen by `head()` but not announced (several replicas need the PostgreSQL
    store).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self._lock = threading.RLock()
        self._notify_lock = threading.Lock()
        self._listeners: list[RevisionListener] = []
        self._cached: Revision | None = None
        self._announced = 0
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(SCHEMA)

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
        self._announce(number)
        return revision

    def subscribe(self, listener: RevisionListener) -> Callable[[], None]:
        with self._notify_lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._notify_lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _announce(self, number: int) -> None:
        with self._notify_lock:
            if number <= self._announced:
                return
            self._announced = number
            for listener in list(self._listeners):
                try:
                    listener(number)
                except Exception:
                    log.exception("a store listener failed on revision %d", number)


def _meta(row: tuple[object, ...] | sqlite3.Row) -> RevisionMeta:
    number, created_at, author, message, digest = row
    return RevisionMeta(
        number=int(str(number)),
        created_at=datetime.fromisoformat(str(created_at)),
        author=str(author),
        message=str(message),
        content_hash=str(digest),
    )
