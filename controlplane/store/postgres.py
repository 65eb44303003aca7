"""The store for several control-plane replicas: one PostgreSQL database, told by NOTIFY.

Every replica opens the same database. Writers race on the revision number, the table's
primary key: the one whose INSERT lands first wins, the others raise Conflict exactly as
SQLite does. A commit sends `NOTIFY controlplane_revisions, '<number>'` in its transaction,
so every replica's LISTEN connection hears each new head once it is committed. Reports
(what each replica says of the subjects it serves, under a lease) are announced the same way
on their own channel.
"""

from __future__ import annotations

import builtins
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors

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
    StoreError,
)
from .content import config_json, text_hash
from .listeners import Listeners, Signals

log = logging.getLogger(__name__)

CHANNEL = "controlplane_revisions"
"""The NOTIFY channel; the payload is the new head's number, nothing else."""
REPORTS_CHANNEL = "controlplane_reports"
"""The NOTIFY channel of written reports; the payload is the writing replica's name."""
_NOW = "extract(epoch from clock_timestamp())"
"""The database's clock in seconds since the epoch: one clock for every replica's lease."""

MIGRATION_LOCK = 0x636F6E74726F6C
"""The advisory lock key that serialises migrations of one database (replicas starting at
once with `--migrate`)."""

_META_COLUMNS = "number, created_at, author, message, content_hash"

Row = tuple[Any, ...]
Rows = list[Row]


def is_postgres_url(db: str) -> bool:
    """True for a `postgresql://…` or `postgres://…` URL."""
    return db.startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """The URL with any password (in the authority or a `password=` parameter) as `***`,
    for messages and logs."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rsplit("@", 1)[1]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if "password=" in parts.query:
        query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


def connect(url: str, application_name: str, **options: Any) -> psycopg.Connection[Row]:
    """An autocommit connection to `url` (StoreError with one line when it fails)."""
    try:
        return psycopg.connect(
            url,
            autocommit=True,
            application_name=application_name,
            connect_timeout=options.pop("connect_timeout", 10),
            **options,
        )
    except psycopg.Error as exc:
        raise StoreError(f"{redact(url)}: cannot connect: {one_line(exc)}") from None


def one_line(exc: Exception) -> str:
    """The first line of a database error, where libpq and the server say what failed."""
    lines = str(exc).strip().splitlines()
    text = lines[0].strip() if lines else type(exc).__name__
    return text.removeprefix("connection failed: ")


def schema_version(conn: psycopg.Connection[Row]) -> int:
    """The highest migration applied to the database (0: none, not even the table)."""
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0) if row else 0


def migrate_database(url: str) -> tuple[int, int]:
    """Apply the migrations the database lacks, in one transaction: (version before, after).

    Replicas migrating at once take turns (an advisory lock); the later ones find nothing
    to do.
    """
    try:
        with connect(url, "controlplane-migrate") as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            before = schema_version(conn)
            steps = schema.pending(before, redact(url))
            conn.execute(schema.MIGRATIONS_TABLE["postgres"])
            for step in steps:
                conn.execute(step.postgres)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (step.version, step.name),
                )
    except psycopg.Error as exc:
        raise StoreError(f"{redact(url)}: migrating failed: {one_line(exc)}") from None
    return before, schema.LATEST


class PostgresStore(Store):
    """Revisions in a PostgreSQL database at schema version `schema.LATEST`.

    Opening refuses a database at another version (SchemaError), unless `migrate` applies the
    missing migrations first. Listeners hear every new head, whichever replica committed it:
    a thread holds a LISTEN connection, re-reads the head each time it (re)connects
    (notifications sent while it was away are lost) and every `safety_interval` seconds.

    Synchronous psycopg on purpose: the API runs store calls in a thread pool and the
    fleet follows the store through listener callbacks, as with SQLite; each call is one or
    two short statements on one connection (calls take turns, like SQLite's), and the
    LISTEN connection lives on a thread of its own, so no event loop is needed here.
    """

    shared = True

    def __init__(
        self,
        url: str,
        *,
        migrate: bool = False,
        safety_interval: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.where = redact(url)
        self.safety_interval = safety_interval
        self.connect_timeout = connect_timeout
        if migrate:
            migrate_database(url)
        self._lock = threading.RLock()
        self._conn = connect(url, "controlplane", connect_timeout=connect_timeout)
        try:
            schema.check(schema_version(self._conn), self.where)
        except psycopg.Error as exc:
            self._conn.close()
            raise StoreError(f"{self.where}: cannot read the schema: {one_line(exc)}") from None
        except BaseException:
            self._conn.close()
            raise
        self._cached: Revision | None = None
        self._listeners = Listeners()
        self._signals = Signals()
        self._follower: _Follower | None = None

    def head(self) -> Revision | None:
        rows = self._read(
            "SELECT number, content_hash FROM revisions ORDER BY number DESC LIMIT 1", ()
        )
        if not rows:
            return None
        number, digest = int(rows[0][0]), str(rows[0][1])
        cached = self._cached
        if cached is not None and (cached.number, cached.content_hash) == (number, digest):
            return cached
        revision = self.get(number)
        self._cached = revision
        return revision

    def get(self, number: int) -> Revision:
        cached = self._cached
        if cached is not None and cached.number == number:
            return cached
        if not 0 < number <= MAX_NUMBER:
            raise RevisionNotFound(number)
        rows = self._read(
            f"SELECT {_META_COLUMNS}, config FROM revisions WHERE number = %s", (number,)
        )
        if not rows:
            raise RevisionNotFound(number)
        meta = _meta(rows[0][:5])
        return Revision(**vars(meta), config=Config.model_validate_json(rows[0][5]))

    def list(self, limit: int = 50, before: int | None = None) -> list[RevisionMeta]:
        query = f"SELECT {_META_COLUMNS} FROM revisions"
        params: tuple[int, ...] = ()
        if before is not None:
            query += " WHERE number < %s"
            params = (min(before, MAX_NUMBER + 1),)
        query += " ORDER BY number DESC LIMIT %s"
        rows = self._read(query, (*params, min(max(0, limit), MAX_NUMBER)))
        return [_meta(row) for row in rows]

    def commit(
        self, config: Config, expected: int | None, author: str, message: str = ""
    ) -> Revision:
        text = config_json(config)
        digest = text_hash(text)
        created_at = datetime.now(UTC)
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction():
                    row = conn.execute("SELECT max(number) FROM revisions").fetchone()
                    head = row[0] if row else None
                    if head != expected:
                        raise Conflict(expected, head)
                    number = (head or 0) + 1
                    conn.execute(
                        "INSERT INTO revisions (number, created_at, author, message, config,"
                        " content_hash) VALUES (%s, %s, %s, %s, %s, %s)",
                        (number, created_at, author, message, text, digest),
                    )
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(number)))
            except errors.UniqueViolation:
                # Another replica inserted this number between our read and our insert.
                row = conn.execute("SELECT max(number) FROM revisions").fetchone()
                raise Conflict(expected, row[0] if row else None) from None
        revision = Revision(number, created_at, author, message, digest, config)
        self._cached = revision
        self._listeners.announce(number)
        return revision

    def subscribe(self, listener: RevisionListener) -> Callable[[], None]:
        """As `Store.subscribe`; the first subscriber starts the LISTEN thread and returns
        once it listens (or after `connect_timeout`, the thread trying on), so every commit
        after `subscribe` returns is heard."""
        unsubscribe = self._listeners.add(listener)
        self._follow()
        return unsubscribe

    def report(
        self,
        replica: str,
        lease: float,
        bodies: Mapping[str, str | None],
        fresh: bool = False,
    ) -> None:
        gone = [(s, replica) for s, b in bodies.items() if b is None]
        written = [(s, replica, b) for s, b in bodies.items() if b is not None]
        with self._lock:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO replicas (replica, expires_at) VALUES (%s, {_NOW} + %s)"
                    " ON CONFLICT (replica) DO UPDATE SET expires_at = excluded.expires_at",
                    (replica, lease),
                )
                if fresh:
                    cursor.execute("DELETE FROM reports WHERE replica = %s", (replica,))
                if gone:
                    cursor.executemany(
                        "DELETE FROM reports WHERE subject = %s AND replica = %s", gone
                    )
                if written:
                    cursor.executemany(
                        "INSERT INTO reports (subject, replica, body, written_at)"
                        f" VALUES (%s, %s, %s, {_NOW}) ON CONFLICT (subject, replica)"
                        " DO UPDATE SET body = excluded.body, written_at = excluded.written_at",
                        written,
                    )
                if gone or written or fresh:
                    cursor.execute("SELECT pg_notify(%s, %s)", (REPORTS_CHANNEL, replica))
        self._signals.tell()

    def reports(self) -> builtins.list[Report]:
        rows = self._read(
            "SELECT r.subject, r.replica, r.body, r.written_at,"
            f" coalesce(l.expires_at > {_NOW}, false) FROM reports r"
            " LEFT JOIN replicas l ON l.replica = r.replica",
            (),
        )
        return [Report(str(s), str(r), str(b), float(w), bool(live)) for s, r, b, w, live in rows]

    def forget_replicas(self, gone_for: float) -> builtins.list[str]:
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                rows = conn.execute(
                    f"DELETE FROM replicas WHERE expires_at < {_NOW} - %s RETURNING replica",
                    (gone_for,),
                ).fetchall()
                gone = [str(row[0]) for row in rows]
                if gone:
                    conn.execute("DELETE FROM reports WHERE replica = ANY(%s)", (gone,))
                    conn.execute("SELECT pg_notify(%s, %s)", (REPORTS_CHANNEL, gone[0]))
        return gone

    def subscribe_reports(self, listener: ReportsListener) -> Callable[[], None]:
        """As `Store.subscribe_reports`; starts the LISTEN thread as `subscribe` does."""
        unsubscribe = self._signals.add(listener)
        self._follow()
        return unsubscribe

    def _follow(self) -> None:
        """Start the LISTEN thread unless it runs; return once it listens (or after
        `connect_timeout`, the thread trying on)."""
        with self._lock:
            if self._follower is None:
                self._follower = _Follower(self, self._listeners, self._signals)
                self._follower.start()
        self._follower.wait_listening(self.connect_timeout)

    def load_history(self, revisions: Iterable[Revision], replace: bool = False) -> int | None:
        head: int | None = None
        with self._lock:
            conn = self._connection()
            with conn.transaction():
                conn.execute("LOCK TABLE revisions IN EXCLUSIVE MODE")
                if conn.execute("SELECT 1 FROM revisions LIMIT 1").fetchone() is not None:
                    if not replace:
                        raise NotEmpty(f"{self.where} already holds revisions")
                    conn.execute("DELETE FROM revisions")
                with conn.cursor().copy(
                    "COPY revisions (number, created_at, author, message, config, content_hash)"
                    " FROM STDIN"
                ) as copy:
                    for r in revisions:
                        text = config_json(r.config)
                        copy.write_row(
                            (r.number, r.created_at, r.author, r.message, text, text_hash(text))
                        )
                        head = r.number
                if head is not None:
                    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(head)))
            self._cached = None
        if head is not None:
            self._listeners.announce(head)
        return head

    def close(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            follower.stop()
        with self._lock:
            self._conn.close()

    def _connection(self) -> psycopg.Connection[Row]:
        """The query connection, opened again when the last one broke (call under _lock)."""
        if self._conn.closed:
            log.warning("the connection to %s was lost; reconnecting", self.where)
            self._conn = connect(self.url, "controlplane", connect_timeout=self.connect_timeout)
        return self._conn

    def _read(self, query: str, params: tuple[int, ...] | tuple[()]) -> Rows:
        """Rows of a read-only query; once more on a new connection if the old one broke."""
        with self._lock:
            conn = self._connection()
            try:
                return conn.execute(query, params).fetchall()
            except psycopg.OperationalError:
                if not conn.closed:
                    raise
            return self._connection().execute(query, params).fetchall()


class _Follower(threading.Thread):
    """Holds a store's LISTEN connection and tells its listeners of each new head."""

    def __init__(self, store: PostgresStore, listeners: Listeners, signals: Signals) -> None:
        super().__init__(name="controlplane-listen", daemon=True)
        self._store = store
        self._listeners = listeners
        self._signals = signals
        self._stopping = threading.Event()
        self._listening = threading.Event()
        self._first = threading.Lock()
        self._quiet_first = True  # the head at subscribe time is known, not news
        self._wake_r, self._wake_w = os.pipe()

    def wait_listening(self, timeout: float) -> None:
        """Block until LISTEN is in place or `timeout` passed; after that, the first head
        read is announced (it may be news to a subscriber that stopped waiting)."""
        if not self._listening.wait(timeout):
            with self._first:
                self._quiet_first = False

    def stop(self) -> None:
        self._stopping.set()
        os.write(self._wake_w, b"x")
        self.join(10)
        if not self.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)

    def run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                conn = connect(
                    self._store.url,
                    "controlplane-listen",
                    connect_timeout=self._store.connect_timeout,
                    keepalives=1,
                    keepalives_idle=10,
                    keepalives_interval=5,
                    keepalives_count=3,
                )
                with conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    conn.execute(f"LISTEN {REPORTS_CHANNEL}")
                    self._reread(conn, arming=True)
                    backoff = 0.1
                    self._follow(conn)
            except StoreError as exc:
                log.warning("%s; LISTEN again in %.1f s", exc, backoff)
            except psycopg.Error as exc:
                if not self._stopping.is_set():
                    log.warning("LISTEN on %s lost (%s); reconnecting", self._store.where, exc)
            except Exception:
                log.exception("following %s failed; reconnecting", self._store.where)
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _follow(self, conn: psycopg.Connection[Row]) -> None:
        """Announce notifications until the connection breaks or the store closes."""
        with selectors.DefaultSelector() as selector:
            selector.register(conn.fileno(), selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            next_reread = time.monotonic() + self._store.safety_interval
            while not self._stopping.is_set():
                selector.select(max(0.0, next_reread - time.monotonic()))
                if self._stopping.is_set():
                    return
                reports = False
                for notify in conn.notifies(timeout=0):
                    if notify.channel == REPORTS_CHANNEL:
                        reports = True
                    else:
                        self._heard(notify.payload)
                if reports:
                    self._signals.tell()
                if time.monotonic() >= next_reread:
                    self._reread(conn, arming=False)
                    next_reread = time.monotonic() + self._store.safety_interval

    def _heard(self, payload: str) -> None:
        try:
            number = int(payload)
        except ValueError:
            log.warning("ignoring a notification that is not a revision number: %r", payload)
            return
        if 0 < number <= MAX_NUMBER:
            self._listeners.announce(number)

    def _reread(self, conn: psycopg.Connection[Row], arming: bool) -> None:
        row = conn.execute("SELECT max(number) FROM revisions").fetchone()
        head = int(row[0]) if row and row[0] is not None else 0
        if arming and not self._listening.is_set():
            with self._first:
                if self._quiet_first:
                    self._listeners.known(head)
                self._listening.set()
        if head:
            self._listeners.announce(head)
        self._signals.tell()  # reports written while it was not listening may be missed


def _meta(row: Row) -> RevisionMeta:
    number, created_at, author, message, digest = row
    return RevisionMeta(
        number=int(number),
        created_at=created_at.astimezone(UTC),
        author=str(author),
        message=str(message),
        content_hash=str(digest),
    )
