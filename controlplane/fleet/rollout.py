"""Taking committed revisions to the proxies: each plane compiles every group once, publishes
what it compiled, and delivers it to the proxies the server drives itself.

A group that fails to compile on a plane is a refusal of that revision by the plane's proxies
of the group, recorded in the ledger with the error; the other groups and planes still go out.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ..model import Config, ProxyKind
from .ledger import Ledger
from .planes import Build, DataPlane
from .revisions import RevisionIndex

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.005
"""Writes that arrive within this window of each other are pushed once, as the newest."""


class Fleet:
    """Takes each committed revision to every proxy of every group, through its planes; the
    API's `Propagator`.

    `publish` may be called from any thread; the work runs on `loop`. Bursts of writes are
    coalesced: only the newest revision of a burst is compiled and pushed. Compilation runs
    in a worker thread so the xDS streams keep being served meanwhile. Which version each
    revision gave each (kind, group) is recorded in `index` before any proxy can run it.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        planes: Sequence[DataPlane[Any]],
        index: RevisionIndex,
        ledger: Ledger | None = None,
        *,
        coalesce: float = COALESCE_SECONDS,
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

    def publish(self, revision: int, config: Config) -> None:
        """Take `revision` to the proxies soon (returns at once)."""
        with self._lock:
            if self._pending is None or self._pending[0] < revision:
                self._pending = (revision, config)
        self.loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = self.loop.create_task(self._drain())

    async def _drain(self) -> None:
        while True:
            await asyncio.sleep(self.coalesce)
            with self._lock:
                pending, self._pending = self._pending, None
            if pending is None:
                return
            revision, config = pending
            if self.published is not None and revision <= self.published:
                continue
            try:
                await self._push(revision, config)
            except Exception:
                log.exception("pushing revision %d failed", revision)

    async def _push(self, revision: int, config: Config) -> None:
        compiled: list[tuple[DataPlane[Any], dict[str, Build]]] = []
        for plane in self.planes:
            builds = await asyncio.to_thread(_compile, plane, config)
            ready: dict[str, Build] = {}
            for group, build in builds.items():
                if isinstance(build, str):
                    self._refused(revision, plane.kind, group, build)
                    continue
                for version, parts in build.versions.items():
                    self.index.record(revision, plane.kind, group, version, parts or None)
                ready[group] = build
            plane.publish(revision, ready, frozenset(builds) - frozenset(ready))
            compiled.append((plane, ready))
        self.index.complete(revision)
        for plane, ready in compiled:
            await plane.deliver(revision, ready)
        self.published = revision
        log.info("revision %d published", revision)

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


def _compile(plane: DataPlane[Any], config: Config) -> Mapping[str, Build | str]:
    """Each group's build on `plane`, or why it could not be compiled."""
    found: dict[str, Build | str] = {}
    for group in plane.groups(config):
        try:
            found[group] = plane.compile(config, group)
        except Exception as exc:
            log.exception("compiling group %s for %s failed", group, plane.kind)
            found[group] = f"{type(exc).__name__}: {exc}"
    return found
