"""The bundles HAProxy agents follow: per node group, the newest rendered bundle and its revision.

`BundleSource` is what the serving side (`controlplane.feed.http`) reads;
`RenderedBundles` is the implementation a server process feeds with each committed revision.
Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict
from typing import NamedTuple, Protocol

from ..haproxy.bundle import Bundle
from ..haproxy.render import render
from ..model import Config

log = logging.getLogger(__name__)

VERSIONS_REMEMBERED = 64
"""How many past versions per group `RenderedBundles.revision_of` can still place."""


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


class RenderedBundles:
    """A BundleSource kept in memory, fed with whole configs by `publish`.

    Each publish renders every node group; a group whose bundle did not change keeps its entry
    (same revision, same version), so its agents are not woken. Groups absent from the newest
    config disappear. `publish` and `put` may be called from any thread; `wait_change` may run on
    any number of event loops.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[str, GroupBundle] = {}
        self._revision: int | None = None
        self._history: dict[str, OrderedDict[str, int]] = {}
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    @property
    def revision(self) -> int | None:
        """The newest revision published, None before the first."""
        return self._revision

    def publish(self, revision: int, config: Config) -> dict[str, str]:
        """Make `config` (revision `revision`) what every group's agents follow.

        An older revision than the newest published is ignored. A group that fails to render
        keeps its previous bundle; the groups that failed are returned with the error (the
        store's validation should have refused such a config).
        """
        if self._revision is not None and revision < self._revision:
            return {}
        rendered: dict[str, Bundle] = {}
        failed: dict[str, str] = {}
        for group in config.group_names():
            try:
                rendered[group] = render(config, group)
            except Exception as exc:
                log.exception("rendering revision %d for HAProxy group %s failed", revision, group)
                failed[group] = f"{type(exc).__name__}: {exc}"
                previous = self._groups.get(group)
                if previous is not None:
                    rendered[group] = previous.bundle
        with self._lock:
            if self._revision is not None and revision < self._revision:
                return {}
            self._revision = revision
            for group in set(self._groups) - set(rendered):
                del self._groups[group]
                self._history.pop(group, None)
            for group, bundle in rendered.items():
                self._put(group, revision, bundle)
        self._wake()
        return failed

    def put(self, group: str, revision: int, bundle: Bundle) -> None:
        """Set one group's bundle directly (a bundle rendered elsewhere, or a test's)."""
        with self._lock:
            self._put(group, revision, bundle)
        self._wake()

    def current(self, group: str) -> GroupBundle | None:
        with self._lock:
            return self._groups.get(group)

    def groups(self) -> list[str]:
        """The groups that have a bundle, sorted."""
        with self._lock:
            return sorted(self._groups)

    def revision_of(self, group: str, version: str) -> int | None:
        """The newest published revision whose bundle for `group` has `version` (None if that
        version is not among the group's recent ones): an agent running `version` runs that
        revision, since every later one changed something for its group."""
        with self._lock:
            return self._history.get(group, OrderedDict()).get(version)

    def waiting(self) -> int:
        """How many `wait_change` calls are waiting right now."""
        with self._lock:
            return len(self._waiters)

    async def wait_change(
        self, group: str, version: str | None, timeout: float
    ) -> GroupBundle | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = asyncio.Event()
            waiter = (loop, event)
            with self._lock:
                entry = self._groups.get(group)
                if entry is None or entry.bundle.version != version:
                    return entry
                self._waiters.append(waiter)
            try:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return entry
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
            finally:
                with self._lock:
                    self._waiters.remove(waiter)

    # -- internals ----------------------------------------------------------------------------

    def _put(self, group: str, revision: int, bundle: Bundle) -> None:
        """Record `bundle` for `group` at `revision` (lock held)."""
        previous = self._groups.get(group)
        if previous is None or previous.bundle.version != bundle.version:
            self._groups[group] = GroupBundle(revision, bundle)
        history = self._history.setdefault(group, OrderedDict())
        history[bundle.version] = max(revision, history.get(bundle.version, revision))
        history.move_to_end(bundle.version)
        while len(history) > VERSIONS_REMEMBERED:
            history.popitem(last=False)

    def _wake(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that waiter's loop has closed
                loop.call_soon_threadsafe(event.set)
