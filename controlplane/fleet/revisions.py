"""Which version of each group's configuration each revision produced."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..model import ProxyKind

KEPT = 1000
"""How many recent revisions are remembered."""


@dataclass(frozen=True)
class Published:
    """What one revision gave one (kind, group): the content versions (one per placement:
    a relocated local HAProxy runs another text than the group's agents) and when."""

    revision: int
    versions: frozenset[str]
    at: float
    parts: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per version, when known, the version of each of its parts (an xDS type's resources)."""


class RevisionIndex:
    """Revision number ↔ per-(kind, group) content version, for the recent revisions.

    Versions are content hashes, so revisions that leave a group unchanged give it the same
    version: a proxy running that version runs all of them, and reads as the newest.
    """

    def __init__(self) -> None:
        self._by_revision: dict[int, dict[tuple[ProxyKind, str], Published]] = {}
        self._complete: set[int] = set()
        self._lock = threading.Lock()

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
        with self._lock:
            entry = self._by_revision.setdefault(revision, {})
            known = entry.get((kind, group))
            versions = known.versions | {version} if known else frozenset({version})
            all_parts = dict(known.parts) if known else {}
            if parts is not None:
                all_parts[version] = dict(parts)
            at = known.at if known else time.time()  # when the revision first reached them
            entry[(kind, group)] = Published(revision, versions, at, all_parts)
            for old in sorted(self._by_revision)[:-KEPT]:
                del self._by_revision[old]
                self._complete.discard(old)

    def complete(self, revision: int) -> None:
        """Every (kind, group) that `revision` concerns is recorded."""
        with self._lock:
            if revision in self._by_revision:
                self._complete.add(revision)

    def groups(self, revision: int) -> set[tuple[ProxyKind, str]]:
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
        with self._lock:
            found = [
                entry[(kind, group)]
                for entry in self._by_revision.values()
                if (kind, group) in entry
            ]
        return sorted(found, key=lambda p: p.revision, reverse=True)

    def covering(self, revision: int) -> int | None:
        """The oldest revision completely recorded that is `revision` or newer: `revision`
        itself, or the one pushed in its place when it was coalesced away; None before."""
        with self._lock:
            return min((r for r in self._complete if r >= revision), default=None)

    def latest(self) -> int | None:
        """The newest revision published."""
        with self._lock:
            return max(self._by_revision, default=None)
