"""The bundles HAProxy agents follow: per node group, the newest bundle and the revision that
first gave it. Nothing here renders or knows about HTTP: the fleet's HAProxy plane puts what it
compiled, the serving side (`controlplane.feed.http`) reads and long-polls.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import NamedTuple, Protocol

from ..haproxy.bundle import Bundle
from ..wakeups import Wakeups


class GroupBundle(NamedTuple):
    """What a group's HAProxies should run: the bundle, and the revision that first gave it."""

    revision: int
    bundle: Bundle


class BundleSource(Protocol):
    """The current bundle of each node group, and a way to wait for the next one."""

    def current(self, group: str) -> GroupBundle | None:
        """The group's current bundle, or None for a group that has none."""
        ...

    async def wait_change(
        self, group: str, version: str | None, timeout: float
    ) -> GroupBundle | None:
        """The group's current bundle as soon as its version differs from `version` (at once if
        it already does), or after `timeout` seconds whatever it is; None when the group has
        none."""
        ...


class GroupBundles:
    """A BundleSource kept in memory, fed a revision's bundles by `update`.

    A group whose bundle did not change keeps its entry (same revision, same version), so its
    agents are not woken. `update` and `put` may be called from any thread; `wait_change` may
    run on any number of event loops.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[str, GroupBundle] = {}
        self._revision: int | None = None
        self._changed = Wakeups()

    @property
    def revision(self) -> int | None:
        """The newest revision given to `update`, None before the first."""
        return self._revision

    def update(
        self, revision: int, bundles: Mapping[str, Bundle], keep: frozenset[str] = frozenset()
    ) -> None:
        """Make `bundles` (of revision `revision`) what each group's agents follow; groups
        neither there nor in `keep` (kept as they are: their bundle could not be made) are
        dropped. An older revision than the newest given is ignored."""
        with self._lock:
            if self._revision is not None and revision < self._revision:
                return
            self._revision = revision
            for group in set(self._groups) - set(bundles) - keep:
                del self._groups[group]
            for group, bundle in bundles.items():
                self._put(group, revision, bundle)
        self._changed.wake()

    def put(self, group: str, revision: int, bundle: Bundle) -> None:
        """Set one group's bundle (a test's, or one made elsewhere)."""
        with self._lock:
            self._put(group, revision, bundle)
        self._changed.wake()

    def current(self, group: str) -> GroupBundle | None:
        with self._lock:
            return self._groups.get(group)

    def groups(self) -> list[str]:
        """The groups that have a bundle, sorted."""
        with self._lock:
            return sorted(self._groups)

    def waiting(self) -> int:
        """How many `wait_change` calls are waiting right now."""
        return len(self._changed)

    async def wait_change(
        self, group: str, version: str | None, timeout: float
    ) -> GroupBundle | None:
        remaining = timeout
        while True:
            with self._changed.waiter() as waiter:
                entry = self.current(group)
                if entry is None or entry.bundle.version != version or remaining <= 0:
                    return entry
                began = waiter.loop.time()
                await waiter.wait(remaining)
                remaining -= waiter.loop.time() - began

    def _put(self, group: str, revision: int, bundle: Bundle) -> None:
        """Record `bundle` for `group` at `revision` (lock held)."""
        previous = self._groups.get(group)
        if previous is None or previous.bundle.version != bundle.version:
            self._groups[group] = GroupBundle(revision, bundle)
