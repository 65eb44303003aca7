"""Which version of each group's configuration each revision produced."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..model import ProxyKind

KEPT = 1000
"""How many recent revisions are remembered."""

GroupKey = tuple[ProxyKind, str]
"""A (kind, group): the proxies one compiled configuration is for."""


@dataclass(frozen=True)
class Published:
    """What one revision gave one (kind, group): the content versions (one per placement:
    a relocated local HAProxy runs another text than the group's agents) and when."""

    revision: int
    versions: frozenset[str]
    at: float
    parts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per version, when known, the version of each of its parts (an xDS type's resources)."""


@dataclass(frozen=True)
class GroupRevisions:
    """What the recent revisions gave one (kind, group), read without scanning: an immutable
    view, replaced (never changed) when a revision is recorded."""

    published: tuple[Published, ...] = ()
    """Newest revision first."""
    newest: Mapping[str, int] = field(default_factory=dict)
    """Version → the newest revision that gave it."""
    parts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Version → the versions of its parts, from any revision that gave them."""

    def with_newest(self, published: Published) -> GroupRevisions:
        """This view with `published` as its newest revision (replacing one of that number)."""
        rest = (
            self.published[1:]
            if self.published and self.published[0].revision == published.revision
            else self.published
        )
        newest = {**self.newest, **dict.fromkeys(published.versions, published.revision)}
        return GroupRevisions((published, *rest), newest, {**self.parts, **published.parts})


Listener = Callable[[int, GroupKey | None], None]
"""Told `(revision, (kind, group))` after a record (and for each group of a revision dropped,
with that revision), `(revision, None)` after `complete`."""

_EMPTY = GroupRevisions()


class RevisionIndex:
    """Revision number ↔ per-(kind, group) content version, for the recent revisions.

    Versions are content hashes, so revisions that leave a group unchanged give it the same
    version: a proxy running that version runs all of them, and reads as the newest.
    """

    def __init__(self) -> None:
        self._by_revision: dict[int, dict[GroupKey, Published]] = {}
        self._by_group: dict[GroupKey, GroupRevisions] = {}
        self._complete: set[int] = set()
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def observe(self, listener: Listener) -> Callable[[], None]:
        """Tell `listener` of every record and completion; returns the cancel function."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

        def cancel() -> None:
            with self._lock:
                self._listeners = [x for x in self._listeners if x is not listener]

        return cancel

    def record(
        self,
        revision: int,
        kind: ProxyKind,
        group: str,
        version: str,
        parts: Mapping[str, str] | None = None,
    ) -> None:
        """`revision` gave proxies of (kind, group) the configuration `version`, made of
        `parts` (for Envoy: the version of each xDS type) when given."""
        key: GroupKey = (kind, group)
        with self._lock:
            entry = self._by_revision.setdefault(revision, {})
            known = entry.get(key)
            versions = known.versions | {version} if known else frozenset({version})
            all_parts = dict(known.parts) if known else {}
            if parts is not None:
                all_parts[version] = dict(parts)
            at = known.at if known else time.time()  # when the revision first reached them
            entry[key] = published = Published(revision, versions, at, all_parts)
            pruned: set[GroupKey] = set()
            oldest = 0
            for oldest in sorted(self._by_revision)[:-KEPT]:
                pruned |= set(self._by_revision.pop(oldest))
                self._complete.discard(oldest)
            dropped_keys = sorted(pruned)
            view = self._by_group.get(key, _EMPTY)
            if key not in pruned and (not view.published or view.published[0].revision <= revision):
                self._by_group[key] = view.with_newest(published)
            else:
                pruned.add(key)
            for changed in pruned:
                self._rebuild(changed)
            listeners = self._listeners
        for listener in listeners:
            listener(revision, key)
            for dropped in dropped_keys:
                listener(oldest, dropped)

    def complete(self, revision: int) -> None:
        """Every (kind, group) that `revision` concerns is recorded."""
        with self._lock:
            if revision not in self._by_revision:
                return
            self._complete.add(revision)
            listeners = self._listeners
        for listener in listeners:
            listener(revision, None)

    def groups(self, revision: int) -> set[GroupKey]:
        """The (kind, group) pairs that `revision` was published to."""
        with self._lock:
            return set(self._by_revision.get(revision, {}))

    def versions(self, revision: int, kind: ProxyKind, group: str) -> frozenset[str]:
        """The versions `revision` gave (kind, group); empty when unknown."""
        with self._lock:
            published = self._by_revision.get(revision, {}).get((kind, group))
            return published.versions if published else frozenset()

    def revisions(self, kind: ProxyKind, group: str) -> list[Published]:
        """What (kind, group) was given, newest revision first."""
        return list(self.of_group(kind, group).published)

    def of_group(self, kind: ProxyKind, group: str) -> GroupRevisions:
        """What the recent revisions gave (kind, group), as an immutable view."""
        return self._by_group.get((kind, group), _EMPTY)

    def covering(self, revision: int) -> int | None:
        """The oldest revision completely recorded that is `revision` or newer: `revision`
        itself, or the one pushed in its place when it was coalesced away; None before."""
        with self._lock:
            return min((r for r in self._complete if r >= revision), default=None)

    def latest(self) -> int | None:
        """The newest revision published."""
        with self._lock:
            return max(self._by_revision, default=None)

    def latest_complete(self) -> int | None:
        """The newest revision completely recorded."""
        with self._lock:
            return max(self._complete, default=None)

    def _rebuild(self, key: GroupKey) -> None:
        """The view of (kind, group) anew (lock held): once per record, never per read."""
        found = sorted(
            (entry[key] for entry in self._by_revision.values() if key in entry),
            key=lambda p: p.revision,
            reverse=True,
        )
        if not found:
            self._by_group.pop(key, None)
            return
        newest: dict[str, int] = {}
        parts: dict[str, Mapping[str, str]] = {}
        for published in reversed(found):  # oldest first: the newest revision wins
            for version in published.versions:
                newest[version] = published.revision
            parts.update(published.parts)
        self._by_group[key] = GroupRevisions(tuple(found), newest, parts)
