"""Taking committed revisions to the proxies: each plane compiles every group once, publishes
what it compiled, and delivers it to the proxies the server drives itself.

A group that fails to compile on a plane is a refusal of that revision by the plane's proxies
of the group, recorded in the ledger with the error; the other groups and planes still go out.

Each group is compiled with its `GroupFacts`, read from the ledger: the number of its connected
proxies (of every kind, at least 1) when its routes run a `scope: group` limit, else the
default. When that number changes (a proxy connects, disconnects or is forgotten: the ledger's
change feed tells), the newest revision is compiled again for that group only and published
as another version of the same revision, through the same coalescing as writes. Replicas
sharing a store count every replica's proxies instead (`SharedMembers`: the shared status,
which tells after each read of the reports).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from ..model import Config, GroupFacts, ProxyKind, counts_members
from .ledger import Ledger
from .planes import Build, DataPlane
from .revisions import RevisionIndex

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.005
"""Writes that arrive within this window of each other are pushed once, as the newest."""


class SharedMembers(Protocol):
    """Group sizes across the replicas sharing a store (`SharedStatus`)."""

    def members(self, group: str) -> int:
        """The connected proxies of `group`, of every kind, on every replica."""
        ...

    def on_read(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` on the event loop whenever `members` may have changed."""
        ...


class Fleet:
    """Takes each committed revision to every proxy of every group, through its planes; the
    API's `Propagator`.

    `publish` may be called from any thread; the work runs on `loop`. Bursts of writes are
    coalesced: only the newest revision of a burst is compiled and pushed. Compilation runs
    in a worker thread so the xDS streams keep being served meanwhile. Which version each
    revision gave each (kind, group) is recorded in `index` before any proxy can run it.
    A change of a group's size, when its compile reads it, pushes the newest revision again to
    that group.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        planes: Sequence[DataPlane[Any]],
        index: RevisionIndex,
        ledger: Ledger | None = None,
        *,
        coalesce: float = COALESCE_SECONDS,
        shared: SharedMembers | None = None,
    ) -> None:
        self.loop = loop
        self.planes = tuple(planes)
        self.index = index
        self.ledger = ledger
        self.coalesce = coalesce
        self._pending: tuple[int, Config] | None = None
        self._lock = threading.Lock()
        self._worker: asyncio.Task[None] | None = None
        self.published: int | None = None
        """The newest revision compiled and handed to the proxies."""
        self._head: tuple[int, Config] | None = None
        """The newest revision pushed, with its config."""
        self._facts: dict[str, GroupFacts] = {}
        """The head's groups whose compile reads their membership, and the facts it read."""
        self._regroup: set[str] = set()
        self._feed = ledger.changes(self._ledger_changed) if ledger is not None else None
        self.shared = shared
        if shared is not None:
            shared.on_read(self._check_members)

    def publish(self, revision: int, config: Config) -> None:
        """Take `revision` to the proxies soon (returns at once)."""
        with self._lock:
            if self._pending is None or self._pending[0] < revision:
                self._pending = (revision, config)
        self.loop.call_soon_threadsafe(self._wake)

    def members(self, group: str) -> GroupFacts:
        """`group` as the ledger (or the shared status) knows it now: its connected proxies,
        at least 1."""
        if self.shared is not None:
            count = self.shared.members(group)
        else:
            count = self.ledger.count(group) if self.ledger is not None else 0
        return GroupFacts(members=max(1, count))

    def _ledger_changed(self) -> None:
        """A batch of ledger changes began (any thread): look at the groups' sizes soon."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._check_members)

    def _check_members(self) -> None:
        """Recompile the head's groups whose size changed since they were compiled (loop)."""
        if self._feed is not None:
            self._feed.take()
        with self._lock:
            used = dict(self._facts)
        changed = {group for group, facts in used.items() if self.members(group) != facts}
        if changed:
            with self._lock:
                self._regroup |= changed
            self._wake()

    def _wake(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            await asyncio.sleep(self.coalesce)
            with self._lock:
                pending, self._pending = self._pending, None
                regroup, self._regroup = self._regroup, set()
                head = self._head
            if pending is None and not regroup:
                return
            if pending is not None and self.published is not None and pending[0] <= self.published:
                pending = None  # a newer one went out already
            try:
                if pending is not None:
                    await self._push(*pending)  # reads every group's size afresh
                elif regroup and head is not None:
                    await self._push(*head, only=regroup)
            except Exception:
                log.exception("pushing revision %d failed", (pending or head or (0,))[0])

    async def _push(self, revision: int, config: Config, only: set[str] | None = None) -> None:
        """Compile `revision` for every group (or the groups `only` names: those whose size
        changed), publish it and deliver it."""
        groups = config.group_names() if only is None else sorted(only)
        counted = {g: self.members(g) for g in groups if counts_members(config, g)}
        facts = {g: counted.get(g, GroupFacts()) for g in groups}
        with self._lock:
            if only is None:
                self._head, self._facts = (revision, config), counted
            else:
                self._facts.update(counted)
        compiled: list[tuple[DataPlane[Any], dict[str, Build]]] = []
        for plane in self.planes:
            builds = await asyncio.to_thread(_compile, plane, config, facts)
            ready: dict[str, Build] = {}
            for group, build in builds.items():
                if isinstance(build, str):
                    self._refused(revision, plane.kind, group, build)
                    continue
                for version, parts in build.versions.items():
                    self.index.record(revision, plane.kind, group, version, parts or None)
                ready[group] = build
            keep = frozenset(builds) - frozenset(ready)
            if only is not None:
                keep |= frozenset(plane.groups(config)) - frozenset(ready)
            plane.publish(revision, ready, keep)
            compiled.append((plane, ready))
        self.index.complete(revision)
        for plane, ready in compiled:
            await plane.deliver(revision, ready)
        self.published = max(revision, self.published or revision)
        log.info("revision %d published%s", revision, f" again for {groups}" if only else "")

    def _refused(self, revision: int, kind: ProxyKind, group: str, error: str) -> None:
        """Revision `revision` could not be produced for the proxies of (kind, group): it is
        published as a version none runs, and refused by each with `error`."""
        log.error("revision %d for %s group %s: %s", revision, kind, group, error)
        version = f"unproduced-{revision}"
        self.index.record(revision, kind, group, version)
        if self.ledger is not None:
            for proxy in self.ledger.proxies(group):
                if proxy.kind == kind:
                    self.ledger.refused(proxy.node_id, group, kind, version, error)

    async def settled(self) -> None:
        """Return once every publish so far has been pushed (tests, shutdown)."""
        while True:
            if self._worker is not None and not self._worker.done():
                await asyncio.shield(self._worker)
                continue
            with self._lock:
                if self._pending is None:
                    return
            await asyncio.sleep(0)  # the worker's wake-up is still on its way to the loop


def _compile(
    plane: DataPlane[Any], config: Config, facts: Mapping[str, GroupFacts]
) -> Mapping[str, Build | str]:
    """The build on `plane` of each group `facts` names, or why it could not be compiled."""
    found: dict[str, Build | str] = {}
    for group in plane.groups(config):
        if group not in facts:
            continue
        try:
            found[group] = plane.compile(config, group, facts[group])
        except Exception as exc:
            log.exception("compiling group %s for %s failed", group, plane.kind)
            found[group] = f"{type(exc).__name__}: {exc}"
    return found
