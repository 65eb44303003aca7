"""Taking committed revisions to the proxies: compile per group, publish, apply locally.

A part that fails (compiling a group for Envoy, rendering it for HAProxy, a local HAProxy's
apply) is a refusal of that revision by the proxies concerned, recorded in the ledger with the
error, and the other parts still go out.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from ..envoy import translate
from ..feed.bundles import GroupBundle
from ..fleet.ledger import Ledger, ProxyKind
from ..haproxy.bundle import Bundle
from ..haproxy.render import render
from ..model import Config, Target, split_address
from ..proxies.haproxy.manager import HAProxyManager
from ..xds.cache import Snapshot, SnapshotCache
from .revisions import RevisionIndex

log = logging.getLogger(__name__)

COALESCE_SECONDS = 0.005
"""Writes that arrive within this window of each other are pushed once, as the newest."""


class BundlePublisher(Protocol):
    """Where HAProxy agents fetch their group's bundle from; `publish` returns the groups it
    could not render, with the error."""

    def publish(self, revision: int, config: Config) -> dict[str, str]: ...

    def current(self, group: str) -> GroupBundle | None: ...


def relocate(config: Config, host: str) -> Config:
    """The config with every listener bound on `host` instead, ports unchanged: a second
    proxy of the same group on the same machine (the demo's HAProxy beside its Envoy)."""
    listeners = []
    for listener in config.listeners:
        _, port = split_address(listener.address)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        listeners.append(listener.model_copy(update={"address": address}))
    return config.model_copy(update={"listeners": listeners})


@dataclass
class LocalHAProxy:
    """An HAProxy this server manages itself, running one group's configuration.

    `bind_host` relocates its listeners (see `relocate`); None keeps the config's addresses.
    """

    manager: HAProxyManager
    group: str
    bind_host: str | None = None

    def bundle(self, config: Config) -> Bundle | None:
        """What this HAProxy should run for `config`; None when its group is not there."""
        if self.group not in config.group_names():
            return None
        placed = relocate(config, self.bind_host) if self.bind_host else config
        return render(placed, self.group)


class Fleet:
    """Takes each committed revision to every proxy of every group; a `Propagator`.

    `publish` may be called from any thread; the work runs on `loop`. Bursts of writes are
    coalesced: only the newest revision of a burst is compiled and pushed. Compilation runs
    in a worker thread so the xDS streams keep being served meanwhile. What fails is recorded
    in `ledger` as a refusal by the proxies concerned.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        cache: SnapshotCache,
        index: RevisionIndex,
        *,
        targets: Sequence[Target] = ("envoy", "haproxy"),
        agents: BundlePublisher | None = None,
        local: Sequence[LocalHAProxy] = (),
        coalesce: float = COALESCE_SECONDS,
        ledger: Ledger | None = None,
    ) -> None:
        self.loop = loop
        self.cache = cache
        self.index = index
        self.ledger = ledger
        self.targets = tuple(targets)
        self.agents = agents
        self.local = list(local)
        self.coalesce = coalesce
        self._pending: tuple[int, Config] | None = None
        self._lock = threading.Lock()
        self._worker: asyncio.Task[None] | None = None
        self._applying = asyncio.Lock()
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
        if "envoy" in self.targets:
            snapshots = await asyncio.to_thread(_snapshots, config)
            for group, snapshot in snapshots.items():
                if isinstance(snapshot, str):
                    self._refused(revision, "envoy", group, snapshot, self._members("envoy", group))
                    continue
                parts = {t: snapshot.type_version(t) for t in snapshot}
                self.index.record(revision, "envoy", group, snapshot.version, parts)
                self.cache.set_snapshot(group, snapshot)
        local: list[tuple[LocalHAProxy, Bundle]] = []
        if "haproxy" in self.targets:
            if self.agents is not None:
                failed = await asyncio.to_thread(self.agents.publish, revision, config)
                for group, error in failed.items():
                    self._refused(revision, "haproxy", group, error, self._members("agent", group))
                for group in config.group_names():
                    current = self.agents.current(group)
                    if current is not None and group not in failed:
                        self.index.record(revision, "haproxy", group, current.bundle.version)
            for haproxy, bundle in await asyncio.to_thread(self._local_bundles, config):
                if isinstance(bundle, str):
                    node = haproxy.manager.instance_id
                    self._refused(revision, "haproxy", haproxy.group, bundle, [node])
                    continue
                self.index.record(revision, "haproxy", haproxy.group, bundle.version)
                local.append((haproxy, bundle))
        self.index.complete(revision)
        await self._apply_local(revision, local)
        self.published = revision
        log.info("revision %d published", revision)

    def _local_bundles(self, config: Config) -> list[tuple[LocalHAProxy, Bundle | str]]:
        """Each local HAProxy's bundle for `config`, or why it could not be rendered."""
        found: list[tuple[LocalHAProxy, Bundle | str]] = []
        for local in self.local:
            try:
                bundle = local.bundle(config)
            except Exception as exc:
                log.exception("rendering for haproxy %s failed", local.manager.instance_id)
                found.append((local, _error(exc)))
                continue
            if bundle is not None:
                found.append((local, bundle))
        return found

    def _members(self, feed: Literal["envoy", "agent"], group: str) -> list[str]:
        """The node ids of the group's Envoys, or of its agent-fed HAProxies."""
        if self.ledger is None:
            return []
        proxies = self.ledger.proxies(group)
        if feed == "envoy":
            return [p.node_id for p in proxies if p.kind == "envoy"]
        return [p.node_id for p in proxies if p.kind == "haproxy" and p.via_agent]

    def _refused(
        self, revision: int, kind: ProxyKind, group: str, error: str, nodes: Sequence[str]
    ) -> None:
        """Revision `revision` could not be produced for these proxies of (kind, group): it is
        published as a version none runs, and refused by each with `error`."""
        log.error("revision %d for %s group %s: %s", revision, kind, group, error)
        version = f"unproduced-{revision}"
        self.index.record(revision, kind, group, version)
        if self.ledger is not None:
            for node in nodes:
                self.ledger.refused(node, group, kind, version, error)

    async def _apply_local(self, revision: int, bundles: list[tuple[LocalHAProxy, Bundle]]) -> None:
        for local, bundle in bundles:
            async with self._applying:
                result = await asyncio.to_thread(local.manager.apply, bundle)
            if not result.ok:
                log.warning(
                    "haproxy %s refused revision %d: %s",
                    local.manager.instance_id,
                    revision,
                    result.error,
                )

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


def _snapshots(config: Config) -> dict[str, Snapshot | str]:
    """Each group's Envoy snapshot, or why it could not be compiled."""
    found: dict[str, Snapshot | str] = {}
    for group in config.group_names():
        try:
            found[group] = Snapshot(translate(config, group).by_type_url())
        except Exception as exc:
            log.exception("compiling group %s for Envoy failed", group)
            found[group] = _error(exc)
    return found


def _error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
