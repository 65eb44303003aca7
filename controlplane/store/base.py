"""The store interface: what every implementation (SQLite, PostgreSQL) promises its callers."""

from __future__ import annotations

import abc
import builtins
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from ..model import Config

RevisionListener = Callable[[int], None]
"""Told the number of a new head revision; see `Store.subscribe`."""

ReportsListener = Callable[[], None]
"""Told that some replica wrote reports; see `Store.subscribe_reports`."""

MAX_NUMBER = 2**63 - 2
"""The largest revision number a store holds (a signed 64-bit integer, with room for `before`)."""


@dataclass(frozen=True)
class RevisionMeta:
    """Who made a revision, when, why, and the hash of its content."""

    number: int
    created_at: datetime
    author: str
    message: str
    content_hash: str


@dataclass(frozen=True)
class Revision(RevisionMeta):
    """A revision with the whole config it holds (validated when it was committed)."""

    config: Config

    @property
    def meta(self) -> RevisionMeta:
        """The revision without its config."""
        return RevisionMeta(
            self.number, self.created_at, self.author, self.message, self.content_hash
        )


@dataclass(frozen=True)
class Report:
    """What one replica last said of one subject: an opaque text the store does not read,
    when it was written (seconds since the epoch, the database's clock), and whether the
    replica's lease still holds (`live`)."""

    subject: str
    replica: str
    body: str
    written_at: float
    live: bool


class Conflict(Exception):
    """A commit expected a head revision that is no longer the head; nothing was written."""

    def __init__(self, expected: int | None, head: int | None) -> None:
        self.expected = expected
        self.head = head
        super().__init__(f"expected head revision {expected}, the head is {head}")


class RevisionNotFound(KeyError):
    """No revision has this number."""

    def __init__(self, number: int) -> None:
        self.number = number
        super().__init__(number)

    def __str__(self) -> str:
        return f"no revision {self.number}"


class StoreError(Exception):
    """The store cannot be opened or used as asked; the message says why in one line."""


class SchemaError(StoreError):
    """The database's schema is not the version this controlplane knows (older or newer)."""


class NotEmpty(StoreError):
    """A whole history cannot be loaded into a store that already holds revisions."""


class Store(abc.ABC):
    """Numbered revisions of the whole config, kept for ever; the highest number is the head.

    Numbers start at 1 and only grow; a rollback is a new revision whose config equals an
    older one. A commit is all or nothing. Implementations are safe to call from several
    threads.
    """

    shared = False
    """Whether other processes (control-plane replicas) may write to the store too."""

    @abc.abstractmethod
    def head(self) -> Revision | None:
        """The newest revision, None while the store is empty."""

    @abc.abstractmethod
    def get(self, number: int) -> Revision:
        """Revision `number` (RevisionNotFound when there is none)."""

    @abc.abstractmethod
    def list(self, limit: int = 50, before: int | None = None) -> list[RevisionMeta]:
        """Up to `limit` revisions, newest first, all older than `before` when it is given."""

    @abc.abstractmethod
    def commit(
        self, config: Config, expected: int | None, author: str, message: str = ""
    ) -> Revision:
        """Make `config` the new head revision, only if the head is still `expected`.

        `expected` is the head's number as the caller read it (None: the store is empty).
        When another commit came first, raise Conflict and write nothing. The caller has
        validated `config`; the store keeps it as it is.
        """

    @abc.abstractmethod
    def subscribe(self, listener: RevisionListener) -> Callable[[], None]:
        """Call `listener(number)` after each new head revision; returns an unsubscribe.

        Guarantees, for every implementation: a listener is called after the revision is
        durable and readable through `get`; numbers reach one listener in increasing order;
        several quick commits may be told as just the newest (read `get(number)` or `head()`,
        never count calls). Listeners may be called from any thread (SQLite: the committing
        thread; PostgreSQL: the thread that receives NOTIFY, including commits made by other
        replicas), and an exception from a listener is logged, never raised to the committer.
        """

    @abc.abstractmethod
    def load_history(self, revisions: Iterable[Revision], replace: bool = False) -> int | None:
        """Make `revisions` the store's whole history, in one transaction; the new head number.

        `revisions` come in increasing order of number, each kept exactly as given (number,
        time, author, message, config). A store that already holds revisions raises NotEmpty
        unless `replace`, which deletes them first. Any exception, also one raised while
        iterating `revisions`, writes nothing. Listeners are told the new head.
        """

    @abc.abstractmethod
    def report(
        self,
        replica: str,
        lease: float,
        bodies: Mapping[str, str | None],
        fresh: bool = False,
    ) -> None:
        """Renew `replica`'s lease for `lease` seconds and write its reports, in one
        transaction: per subject the new body, or None to remove the replica's report of it;
        `fresh` removes every other report of the replica first (a replica starting again
        under the same name knows nothing of what it reported before). Report listeners, on
        every replica, are told afterwards."""

    @abc.abstractmethod
    def reports(self) -> builtins.list[Report]:
        """Every report of every replica known, whether its lease holds or not."""

    @abc.abstractmethod
    def forget_replicas(self, gone_for: float) -> builtins.list[str]:
        """Drop the replicas whose lease ran out more than `gone_for` seconds ago, with
        their reports; their names."""

    @abc.abstractmethod
    def subscribe_reports(self, listener: ReportsListener) -> Callable[[], None]:
        """Call `listener()` after reports were written (by any replica sharing the store,
        including this one), and whenever reports may have been missed (PostgreSQL: after
        its LISTEN connection reconnected, and at the safety interval); returns an
        unsubscribe. Calls may be merged; an exception from a listener is logged."""

    def close(self) -> None:  # noqa: B027 - optional for implementations holding nothing
        """Release connections; the store is not used afterwards."""
